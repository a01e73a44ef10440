"""`hbus catalog apply`: a catalog change checked against the catalog in force, what the topology model then holds
provisioned on both clusters and in Vault (created, never deleted), and the new catalog put in force.

`prepare` checks and plans (the plan is pure: `plan_steps`, from the model and what the stack holds); `execute`
makes the plan with the same functions `hbus stack up` bootstraps with, in order, stopping at the first failure.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

import hvac
import requests
from confluent_kafka import KafkaException

from hybridbus.adapters import kafka
from hybridbus.adapters.codec import schema_fingerprint
from hybridbus.adapters.config import Settings, settings
from hybridbus.adapters.loaders import derived_event_types, derived_views, load_rules
from hybridbus.adapters.topology import PRIVATE, PUBLIC, AclSpec, Identity, Topology, build_topology
from hybridbus.adapters.vault import PersonToken, approle_file, kafka_kv_path, root_client
from hybridbus.ops.governance import live_ruleset, record_act
from hybridbus.ops.people import require
from hybridbus.ops.stack import bootstrap
from hybridbus.ops.stack.bootstrap import ENGINEER, gateway_kv_path, policy_for, role_name, transit_keys
from hybridbus.runtime.catalogstore import DEPARTMENTS_FILE, CatalogSnapshot, latest_snapshot, publish_snapshot
from routing.catalogdiff import CatalogChange, check_change
from routing.exceptions import HybridbusError, SchemaError
from routing.rules import RuleSet

VAULT, CATALOG = "vault", "catalog"
CREATE, UPDATE, UNCHANGED = "create", "update", "unchanged"
CLUSTERS = (PRIVATE, PUBLIC)


def kafka_system(cluster: str) -> str:
    return f"kafka-{cluster}"


@dataclass(frozen=True)
class Step:
    """One thing the model names, on one system, and what apply does to it."""

    system: str  # vault | kafka-private | kafka-public | catalog
    kind: str  # transit-key | approle | scram-user | topic | acl | snapshot
    name: str
    action: str  # create | update | unchanged

    def __str__(self) -> str:
        return f"{self.system} {self.kind} {self.name}"

    def as_dict(self) -> dict[str, str]:
        return {"system": self.system, "kind": self.kind, "name": self.name, "action": self.action}


@dataclass(frozen=True)
class Held:
    """What the running stack holds of what the model names (read by `observe`)."""

    transit_keys: frozenset[str] = frozenset()
    policies: Mapping[str, str] = field(default_factory=dict)  # policy name -> its text
    approles: frozenset[str] = frozenset()
    role_files: frozenset[str] = frozenset()  # identities whose AppRole login is handed over (the state dir)
    kv: frozenset[str] = frozenset()  # KV paths present
    topics: Mapping[str, frozenset[str]] = field(default_factory=dict)  # per cluster
    acls: Mapping[str, frozenset[AclSpec]] = field(default_factory=dict)
    scram_users: Mapping[str, frozenset[str]] = field(default_factory=dict)
    catalog_digest: str = ""


def acl_name(acl: AclSpec) -> str:
    return f"{acl.principal} {acl.operation} {acl.resource}:{acl.name}{'*' if acl.pattern == 'prefixed' else ''}"


def plan_steps(topology: Topology, held: Held, digest: str) -> list[Step]:
    """Every step of the model in the order apply makes them, each `create`, `update` or `unchanged` against what
    is held. Nothing held but absent from the model appears: apply never deletes."""
    steps = [Step(VAULT, "transit-key", key, UNCHANGED if key in held.transit_keys else CREATE)
             for key, _ in transit_keys(topology)]
    for identity in topology.identities:
        name = role_name(identity)
        complete = identity.name in held.role_files and (
            identity.kind != "department" or gateway_kv_path(identity.name) in held.kv)
        same = held.policies.get(name, "").strip() == policy_for(identity).strip()
        action = CREATE if name not in held.approles else UNCHANGED if complete and same else UPDATE
        steps.append(Step(VAULT, "approle", name, action))
    for cluster in CLUSTERS:
        system = kafka_system(cluster)
        users = held.scram_users.get(cluster, frozenset())
        for identity in (i for i in topology.identities if cluster in i.clusters):
            has = kafka_kv_path(cluster, identity.name) in held.kv and identity.principal in users
            steps.append(Step(system, "scram-user", identity.principal, UNCHANGED if has else CREATE))
        topics = held.topics.get(cluster, frozenset())
        steps.extend(Step(system, "topic", t.name, UNCHANGED if t.name in topics else CREATE)
                     for t in topology.topics_on(cluster))
        acls = held.acls.get(cluster, frozenset())
        steps.extend(Step(system, "acl", acl_name(a), UNCHANGED if a in acls else CREATE)
                     for a in topology.acls_on(cluster))
    steps.append(Step(CATALOG, "snapshot", digest, UNCHANGED if digest == held.catalog_digest else CREATE))
    return steps


def summary(steps: Iterable[Step]) -> list[dict[str, Any]]:
    """Per system and kind, in apply's order: how many are created, updated, unchanged, and the names changed."""
    rows = []
    for (system, kind), group in groupby(steps, key=lambda s: (s.system, s.kind)):
        items = list(group)
        changed = [s.name for s in items if s.action != UNCHANGED]
        rows.append({"system": system, "kind": kind, **{a: sum(s.action == a for s in items)
                                                         for a in (CREATE, UPDATE, UNCHANGED)}, "changed": changed})
    return rows


class CatalogRefused(HybridbusError):
    """The change breaks a check: each error names its file and reason; nothing was changed anywhere."""

    def __init__(self, errors: list[SchemaError]) -> None:
        self.errors = errors
        super().__init__(f"catalog change refused ({len(errors)} error(s)): nothing applied")


class ApplyStopped(HybridbusError):
    """A system failed (down, refusing): apply stopped there. What it applied before stays, and a second run takes
    up where it stopped, since each step is made only when missing."""

    def __init__(self, applied: list[Step], at: str, reason: str) -> None:
        self.applied = applied
        self.at = at
        self.reason = reason
        done = ", ".join(f"{r['kind']} {r['create'] + r['update']} on {r['system']}" for r in summary(applied)) or "nothing"
        super().__init__(f"stopped at {at}: {reason}; applied before it: {done}; nothing was deleted: run it again "
                         "once it is back")


@dataclass(frozen=True)
class Plan:
    snapshot: CatalogSnapshot  # the change, as it would be put in force
    in_force: CatalogSnapshot
    change: CatalogChange
    ruleset: RuleSet  # the rules in force it was checked against
    topology: Topology
    steps: tuple[Step, ...]
    warnings: tuple[str, ...] = ()

    @property
    def todo(self) -> list[Step]:
        return [s for s in self.steps if s.action != UNCHANGED]

    def as_dict(self) -> dict[str, Any]:
        return {"digest": self.snapshot.digest, "in_force": self.in_force.digest, "rules": self.ruleset.version,
                "new_departments": list(self.change.new_departments), "new_types": list(self.change.new_types),
                "new_versions": [f"{key} v{version}" for key, version in self.change.new_versions],
                "raised_grades": [str(r) for r in self.change.raised], "warnings": list(self.warnings),
                "plan": summary(self.steps)}


def catalog_in_force(cfg: Settings) -> CatalogSnapshot:
    """The newest snapshot on `_hbus.catalog`; the catalog the stack starts with while there is none."""
    return latest_snapshot(kafka.admin_credentials(PRIVATE, cfg)) or CatalogSnapshot.from_dir(cfg.schemas_dir)


def prepare(schemas_dir: Path, person: PersonToken, cfg: Settings | None = None) -> Plan:
    """Check the catalog of `schemas_dir` (departments beside it) against the one in force and the rules in force,
    then plan it against what the stack holds. CatalogRefused when a check fails; nothing is changed."""
    cfg = cfg or settings()
    require(person, ENGINEER)
    schemas_dir = Path(schemas_dir)
    snapshot = CatalogSnapshot.from_dir(schemas_dir)
    new, errors, warnings = snapshot.check(str(schemas_dir))
    if errors or new is None:
        raise CatalogRefused(errors)
    try:
        on_topic = latest_snapshot(kafka.admin_credentials(PRIVATE, cfg))
        in_force = on_topic or CatalogSnapshot.from_dir(cfg.schemas_dir)
        old = in_force.catalog()
        live = live_ruleset(person, old, cfg)
    except KafkaException as exc:
        raise ApplyStopped([], kafka_system(PRIVATE), f"reading the catalog and rules in force failed: {exc}") from None
    ruleset = live.ruleset if live is not None and live.ruleset is not None else load_rules(cfg)
    change, errors = check_change(old, new, ruleset, schema_fingerprint, str(schemas_dir),
                                  str(schemas_dir.parent / DEPARTMENTS_FILE), derived_event_types(new, ruleset))
    if errors:
        raise CatalogRefused(errors)
    topology = build_topology(new, derived_views(new, ruleset), {PRIVATE: cfg.private_brokers, PUBLIC: cfg.public_brokers})
    held = observe(cfg, topology, on_topic.digest if on_topic is not None else "")
    return Plan(snapshot, in_force, change, ruleset, topology, tuple(plan_steps(topology, held, snapshot.digest)),
                tuple(warnings))


def observe(cfg: Settings, topology: Topology, catalog_digest: str) -> Held:
    """What Vault and both clusters hold of what `topology` names; ApplyStopped naming the system that did not
    answer (nothing is applied before everything was seen)."""
    client = root_client(cfg)
    try:
        keys = frozenset(k for k, _ in transit_keys(topology) if bootstrap.transit_key_exists(client, k))
        policies, approles = {}, set()
        for identity in topology.identities:
            name = role_name(identity)
            text = _policy(client, name)
            if text is not None:
                policies[name] = text
            if _approle_exists(client, name):
                approles.add(name)
        paths = [gateway_kv_path(i.name) for i in topology.identities if i.kind == "department"]
        paths += [kafka_kv_path(c, i.name) for i in topology.identities for c in i.clusters]
        kv = frozenset(p for p in paths if bootstrap.kv_exists(client, p))
    except (requests.RequestException, hvac.exceptions.VaultError) as exc:
        raise ApplyStopped([], VAULT, f"reading Vault failed: {type(exc).__name__}") from None
    role_files = frozenset(i.name for i in topology.identities if approle_file(i.name, cfg).exists())
    topics, acls, users = {}, {}, {}
    for cluster in CLUSTERS:
        try:
            admin = bootstrap.kafka_admin(cfg, cluster, kafka.admin_credentials(cluster, cfg))
            topics[cluster] = frozenset(bootstrap.topic_names(admin, cluster))
            acls[cluster] = frozenset(bootstrap.existing_acls(admin, cluster))
            users[cluster] = frozenset(bootstrap.scram_users(admin, cluster))
        except (HybridbusError, KafkaException) as exc:
            raise ApplyStopped([], kafka_system(cluster), str(exc)) from None
    return Held(keys, policies, frozenset(approles), role_files, kv, topics, acls, users, catalog_digest)


def _policy(client: hvac.Client, name: str) -> str | None:
    try:
        result = client.sys.read_policy(name=name)
    except hvac.exceptions.InvalidPath:
        return None
    return str((result.get("data") or result).get("rules", ""))


def _approle_exists(client: hvac.Client, name: str) -> bool:
    try:
        client.auth.approle.read_role(role_name=name)
        return True
    except hvac.exceptions.InvalidPath:
        return False


# Failures a step can meet on a system that is down or refusing; each stops apply where it is.
_STEP_FAILURES = (HybridbusError, KafkaException, hvac.exceptions.VaultError, requests.RequestException, OSError)


def execute(plan: Plan, person: PersonToken, cfg: Settings | None = None) -> list[Step]:
    """Make every step of the plan that is not unchanged, in order: Vault, the private cluster, the public cluster,
    then the catalog put in force (processors learn types only once their topics and logins exist), then the
    act on the audit chain with `person` as the actor. Returns what was applied; ApplyStopped at a failure."""
    cfg = cfg or settings()
    require(person, ENGINEER)
    applied: list[Step] = []
    todo = plan.todo
    if not todo:
        return applied
    try:
        for (system, kind), group in groupby(todo, key=lambda s: (s.system, s.kind)):
            steps = list(group)
            for done in _make(plan, system, kind, steps, person, cfg):
                applied.append(done)  # one by one: a failure part-way says exactly what was made
    except _STEP_FAILURES as exc:
        at = next((str(s) for s in todo if s not in applied), "?")
        stopped = ApplyStopped(applied, at, _reason(exc))
        if applied:
            _record(plan, person, "catalog_apply_stopped", applied, f"stopped at {at}; ", best_effort=True)
        raise stopped from None
    try:
        _record(plan, person, "catalog_applied", applied)
    except HybridbusError as exc:
        raise ApplyStopped(applied, "the audit chain", str(exc)) from None
    return applied


def _make(plan: Plan, system: str, kind: str, steps: list[Step], person: PersonToken,
          cfg: Settings) -> Iterable[Step]:
    """Make one group of steps (one kind on one system); yields each step once it is made."""
    if system == VAULT:
        client = root_client(cfg)
        if kind == "transit-key":
            types = dict(transit_keys(plan.topology))
            for step in steps:
                bootstrap.ensure_transit_key(client, step.name, types[step.name])
                yield step
        else:
            identities = {role_name(i): i for i in plan.topology.identities}
            for step in steps:
                bootstrap.provision_identity(client, cfg, identities[step.name])
                yield step
        return
    if system == CATALOG:
        publish_snapshot(CatalogSnapshot(plan.snapshot.files, person.name, int(time.time() * 1000)),
                         kafka.admin_credentials(PRIVATE, cfg))
        yield from steps
        return
    cluster = system.removeprefix("kafka-")
    admin = bootstrap.kafka_admin(cfg, cluster, kafka.admin_credentials(cluster, cfg))
    names = {s.name for s in steps}
    if kind == "scram-user":
        identities: list[Identity] = [i for i in plan.topology.identities if i.principal in names and cluster in i.clusters]
        bootstrap.create_scram_users(admin, root_client(cfg), identities, cluster)
    elif kind == "topic":
        bootstrap.create_topics(admin, [t for t in plan.topology.topics_on(cluster) if t.name in names], cluster)
    else:
        bootstrap.create_acls(admin, [a for a in plan.topology.acls_on(cluster) if acl_name(a) in names], cluster)
    yield from steps


def _reason(exc: BaseException) -> str:
    # hvac and requests errors can quote a request; their type names the failure well enough without it.
    return str(exc) if isinstance(exc, (HybridbusError, KafkaException)) else type(exc).__name__


def _record(plan: Plan, person: PersonToken, verdict: str, applied: list[Step], prefix: str = "",
            best_effort: bool = False) -> None:
    change = plan.change
    made = ", ".join(f"{r['kind']} {r['create'] + r['update']}" for r in summary(applied))
    reason = (f"{prefix}digest {plan.snapshot.digest[7:19]} over {plan.in_force.digest[7:19]}; "
              f"new departments: {', '.join(change.new_departments) or 'none'}; new versions: "
              f"{', '.join(f'{k} v{v}' for k, v in change.new_versions) or 'none'}; made: {made}")
    try:
        record_act(CATALOG, verdict, plan.snapshot.digest, "live", reason, int(time.time() * 1000), person.name)
    except HybridbusError:
        if not best_effort:
            raise


def write_catalog_dir(files: Mapping[str, str], root: Path) -> Path:
    """Write a catalog's files (a snapshot's, e.g. the one in force, to change it) as a schemas folder under `root`:
    `root/avro/<dept>/<event>.v<N>.avsc` and `root/departments.yaml`. Returns the `.avsc` folder, for `--schemas`."""
    schemas_dir = Path(root) / "avro"
    for name, text in files.items():
        path = Path(root) / name if name == DEPARTMENTS_FILE else schemas_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return schemas_dir
