"""First-start bootstrap of the local stack: Vault mounts, policies and AppRoles; S3 identities and buckets;
Kafka SCRAM users, topics and ACLs from the topology model. Every step is idempotent.

Generated credentials go to Vault KV (and, for the servers' own root credentials, the state dir, 0600).
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import hvac
import requests
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AdminClient,
    AclOperation,
    AclPermissionType,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from hybridbus.adapters import kafka
from hybridbus.adapters.config import Settings
from hybridbus.adapters.exceptions import DeliveryError
from hybridbus.adapters.fieldcrypt import field_key_name
from hybridbus.adapters.s3 import s3_client
from hybridbus.adapters.secrets import (
    KafkaCredentials,
    S3Credentials,
    new_access_key,
    new_password,
    read_private,
    write_private,
)
from hybridbus.adapters.topology import AclSpec, Identity, TopicSpec, Topology
from hybridbus.adapters.vault import (
    AUDIT_SIGNING_KEY,
    BOUNDARY_KEY,
    KV_MOUNT,
    PSEUDONYM_KEY,
    RULES_SIGNING_KEYS,
    TRANSIT_MOUNT,
    approle_file,
    kafka_kv_path,
    s3_kv_path,
)
from hybridbus.ops.stack.exceptions import StackError
from hybridbus.runtime.catalogstore import CatalogSnapshot, latest_snapshot, publish_snapshot
from routing.grades import Grade

RULE_FOLLOWERS = ("router", "egress", "archiver")
BOUNDARY_GUARDS = ("egress", "archiver")  # the processors the emergency stop stops
S3_IDENTITIES = ("archiver", "audit", "public-reader")
TOKEN_TTL = "1h"
TOKEN_MAX_TTL = "24h"
# (name, Transit key type); the rule-signing keys are one per duty (proposer, approver)
TRANSIT_KEYS = ((PSEUDONYM_KEY, "hmac"), (AUDIT_SIGNING_KEY, "ed25519"), *((k, "ed25519") for k in RULES_SIGNING_KEYS),
                (BOUNDARY_KEY, "ed25519"))
FIELD_KEY_TYPE = "aes256-gcm96"
CATALOG_READ_TIMEOUT = 180.0
# One Vault request, `initialize` the slowest (it writes the raft store and its keys): about 1.5 s on an idle 2-core
# machine, well over 10 s on a loaded one, where a shorter wait lost the only copy of a new unseal key.
VAULT_REQUEST_TIMEOUT = 120.0
# The grades a field can be encrypted at (a schema may opt a field in below the default threshold).
FIELD_KEY_GRADES = tuple(g for g in Grade if g > Grade.PUBLIC)


def field_keys(topology: Topology) -> tuple[tuple[str, str], ...]:
    """One Transit key per department and grade wraps the data keys of that department's encrypted fields."""
    return tuple((field_key_name(ident.name, grade.id), FIELD_KEY_TYPE)
                 for ident in topology.identities if ident.kind == "department" for grade in FIELD_KEY_GRADES)


def transit_keys(topology: Topology) -> tuple[tuple[str, str], ...]:
    return TRANSIT_KEYS + field_keys(topology)


# --- Vault -----------------------------------------------------------------------------------------

def vault_init_and_unseal(cfg: Settings) -> hvac.Client:
    """Initialise on first start (1 key share, kept 0600 under the state dir) and unseal on every start."""
    client = hvac.Client(url=cfg.vault_addr, timeout=VAULT_REQUEST_TIMEOUT)
    try:
        _init_and_unseal(client, cfg.secrets_dir / "vault-init.json")
    except (requests.RequestException, hvac.exceptions.VaultError) as exc:  # the kind only: its text may carry a key
        raise StackError("vault", f"initialising or unsealing failed: {type(exc).__name__} (each request may take "
                                  f"{VAULT_REQUEST_TIMEOUT:.0f}s)") from None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{cfg.vault_addr}/v1/sys/health", timeout=2).status_code == 200:
                return client  # initialised, unsealed and active
        except Exception:  # noqa: BLE001 - still electing itself leader
            pass
        time.sleep(0.3)
    raise StackError("vault", "vault did not become active after unseal")


def _init_and_unseal(client: hvac.Client, init_file: Path) -> None:
    if not client.sys.is_initialized():
        if init_file.exists():
            raise StackError("vault", "vault data is uninitialised but an init file exists; "
                                      "run `hbus stack down --purge`")
        result = client.sys.initialize(secret_shares=1, secret_threshold=1)
        write_private(init_file, {"unseal_key": result["keys"][0], "root_token": result["root_token"]})
    elif not init_file.exists():
        raise StackError("vault", "vault data is initialised but its unseal key was never kept (a first start was cut "
                                  "short); run `hbus stack down --purge`")
    data = read_private(init_file)
    if client.sys.is_sealed():
        client.sys.submit_unseal_key(data["unseal_key"])
    client.token = data["root_token"]


def role_name(identity: Identity) -> str:
    """The name of an identity's Vault policy and AppRole."""
    return f"hbus-{identity.name}"


def policy_for(identity: Identity) -> str:
    """Least privilege: an identity reads only its own credentials, plus the Transit operation it needs."""
    name = identity.name
    rules = [
        f'path "{KV_MOUNT}/data/kafka/+/{name}" {{ capabilities = ["read"] }}',
        f'path "{KV_MOUNT}/data/s3/{name}" {{ capabilities = ["read"] }}',
        'path "auth/token/renew-self" { capabilities = ["update"] }',
        'path "auth/token/lookup-self" { capabilities = ["read"] }',
    ]
    if identity.kind == "department":
        rules.append(f'path "{KV_MOUNT}/data/gateway/{name}" {{ capabilities = ["read"] }}')
        # Encrypting its own fields needs a new data key; reading them back needs Transit to unwrap one, which only
        # a department cleared for that grade may ask (the same line as its topics' read ACLs).
        rules.append(f'path "{TRANSIT_MOUNT}/datakey/plaintext/{field_key_name(name, "*")}" {{ capabilities = ["update"] }}')
        for grade in FIELD_KEY_GRADES:
            if identity.clearance is not None and grade <= identity.clearance:
                rules.append(f'path "{TRANSIT_MOUNT}/decrypt/{field_key_name(name, grade.id)}" '
                             '{ capabilities = ["update"] }')
    if name == "router":
        rules.append(f'path "{TRANSIT_MOUNT}/hmac/{PSEUDONYM_KEY}" {{ capabilities = ["update"] }}')
        rules.append(f'path "{TRANSIT_MOUNT}/hmac/{PSEUDONYM_KEY}/*" {{ capabilities = ["update"] }}')
    if name == "audit":
        rules.append(f'path "{TRANSIT_MOUNT}/sign/{AUDIT_SIGNING_KEY}" {{ capabilities = ["update"] }}')
        rules.append(f'path "{TRANSIT_MOUNT}/verify/{AUDIT_SIGNING_KEY}" {{ capabilities = ["update"] }}')
    if name == "gateway":
        rules.append(f'path "{KV_MOUNT}/data/gateway/*" {{ capabilities = ["read"] }}')
        # It seals for every department it publishes for, and unwraps nothing.
        rules.append(f'path "{TRANSIT_MOUNT}/datakey/plaintext/fields-*" {{ capabilities = ["update"] }}')
    if name in RULE_FOLLOWERS:  # verify (never sign) the rule sets they follow
        rules.extend(f'path "{TRANSIT_MOUNT}/verify/{key}" {{ capabilities = ["update"] }}' for key in RULES_SIGNING_KEYS)
    if name in BOUNDARY_GUARDS:  # verify who reopened the boundary
        rules.append(f'path "{TRANSIT_MOUNT}/verify/{BOUNDARY_KEY}" {{ capabilities = ["update"] }}')
    return "\n".join(rules) + "\n"


# --- people -------------------------------------------------------------------------------------------
# Named sample people of the local stack, one per duty (two operators: a reopening can be someone else's act).
# In production the same policies are bound to OIDC or LDAP groups (infra/terraform, `person_roles`).
ENGINEER, APPROVER, OPERATOR, AUDITOR = "engineer", "approver", "operator", "auditor"
PERSON_ROLES = (ENGINEER, APPROVER, OPERATOR, AUDITOR)
PEOPLE = (("li.wei", ENGINEER), ("zhang.min", APPROVER), ("wang.fang", OPERATOR), ("zhao.lei", OPERATOR),
          ("chen.jing", AUDITOR))
PERSON_TOKEN_TTL = "1h"  # short: a person logs in again, a lost token is soon worthless


def person_policy_name(role: str) -> str:
    return f"hbus-person-{role}"


def person_policy(role: str) -> str:
    """Each duty may do only its own act: engineers propose (sign as proposer), approvers approve, operators stop
    and start what leaves and put quarantined records up for release, auditors verify the audit trail's
    signatures. Nobody reads a service's secret.

    Releasing a quarantined record takes an operator (who watches the quarantine and proposes, signing with the
    operators' key) and an approver (who already approves what widens what leaves, and approves the release with
    the approvers' key after checking the operator's signature: hence the approvers' `verify` of that key)."""
    def may(op: str, key: str) -> str:
        return f'path "{TRANSIT_MOUNT}/{op}/{key}" {{ capabilities = ["update"] }}'

    rules = ['path "auth/token/lookup-self" { capabilities = ["read"] }',
             'path "auth/token/renew-self" { capabilities = ["update"] }']
    if role == ENGINEER:
        rules.append(may("sign", RULES_SIGNING_KEYS[0]))
    if role == APPROVER:
        rules.append(may("sign", RULES_SIGNING_KEYS[1]))
    if role in (ENGINEER, APPROVER):
        rules.extend(may("verify", key) for key in RULES_SIGNING_KEYS)
    if role == OPERATOR:
        rules.append(may("sign", BOUNDARY_KEY))
    if role == APPROVER:
        rules.append(may("verify", BOUNDARY_KEY))  # the operator's signature on a quarantine release proposal
    if role == AUDITOR:
        rules.append(may("verify", AUDIT_SIGNING_KEY))
    return "\n".join(rules) + "\n"


def person_file(cfg: Settings, name: str) -> Path:
    """Where the local stack keeps a sample person's generated password (0600, never in the repo or a log)."""
    return cfg.secrets_dir / "people" / f"{name}.json"


def people_bootstrap(client: hvac.Client, cfg: Settings) -> None:
    if "userpass/" not in client.sys.list_auth_methods()["data"]:
        client.sys.enable_auth_method("userpass")
    for role in PERSON_ROLES:
        client.sys.create_or_update_policy(name=person_policy_name(role), policy=person_policy(role))
    for name, role in PEOPLE:
        path = person_file(cfg, name)
        if not path.exists():
            write_private(path, {"username": name, "role": role, "password": new_password()})
        client.auth.userpass.create_or_update_user(
            username=name, password=read_private(path)["password"], policies=[person_policy_name(role)],
            token_ttl=PERSON_TOKEN_TTL, token_max_ttl=PERSON_TOKEN_TTL)


def vault_bootstrap(client: hvac.Client, cfg: Settings, topology: Topology) -> None:
    mounts = client.sys.list_mounted_secrets_engines()["data"]
    if f"{KV_MOUNT}/" not in mounts:
        client.sys.enable_secrets_engine("kv", path=KV_MOUNT, options={"version": "2"})
    if f"{TRANSIT_MOUNT}/" not in mounts:
        client.sys.enable_secrets_engine("transit", path=TRANSIT_MOUNT)
    if "approle/" not in client.sys.list_auth_methods()["data"]:
        client.sys.enable_auth_method("approle")
    for key, key_type in transit_keys(topology):
        ensure_transit_key(client, key, key_type)
    for identity in topology.identities:
        provision_identity(client, cfg, identity)
    people_bootstrap(client, cfg)


def transit_key_exists(client: hvac.Client, key: str) -> bool:
    try:
        client.secrets.transit.read_key(name=key, mount_point=TRANSIT_MOUNT)
        return True
    except hvac.exceptions.InvalidPath:
        return False


def ensure_transit_key(client: hvac.Client, key: str, key_type: str) -> None:
    """Create a Transit key unless it exists: an existing key is never replaced (what it sealed stays readable)."""
    if not transit_key_exists(client, key):
        body = {"type": key_type, **({"key_size": 32} if key_type == "hmac" else {})}
        client.adapter.post(f"/v1/{TRANSIT_MOUNT}/keys/{key}", json=body)


def provision_identity(client: hvac.Client, cfg: Settings, identity: Identity) -> None:
    """An identity's policy and AppRole as the model says, its login (role id, secret id) handed over once through
    the state dir, and a department's gateway token in KV. Idempotent: nothing it made before is replaced."""
    policy = role_name(identity)
    client.sys.create_or_update_policy(name=policy, policy=policy_for(identity))
    client.auth.approle.create_or_update_approle(
        role_name=policy, token_policies=[policy], token_ttl=TOKEN_TTL, token_max_ttl=TOKEN_MAX_TTL,
        secret_id_ttl="0", token_type="service",
    )
    role_file = approle_file(identity.name, cfg)
    if not role_file.exists():
        role_id = client.auth.approle.read_role_id(role_name=policy)["data"]["role_id"]
        secret_id = client.auth.approle.generate_secret_id(role_name=policy)["data"]["secret_id"]
        write_private(role_file, {"role_id": role_id, "secret_id": secret_id})
    if identity.kind == "department" and not kv_exists(client, gateway_kv_path(identity.name)):
        kv_put(client, gateway_kv_path(identity.name), {"token": new_password(32)})


def gateway_kv_path(dept: str) -> str:
    return f"gateway/{dept}"


def kv_exists(client: hvac.Client, path: str) -> bool:
    try:
        client.secrets.kv.v2.read_secret_version(path=path, mount_point=KV_MOUNT, raise_on_deleted_version=True)
        return True
    except hvac.exceptions.InvalidPath:
        return False


def kv_get(client: hvac.Client, path: str) -> dict:  # type: ignore[type-arg]
    return dict(client.secrets.kv.v2.read_secret_version(
        path=path, mount_point=KV_MOUNT, raise_on_deleted_version=True)["data"]["data"])


def kv_put(client: hvac.Client, path: str, data: dict) -> None:  # type: ignore[type-arg]
    client.secrets.kv.v2.create_or_update_secret(path=path, secret=data, mount_point=KV_MOUNT)


# --- S3 ----------------------------------------------------------------------------------------------

def s3_admin_credentials(cfg: Settings) -> S3Credentials:
    data = read_private(cfg.secrets_dir / "s3-admin.json")
    return S3Credentials(data["access_key"], data["secret_key"])


def s3_admin_client(cfg: Settings):  # type: ignore[no-untyped-def]
    return s3_client(cfg, s3_admin_credentials(cfg))


def s3_grants(cfg: Settings) -> dict[str, list[str]]:
    """What each S3 identity may do (SeaweedFS `Action:bucket`); nobody else may do anything (deny by default)."""
    open_data, audit = cfg.open_data_bucket, cfg.audit_bucket
    return {
        "archiver": [f"Read:{open_data}", f"Write:{open_data}", f"List:{open_data}"],
        "audit": [f"Read:{audit}", f"Write:{audit}", f"List:{audit}"],
        "public-reader": [f"Read:{open_data}", f"List:{open_data}"],
    }


def s3_write_identities(client: hvac.Client, cfg: Settings) -> None:
    """Generate S3 keys once (kept in Vault KV) and write the identities file `weed` checks signatures with."""
    admin_file = cfg.secrets_dir / "s3-admin.json"
    if not admin_file.exists():
        write_private(admin_file, {"access_key": new_access_key(), "secret_key": new_password()})
    admin = read_private(admin_file)
    grants = s3_grants(cfg)
    identities = [{"name": "admin", "credentials": [{"accessKey": admin["access_key"], "secretKey": admin["secret_key"]}],
                   "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]
    for name in S3_IDENTITIES:
        path = s3_kv_path(name)
        if not kv_exists(client, path):
            kv_put(client, path, {"access_key": new_access_key(), "secret_key": new_password()})
        creds = kv_get(client, path)
        keys = [{"accessKey": creds["access_key"], "secretKey": creds["secret_key"]}]
        if creds.get("previous_access_key"):  # the key before a rotation stays valid until the next one
            keys.insert(0, {"accessKey": creds["previous_access_key"], "secretKey": creds["previous_secret_key"]})
        identities.append({"name": name, "credentials": keys, "actions": grants[name]})
    write_private(cfg.secrets_dir / "s3-identities.json", {"identities": identities})


def s3_bootstrap(cfg: Settings) -> None:
    s3 = s3_admin_client(cfg)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for bucket in (cfg.open_data_bucket, cfg.audit_bucket):
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket)


# --- Kafka -------------------------------------------------------------------------------------------

_OPS = {"read": AclOperation.READ, "write": AclOperation.WRITE, "describe": AclOperation.DESCRIBE,
        "create": AclOperation.CREATE, "all": AclOperation.ALL}
_RES = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
        "transactional_id": ResourceType.TRANSACTIONAL_ID}
_PAT = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}


def kafka_admin(cfg: Settings, cluster: str, admin_creds: KafkaCredentials) -> AdminClient:
    return AdminClient(kafka.client_config(cluster, admin_creds, cfg))


def kafka_bootstrap(client: hvac.Client, cfg: Settings, topology: Topology, cluster: str,
                    admin_creds: KafkaCredentials) -> None:
    admin = kafka_admin(cfg, cluster, admin_creds)
    create_scram_users(admin, client, [i for i in topology.identities if cluster in i.clusters], cluster)
    existing = set(admin.list_topics(timeout=10).topics)
    create_topics(admin, [t for t in topology.topics_on(cluster) if t.name not in existing], cluster)
    create_acls(admin, topology.acls_on(cluster), cluster)


def create_scram_users(admin: AdminClient, client: hvac.Client, identities: Iterable[Identity], cluster: str) -> None:
    """Each identity's SCRAM login on `cluster`, its password generated once and kept in Vault KV."""
    upserts = []
    for identity in identities:
        path = kafka_kv_path(cluster, identity.name)
        if not kv_exists(client, path):
            kv_put(client, path, {"username": identity.principal, "password": new_password()})
        creds = kv_get(client, path)
        upserts.append(UserScramCredentialUpsertion(
            creds["username"], ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), creds["password"].encode()))
    if upserts:
        _wait_all(admin.alter_user_scram_credentials(upserts), "creating SCRAM users", cluster)


def create_topics(admin: AdminClient, topics: Iterable[TopicSpec], cluster: str) -> None:
    new = [NewTopic(t.name, num_partitions=t.partitions, replication_factor=t.replication_factor, config=dict(t.config))
           for t in topics]
    if new:
        _wait_all(admin.create_topics(new, operation_timeout=30), "creating topics", cluster, ignore="TOPIC_ALREADY_EXISTS")


def create_acls(admin: AdminClient, acls: Iterable[AclSpec], cluster: str) -> None:
    bindings = [AclBinding(_RES[a.resource], a.name, _PAT[a.pattern], a.principal, "*", _OPS[a.operation],
                           AclPermissionType.ALLOW) for a in acls]
    if bindings:
        _wait_all(admin.create_acls(bindings), "creating ACLs", cluster)


def existing_acls(admin: AdminClient, cluster: str) -> set[AclSpec]:
    """The ALLOW entries `cluster` holds, in the model's terms (entries the model has no words for are left out)."""
    ops, res, pat = ({v: k for k, v in m.items()} for m in (_OPS, _RES, _PAT))
    query = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                             AclPermissionType.ALLOW)
    try:
        bindings = admin.describe_acls(query, request_timeout=30).result(timeout=60)
    except KafkaException as exc:
        raise StackError(f"kafka-{cluster}", f"reading ACLs failed: {exc.args[0]}") from None
    return {AclSpec(cluster, b.principal, res[b.restype], b.name, pat[b.resource_pattern_type], ops[b.operation])
            for b in bindings if b.restype in res and b.resource_pattern_type in pat and b.operation in ops}


def scram_users(admin: AdminClient, cluster: str) -> set[str]:
    """The users that have a SCRAM login on `cluster`."""
    try:
        found = admin.describe_user_scram_credentials(request_timeout=30).result(timeout=60)
    except KafkaException as exc:
        raise StackError(f"kafka-{cluster}", f"reading SCRAM users failed: {exc.args[0]}") from None
    return set(found)


def topic_names(admin: AdminClient, cluster: str) -> set[str]:
    try:
        return set(admin.list_topics(timeout=10).topics)
    except KafkaException as exc:
        raise StackError(f"kafka-{cluster}", f"listing topics failed: {exc.args[0]}") from None


def catalog_bootstrap(cfg: Settings, admin_creds: KafkaCredentials) -> None:
    """Put the catalog the stack starts with in force on `_hbus.catalog`, unless a catalog is already there (one
    `hbus catalog apply` put in force stays: a restart never takes a department back)."""
    try:
        # The topic may have been made a moment ago: on a busy machine its leader can take a minute to be elected.
        if latest_snapshot(admin_creds, timeout=CATALOG_READ_TIMEOUT) is None:
            publish_snapshot(CatalogSnapshot.from_dir(cfg.schemas_dir, applied_by="hbus stack up",
                                                      applied_at_ms=int(time.time() * 1000)), admin_creds)
    except (DeliveryError, KafkaException) as exc:
        raise StackError("kafka-private", f"putting the catalog in force failed: {exc}") from None


def _wait_all(futures: dict | list, what: str, cluster: str, ignore: str | None = None) -> None:  # type: ignore[type-arg]
    items: Iterable = futures.values() if isinstance(futures, dict) else futures  # type: ignore[assignment]
    for future in items:
        try:
            future.result(timeout=60)
        except KafkaException as exc:
            err = exc.args[0]
            if ignore and getattr(err, "name", lambda: "")() == ignore:
                continue
            raise StackError(f"kafka-{cluster}", f"{what} failed: {err}") from None

