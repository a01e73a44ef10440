"""The access-control matrix on the real stack: every identity of the topology tries to read and write one topic of
every class on both clusters, the Vault paths (KV, Transit, sys) and both buckets, and the outcome is compared
with the model (topology ACLs, Vault policies, S3 grants). Deny by default: an action the model does not list
must be refused, and one it lists must work; either mismatch fails.

Kafka writes send a record larger than any probed topic accepts (`max.message.bytes`): the broker checks the ACL
first, so an allowed write is refused as too large (nothing is appended) and a denied one as not authorised.
Vault KV writes use check-and-set 0 on an existing secret for the same reason; S3 writes put and remove a probe.
"""
from __future__ import annotations

import os
import re
import secrets
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import boto3
import hvac
import pytest
from botocore import UNSIGNED
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition
from confluent_kafka.admin import ConfigResource

from hybridbus.adapters import kafka
from hybridbus.adapters.config import Settings
from hybridbus.adapters.loaders import topology_for
from hybridbus.adapters.s3 import s3_client
from hybridbus.adapters.secrets import KafkaCredentials, S3Credentials
from hybridbus.adapters.topology import DLQ_TOPIC, PRIVATE, PUBLIC, AclSpec, Identity, Topology
from hybridbus.adapters.vault import (
    AUDIT_SIGNING_KEY,
    BOUNDARY_KEY,
    KV_MOUNT,
    PSEUDONYM_KEY,
    RULES_SIGNING_KEYS,
    TRANSIT_MOUNT,
    VaultSession,
    root_client,
)
from hybridbus.ops.people import sample_login
from hybridbus.ops.stack.bootstrap import PEOPLE, kv_exists, kv_get, person_policy, policy_for, s3_grants
from routing.grades import Grade

ALLOWED, DENIED = "allowed", "denied"
NOBODY = Identity("nobody", "department")  # a login nobody was given: random credentials
TIMEOUT = 15.0


@dataclass(frozen=True)
class Cell:
    system: str  # kafka-private | kafka-public | vault | s3
    identity: str
    target: str
    action: str
    expected: str
    observed: str


# --- the model -------------------------------------------------------------------------------------

def topics_by_class(topology: Topology) -> dict[str, list[str]]:
    """One topic of every class, per cluster: each department's ingress, each grade, a derived view, the bus's own."""
    private = sorted(t.name for t in topology.topics_on(PRIVATE))
    public = sorted(t.name for t in topology.topics_on(PUBLIC))
    ingress = {name.split(".")[1]: name for name in private if name.startswith("ingress.")}
    events = {name.split(".", 1)[1] for name in ingress.values()}
    graded = [next(n for n in private if n.startswith(f"{g.id}.") and n.split(".", 1)[1] in events) for g in Grade]
    derived = [n for n in public if n.split(".", 1)[1] not in events][:1]
    internal = [n for n in private if n.startswith("_hbus.")]
    return {PRIVATE: sorted(ingress.values()) + graded + derived + internal, PUBLIC: [graded[0], *derived]}


def kafka_allows(acls: list[AclSpec], cluster: str, principal: str, topic: str, action: str) -> bool:
    return any(a.cluster == cluster and a.principal == f"User:{principal}" and a.resource == "topic"
               and a.operation in (action, "all")
               and (topic == a.name if a.pattern == "literal" else topic.startswith(a.name)) for a in acls)


def vault_allows(policy: str, path: str, capability: str) -> bool:
    """Vault's path matching: `+` is one segment, a trailing `*` any suffix."""
    for pattern, caps in re.findall(r'path "([^"]+)" \{ capabilities = \[([^\]]*)\] \}', policy):
        regex = re.escape(pattern).replace(r"\+", "[^/]+")
        regex = regex[:-2] + ".*" if regex.endswith(r"\*") else regex
        if re.fullmatch(regex, path) and f'"{capability}"' in caps:
            return True
    return False


def vault_probes(topology: Topology) -> list[tuple[str, str, str]]:
    """(method, API path, capability) of every Vault action tried, for every identity."""
    names = [i.name for i in topology.identities]
    depts = [i.name for i in topology.identities if i.kind == "department"]
    reads = [f"kafka/{c}/{n}" for c in (PRIVATE, PUBLIC) for n in names] + [f"s3/{n}" for n in names]
    reads += [f"gateway/{d}" for d in depts]
    probes = [("GET", f"{KV_MOUNT}/data/{p}", "read") for p in reads]
    probes += [("POST", f"{KV_MOUNT}/data/kafka/{PRIVATE}/{n}", "update") for n in names]
    probes += [("POST", f"{TRANSIT_MOUNT}/hmac/{PSEUDONYM_KEY}", "update"),
               ("POST", f"{TRANSIT_MOUNT}/sign/{AUDIT_SIGNING_KEY}", "update"),
               ("POST", f"{TRANSIT_MOUNT}/verify/{AUDIT_SIGNING_KEY}", "update"),
               ("GET", f"{TRANSIT_MOUNT}/keys/{PSEUDONYM_KEY}", "read"),
               # Rule sets and the emergency stop: processors verify, no service may sign.
               *[("POST", f"{TRANSIT_MOUNT}/{op}/{key}", "update")
                 for key in (*RULES_SIGNING_KEYS, BOUNDARY_KEY) for op in ("sign", "verify")],
               ("GET", "sys/mounts", "read"),
               ("GET", "sys/policies/acl/hbus-router", "read")]
    # Encrypted fields: who may make data keys under a department's field keys, and who may unwrap them.
    for dept in depts:
        probes += [("POST", f"{TRANSIT_MOUNT}/datakey/plaintext/fields-{dept}-restricted", "update")]
        probes += [("POST", f"{TRANSIT_MOUNT}/decrypt/fields-{dept}-{grade}", "update")
                   for grade in ("internal", "restricted", "important")]
    return probes


# --- probes ----------------------------------------------------------------------------------------

def probe_kafka(cluster: str, creds: KafkaCredentials, topics: list[str], too_large: int) -> dict[tuple[str, str], str]:
    """read and write verdicts of one login on every topic; a login the cluster refuses is denied everything."""
    if not _login_accepted(cluster, creds):
        return {(t, action): DENIED for t in topics for action in ("read", "write")}
    result: dict[tuple[str, str], str] = {}
    result.update({(t, "write"): v for t, v in _writes(cluster, creds, topics, too_large).items()})
    result.update({(t, "read"): v for t, v in _reads(cluster, creds, topics).items()})
    return result


def _login_accepted(cluster: str, creds: KafkaCredentials) -> bool:
    refused: list[str] = []
    admin = kafka.admin(cluster, creds, error_cb=lambda err: refused.append(err.name()))
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=0.5)
            return True
        except KafkaException:
            admin.poll(0.1)
            if "_AUTHENTICATION" in refused:
                return False
    raise AssertionError(f"kafka-{cluster} neither accepted nor refused {creds.username}")


def record_limit(cluster: str, topics: list[str]) -> int:
    """The largest record any of `topics` accepts."""
    admin = kafka.admin(cluster, kafka.admin_credentials(cluster))
    futures = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, t) for t in topics])
    return max(int(f.result(timeout=TIMEOUT)["max.message.bytes"].value) for f in futures.values())


def _writes(cluster: str, creds: KafkaCredentials, topics: list[str], too_large: int) -> dict[str, str]:
    producer = kafka.producer(cluster, creds, **{"enable.idempotence": False, "compression.type": "none",
                                                 "message.max.bytes": 2 * too_large, "retries": 0,
                                                 "message.timeout.ms": int(TIMEOUT * 1000)})
    blob = os.urandom(too_large)  # random: compression must not shrink it under the limit
    verdicts: dict[str, str] = {}

    def judge(topic: str, err) -> None:  # type: ignore[no-untyped-def]
        name = err.name() if err else "APPENDED"
        verdicts[topic] = ALLOWED if name == "MSG_SIZE_TOO_LARGE" else DENIED if "AUTHORIZATION" in name else name

    for topic in topics:
        try:
            producer.produce(topic, blob, key=b"acl-probe", on_delivery=lambda err, _msg, t=topic: judge(t, err))
        except KafkaException as exc:  # the client already knows the topic is not writable
            judge(topic, exc.args[0])
    producer.flush(TIMEOUT + 5)
    return {t: verdicts.get(t, "no answer") for t in topics}


def _reads(cluster: str, creds: KafkaCredentials, topics: list[str]) -> dict[str, str]:
    consumer = kafka.consumer(cluster, creds, group=f"{creds.username}.acl-probe",
                              **{"enable.partition.eof": True})
    try:
        visible = consumer.list_topics(timeout=TIMEOUT).topics
        verdicts = {t: DENIED for t in topics if t not in visible or visible[t].error is not None}
        # Describable is not readable (a writer may describe): fetch to find out.
        consumer.assign([TopicPartition(t, 0, OFFSET_BEGINNING) for t in topics if t not in verdicts])
        deadline = time.monotonic() + TIMEOUT
        while len(verdicts) < len(topics) and time.monotonic() < deadline:
            for msg in consumer.consume(100, timeout=0.5):
                err = msg.error()
                if err is None or err.name() == "_PARTITION_EOF":
                    verdicts.setdefault(msg.topic(), ALLOWED)
                elif "AUTHORIZATION" in err.name() and msg.topic():
                    verdicts.setdefault(msg.topic(), DENIED)
        return {t: verdicts.get(t, "no answer") for t in topics}
    finally:
        consumer.close()


def probe_vault(identity: str, cfg: Settings, probes: list[tuple[str, str, str]]) -> dict[tuple[str, str], str]:
    session = VaultSession(identity, cfg)
    session.login()
    return probe_vault_as(session.client, probes)


def probe_vault_as(client: hvac.Client, probes: list[tuple[str, str, str]]) -> dict[tuple[str, str], str]:
    bodies = {"hmac": {"input": "cHJvYmU="}, "sign": {"input": "cHJvYmU="},
              "verify": {"input": "cHJvYmU=", "signature": "vault:v1:cHJvYmU="},
              "datakey": {}, "decrypt": {"ciphertext": "vault:v1:cHJvYmU="},
              "data": {"data": {"probe": "x"}, "options": {"cas": 0}}}  # cas 0 never overwrites a secret
    result = {}
    for method, path, capability in probes:
        body = next((b for k, b in bodies.items() if f"/{k}/" in f"/{path}/"), None) if method == "POST" else None
        try:
            client.adapter.request(method, f"/v1/{path}", json=body)
            verdict = ALLOWED
        except hvac.exceptions.Forbidden:
            verdict = DENIED
        except (hvac.exceptions.InvalidPath, hvac.exceptions.InvalidRequest):
            verdict = ALLOWED  # authorised, then refused for what was asked (absent, cas mismatch, bad signature)
        result[(path, capability)] = verdict
    return result


def probe_s3(client, buckets: list[str], who: str) -> dict[tuple[str, str], str]:  # type: ignore[no-untyped-def]
    def verdict(call) -> str:  # type: ignore[no-untyped-def]
        try:
            call()
            return ALLOWED
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            return ALLOWED if code in ("NoSuchKey", "404") else DENIED if code in ("AccessDenied", "403") else code

    result = {}
    for bucket in buckets:
        key = f"_acl-probe/{who}-{secrets.token_hex(4)}"
        result[(bucket, "List")] = verdict(lambda: client.list_objects_v2(Bucket=bucket, MaxKeys=1))
        result[(bucket, "Read")] = verdict(lambda: client.get_object(Bucket=bucket, Key=key))
        result[(bucket, "Write")] = verdict(lambda: client.put_object(Bucket=bucket, Key=key, Body=b""))
        if result[(bucket, "Write")] == ALLOWED:
            client.delete_object(Bucket=bucket, Key=key)
    return result


# --- the test --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def topology(stack: Settings) -> Topology:
    return topology_for(stack)


def test_every_identity_can_do_exactly_what_the_model_allows(stack: Settings, topology: Topology) -> None:
    root = root_client(stack)
    acls = list(topology.acls)
    topics = topics_by_class(topology)
    too_large = {cluster: record_limit(cluster, names) + 64 * 1024 for cluster, names in topics.items()}
    vault = vault_probes(topology)
    identities = [*topology.identities, NOBODY]

    def kafka_row(identity: Identity, cluster: str) -> list[Cell]:
        creds = _kafka_login(root, identity, cluster)
        seen = probe_kafka(cluster, creds, topics[cluster], too_large[cluster])
        return [Cell(f"kafka-{cluster}", identity.name, topic, action,
                     ALLOWED if identity in topology.identities and cluster in identity.clusters
                     and kafka_allows(acls, cluster, identity.principal, topic, action) else DENIED, verdict)
                for (topic, action), verdict in seen.items()]

    def vault_row(identity: Identity) -> list[Cell]:
        policy = policy_for(identity)
        return [Cell("vault", identity.name, path, capability,
                     ALLOWED if vault_allows(policy, path, capability) else DENIED, verdict)
                for (path, capability), verdict in probe_vault(identity.name, stack, vault).items()]

    def person_row(name: str, role: str) -> list[Cell]:
        """People (userpass): each duty only its own act, no service's secret."""
        policy = person_policy(role)
        return [Cell("vault", name, path, capability,
                     ALLOWED if vault_allows(policy, path, capability) else DENIED, verdict)
                for (path, capability), verdict in probe_vault_as(sample_login(name, stack).client(stack), vault).items()]

    def s3_row(name: str) -> list[Cell]:
        grants = s3_grants(stack).get(name, [])
        buckets = [stack.open_data_bucket, stack.audit_bucket]
        seen = probe_s3(_s3_login(stack, root, name), buckets, name)
        return [Cell("s3", name, bucket, action, ALLOWED if f"{action}:{bucket}" in grants else DENIED, verdict)
                for (bucket, action), verdict in seen.items()]

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        jobs = [pool.submit(kafka_row, i, c) for i in identities for c in (PRIVATE, PUBLIC)]
        jobs += [pool.submit(vault_row, i) for i in topology.identities]
        jobs += [pool.submit(person_row, name, role) for name, role in PEOPLE]
        jobs += [pool.submit(s3_row, name) for name in [*s3_grants(stack), "anonymous"]]
        cells = [cell for job in jobs for cell in job.result()]

    wrong = [c for c in cells if c.observed != c.expected]
    summary = Counter((c.system, c.observed) for c in cells)
    print(f"\nACL matrix: {len(cells)} cells in {time.monotonic() - started:.1f}s: {dict(sorted(summary.items()))}")
    assert not wrong, "\n".join(f"{c.system} {c.identity} {c.action} {c.target}: expected {c.expected}, got {c.observed}"
                                for c in wrong[:30])
    # The matrix can tell the two apart: every system has both allowed and denied cells.
    for system in ("kafka-private", "kafka-public", "vault", "s3"):
        assert summary[(system, ALLOWED)] and summary[(system, DENIED)], system
    assert any(c.target == DLQ_TOPIC for c in cells)
    # Separation of duties, as observed: only an engineer signs as proposer, only an approver as approver.
    signers = {key: {c.identity for c in cells if c.system == "vault" and c.target == f"{TRANSIT_MOUNT}/sign/{key}"
                     and c.observed == ALLOWED} for key in RULES_SIGNING_KEYS}
    assert signers == {RULES_SIGNING_KEYS[0]: {"li.wei"}, RULES_SIGNING_KEYS[1]: {"zhang.min"}}, signers
    # The operators' key: only operators sign (the emergency stop, a quarantine release proposed); the guards verify
    # a reopening, and approvers verify the operator's proposal before they release a quarantined record.
    boundary = {op: {c.identity for c in cells if c.system == "vault" and c.observed == ALLOWED
                     and c.target == f"{TRANSIT_MOUNT}/{op}/{BOUNDARY_KEY}"} for op in ("sign", "verify")}
    assert boundary == {"sign": {"wang.fang", "zhao.lei"}, "verify": {"egress", "archiver", "zhang.min"}}, boundary


def _kafka_login(root: hvac.Client, identity: Identity, cluster: str) -> KafkaCredentials:
    """The identity's login on `cluster`; one it was not given is its login elsewhere, or a made-up one."""
    for where in (cluster, PRIVATE, PUBLIC):
        path = f"kafka/{where}/{identity.name}"
        if kv_exists(root, path):
            data = kv_get(root, path)
            return KafkaCredentials(data["username"], data["password"])
    return KafkaCredentials(f"dept-{identity.name}", secrets.token_urlsafe(24))


def _s3_login(cfg: Settings, root: hvac.Client, name: str):  # type: ignore[no-untyped-def]
    if name == "anonymous":
        return boto3.client("s3", endpoint_url=cfg.s3_endpoint, region_name="us-east-1",
                            config=BotoConfig(signature_version=UNSIGNED, s3={"addressing_style": "path"},
                                              retries={"max_attempts": 1}))
    data = kv_get(root, f"s3/{name}")
    return s3_client(cfg, S3Credentials(data["access_key"], data["secret_key"]))
