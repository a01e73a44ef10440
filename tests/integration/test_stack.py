"""The foundation on the real stack: SCRAM on both clusters, deny-by-default ACLs, Vault AppRoles, S3, Prometheus."""
from __future__ import annotations

import time
import uuid

import pytest
import requests
from botocore.exceptions import ClientError
from confluent_kafka import KafkaError

from hybridbus.adapters import kafka
from hybridbus.adapters.config import Settings
from hybridbus.adapters.s3 import s3_client
from hybridbus.adapters.secrets import KafkaCredentials, S3Credentials
from hybridbus.adapters.topology import PRIVATE, PUBLIC
from hybridbus.adapters.vault import VaultSession
from hybridbus.ops.stack import manager
from tests.integration.kafkatools import read_topic

LICENCE_INGRESS = "ingress.market.licence_granted"
LICENCE_PUBLIC = "public.market.licence_granted"


def _deliver(cluster: str, creds: KafkaCredentials, topic: str, value: bytes) -> tuple[KafkaError | None, int]:
    producer = kafka.producer(cluster, creds, **{"message.timeout.ms": 10000})
    outcome: list = []
    producer.produce(topic, value, on_delivery=lambda e, m: outcome.append((e, m.offset() if e is None else -1)))
    producer.flush(20)
    assert outcome, "no delivery report within 20s"
    return outcome[0]


def test_every_component_reports_healthy(stack: Settings) -> None:
    statuses = {s.name: s for s in manager.status(stack)}
    assert set(statuses) == {"vault", "s3", "kafka-private", "kafka-public", "kafka-exporter", "prometheus"}
    assert all(s.healthy and s.pid for s in statuses.values()), statuses
    assert sum(s.rss_mb or 0 for s in statuses.values()) < 3 * 1024


def test_the_stack_writes_its_logs_under_the_state_dir_not_where_it_was_started(stack: Settings) -> None:
    from hybridbus.adapters.config import REPO_ROOT

    # A Java tool run without kafka.logs.dir made a directory literally named after the unset property.
    assert not list(REPO_ROOT.glob("${sys:*")), "a Kafka tool wrote its logs outside the state dir"


def test_department_produces_with_scram_and_router_reads_it(stack: Settings) -> None:
    marker = uuid.uuid4().hex.encode()
    market = VaultSession("market", stack)
    error, offset = _deliver(PRIVATE, market.kafka_credentials(PRIVATE), LICENCE_INGRESS, marker)
    assert error is None and offset >= 0
    values = [r.value for r in read_topic(PRIVATE, LICENCE_INGRESS, min_records=1)]
    assert marker in values


def test_egress_writes_the_public_cluster_and_the_public_reader_reads_it(stack: Settings) -> None:
    marker = uuid.uuid4().hex.encode()
    egress = VaultSession("egress", stack)
    error, _ = _deliver(PUBLIC, egress.kafka_credentials(PUBLIC), LICENCE_PUBLIC, marker)
    assert error is None
    reader = VaultSession("public-reader", stack).kafka_credentials(PUBLIC)
    consumer = kafka.consumer(PUBLIC, reader, group=f"pub-public-reader.test-{uuid.uuid4().hex[:6]}")
    consumer.subscribe([LICENCE_PUBLIC])
    seen = []
    deadline = time.monotonic() + 30
    while marker not in seen and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and not msg.error():
            seen.append(msg.value())
    consumer.close()
    assert marker in seen


def test_department_is_refused_another_departments_ingress(stack: Settings) -> None:
    market = VaultSession("market", stack).kafka_credentials(PRIVATE)
    error, _ = _deliver(PRIVATE, market, "ingress.health.hospital_admission", b"x")
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_user_without_any_acl_on_the_public_cluster_is_refused(stack: Settings) -> None:
    # The router has a login on the private cluster only; the public cluster does not know it at all.
    router = VaultSession("router", stack).kafka_credentials(PRIVATE)
    error, _ = _deliver(PUBLIC, router, LICENCE_PUBLIC, b"x")
    assert error is not None


def test_department_cannot_write_a_graded_topic(stack: Settings) -> None:
    market = VaultSession("market", stack).kafka_credentials(PRIVATE)
    error, _ = _deliver(PRIVATE, market, LICENCE_PUBLIC, b"forged")
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_approle_reads_its_own_secret_and_is_denied_anothers(stack: Settings) -> None:
    market = VaultSession("market", stack)
    assert market.kafka_credentials(PRIVATE).username == "dept-market"
    with pytest.raises(Exception) as denied:
        market.read_kv("kafka/private/health")
    assert type(denied.value).__name__ == "Forbidden"


def test_s3_put_get_with_signed_keys_and_a_wrong_secret_is_rejected(stack: Settings) -> None:
    creds = VaultSession("archiver", stack).s3_credentials()
    s3 = s3_client(stack, creds)
    key = f"tests/{uuid.uuid4().hex}.txt"
    s3.put_object(Bucket=stack.open_data_bucket, Key=key, Body=b"open data")
    assert s3.get_object(Bucket=stack.open_data_bucket, Key=key)["Body"].read() == b"open data"
    forged = s3_client(stack, S3Credentials(creds.access_key, "not-the-secret"))
    with pytest.raises(ClientError) as rejected:
        forged.get_object(Bucket=stack.open_data_bucket, Key=key)
    assert rejected.value.response["Error"]["Code"] in {"SignatureDoesNotMatch", "AccessDenied", "403"}
    with pytest.raises(ClientError):
        s3.put_object(Bucket=stack.audit_bucket, Key=key, Body=b"not my bucket")


def test_prometheus_answers_up_for_its_targets(stack: Settings) -> None:
    url = f"http://{stack.host}:{stack.ports.prometheus}/api/v1/query"
    deadline = time.monotonic() + 30
    jobs: dict[str, str] = {}
    while time.monotonic() < deadline:
        result = requests.get(url, params={"query": "up"}, timeout=5).json()["data"]["result"]
        jobs = {r["metric"]["job"]: r["value"][1] for r in result}
        if jobs.get("prometheus") == "1" and {"hbus-router", "hbus-egress", "hbus-archiver"} <= set(jobs):
            break
        time.sleep(1)
    assert jobs.get("prometheus") == "1"
    assert {"hbus-router", "hbus-egress", "hbus-archiver", "hbus-audit", "hbus-gateway"} <= set(jobs)
    assert jobs.get("hbus-kafka-exporter") == "1"


def test_the_kafka_exporter_reports_both_clusters_whole(stack: Settings) -> None:
    url = f"http://{stack.host}:{stack.ports.prometheus}/api/v1/query"
    deadline, found = time.monotonic() + 60, {}
    while time.monotonic() < deadline:
        result = requests.get(url, params={"query": 'hbus_kafka_partitions{state="all"} > 0'}, timeout=5).json()
        found = {r["metric"]["cluster"] for r in result["data"]["result"]}
        if found == {PRIVATE, PUBLIC}:
            break
        time.sleep(1)
    assert found == {PRIVATE, PUBLIC}
    for state in ("under_replicated", "under_min_isr", "offline"):
        result = requests.get(url, params={"query": f'sum(hbus_kafka_partitions{{state="{state}"}})'}, timeout=5)
        assert float(result.json()["data"]["result"][0]["value"][1]) == 0, state


def test_only_the_router_may_pseudonymise_and_the_key_stays_in_vault(stack: Settings) -> None:
    router = VaultSession("router", stack)
    first, again = router.hmac(b"feedback:12345"), router.hmac(b"feedback:12345")
    assert first == again and first.startswith("vault:v") and "12345" not in first
    with pytest.raises(Exception) as denied:
        VaultSession("egress", stack).hmac(b"feedback:12345")
    assert type(denied.value).__name__ == "Forbidden"
