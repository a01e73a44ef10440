"""The one topology model of hybridbus: identities, topics and ACLs on both clusters, Vault policies.

Derived from the schema catalog and the rule set; the local stack applies it, and production renders it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from routing.grades import Grade

if TYPE_CHECKING:
    from routing.catalog import Catalog

PRIVATE = "private"
PUBLIC = "public"

PROCESSORS = ("router", "egress", "archiver", "audit", "gateway")
PUBLIC_READER = "public-reader"

DLQ_TOPIC = "_hbus.dlq"
RULES_TOPIC = "_hbus.rules"
AUDIT_TOPIC = "_hbus.audit"
DECISIONS_TOPIC = "_hbus.decisions"
QUARANTINE_TOPIC = "_hbus.quarantine"
CONTROL_TOPIC = "_hbus.control"  # operators' switches (the emergency stop), compacted, newest per key in force
CATALOG_TOPIC = "_hbus.catalog"  # the catalog in force (`hbus catalog apply`), compacted, one record

DEFAULT_PARTITIONS = 6
PRODUCTION_BROKERS: Mapping[str, int] = {PRIVATE: 3, PUBLIC: 3}  # what infra/terraform deploys


@dataclass(frozen=True)
class Replication:
    """How many copies of each partition a cluster keeps, and how many must have a write before it is acknowledged."""

    factor: int
    min_insync: int


def replication_for(brokers: int) -> Replication:
    """RF 3 and min ISR 2 from three brokers up: one broker may fail with every acknowledged write still on two
    copies and producers (acks=all) still served; a second failure makes them wait rather than risk a write on
    one copy. Fewer brokers: every broker keeps every partition, and one copy acknowledges (the local default)."""
    if brokers < 1:
        raise ValueError(f"a cluster has at least one broker, not {brokers}")
    factor = min(3, brokers)
    return Replication(factor, 2 if factor >= 3 else 1)


@dataclass(frozen=True)
class Identity:
    """A login of the bus: a processor, a department's systems, or the public-cloud reader."""

    name: str
    kind: str  # "processor" | "department" | "reader"
    clearance: Grade | None = None  # a department's: the highest grade it may read (topics, and encrypted fields)

    @property
    def principal(self) -> str:
        prefix = {"processor": "svc", "department": "dept", "reader": "pub"}[self.kind]
        return f"{prefix}-{self.name}"

    @property
    def clusters(self) -> tuple[str, ...]:
        if self.kind == "reader":
            return (PUBLIC,)
        if self.name == "egress":
            return (PRIVATE, PUBLIC)
        return (PRIVATE,)


@dataclass(frozen=True)
class TopicSpec:
    cluster: str
    name: str
    partitions: int = DEFAULT_PARTITIONS
    config: Mapping[str, str] = field(default_factory=dict)  # min.insync.replicas included
    replication_factor: int = 1


@dataclass(frozen=True, order=True)
class AclSpec:
    """One ALLOW entry; everything not listed is denied (the brokers run deny-by-default)."""

    cluster: str
    principal: str
    resource: str  # "topic" | "group" | "transactional_id"
    name: str
    pattern: str  # "literal" | "prefixed"
    operation: str  # "read" | "write" | "describe" | "create" | "all"


@dataclass(frozen=True)
class Topology:
    identities: tuple[Identity, ...]
    topics: tuple[TopicSpec, ...]
    acls: tuple[AclSpec, ...]

    def identity(self, name: str) -> Identity:
        for ident in self.identities:
            if ident.name == name:
                return ident
        raise KeyError(name)

    def topics_on(self, cluster: str) -> list[TopicSpec]:
        return [t for t in self.topics if t.cluster == cluster]

    def acls_on(self, cluster: str) -> list[AclSpec]:
        return [a for a in self.acls if a.cluster == cluster]


def build_topology(catalog: Catalog, derived_views: Iterable[tuple[str, str]] = (),
                   brokers: Mapping[str, int] = PRODUCTION_BROKERS) -> Topology:
    """The topology for `catalog`, plus the `(dept, view)` derived public views of the rule set, on clusters of
    `brokers` brokers each (production's by default; the local stack passes its own sizes)."""
    departments = sorted(catalog.departments.values(), key=lambda d: d.id)
    identities = (
        tuple(Identity(p, "processor") for p in PROCESSORS)
        + tuple(Identity(d.id, "department", d.clearance) for d in departments)
        + (Identity(PUBLIC_READER, "reader"),)
    )
    topics: dict[tuple[str, str], TopicSpec] = {}

    def add(spec: TopicSpec) -> None:
        replication = replication_for(brokers[spec.cluster])
        topics[(spec.cluster, spec.name)] = replace(
            spec, replication_factor=replication.factor,
            config={**spec.config, "min.insync.replicas": str(replication.min_insync)})

    for event_type in catalog.latest():
        add(TopicSpec(PRIVATE, event_type.ingress_topic))
        # Only the grades this type can actually take: from its record grade up to its schema's
        # high-water mark (a payload can leave nullable fields out, never add fields).
        for grade in Grade:
            if event_type.record_grade <= grade <= event_type.schema_grade:
                add(TopicSpec(PRIVATE, event_type.graded_topic(grade)))
                if grade is Grade.PUBLIC:
                    add(TopicSpec(PUBLIC, event_type.graded_topic(grade)))
    for dept, view in derived_views:
        name = f"{Grade.PUBLIC.id}.{dept}.{view}"
        add(TopicSpec(PRIVATE, name))
        add(TopicSpec(PUBLIC, name))

    week = str(7 * 24 * 3600 * 1000)
    add(TopicSpec(PRIVATE, DLQ_TOPIC, 3, {"retention.ms": str(30 * 24 * 3600 * 1000)}))
    add(TopicSpec(PRIVATE, RULES_TOPIC, 1, {"cleanup.policy": "compact"}))
    # One partition: the audit trail is a single hash chain, totally ordered.
    add(TopicSpec(PRIVATE, AUDIT_TOPIC, 1, {"retention.ms": "-1"}))
    add(TopicSpec(PRIVATE, DECISIONS_TOPIC, DEFAULT_PARTITIONS, {"retention.ms": week}))
    add(TopicSpec(PRIVATE, QUARANTINE_TOPIC, 3, {"retention.ms": "-1"}))
    add(TopicSpec(PRIVATE, CONTROL_TOPIC, 1, {"cleanup.policy": "compact"}))
    add(TopicSpec(PRIVATE, CATALOG_TOPIC, 1, {"cleanup.policy": "compact"}))

    acls = sorted(set(_acls(identities, departments)))
    return Topology(identities, tuple(sorted(topics.values(), key=lambda t: (t.cluster, t.name))), tuple(acls))


def _acls(identities: Iterable[Identity], departments: Iterable) -> Iterable[AclSpec]:  # type: ignore[type-arg]
    clearance = {d.id: d.clearance for d in departments}
    for ident in identities:
        p = f"User:{ident.principal}"
        if ident.kind == "department":
            dept = ident.name
            yield AclSpec(PRIVATE, p, "topic", f"ingress.{dept}.", "prefixed", "write")
            yield AclSpec(PRIVATE, p, "group", f"{ident.principal}.", "prefixed", "read")
            # Open data and government-internal data are readable across departments; personal and
            # important data only from the department's own topics, up to its clearance.
            for grade in Grade:
                if grade > clearance[dept]:
                    continue
                scope = f"{grade.id}." if grade <= Grade.INTERNAL else f"{grade.id}.{dept}."
                yield AclSpec(PRIVATE, p, "topic", scope, "prefixed", "read")
        elif ident.kind == "reader":
            yield AclSpec(PUBLIC, p, "topic", f"{Grade.PUBLIC.id}.", "prefixed", "read")
            yield AclSpec(PUBLIC, p, "group", f"{ident.principal}.", "prefixed", "read")
        else:
            yield from _processor_acls(ident, p)


def _processor_acls(ident: Identity, p: str) -> Iterable[AclSpec]:
    name = ident.name
    group = f"hbus-{name}"
    if name != "gateway":
        yield AclSpec(PRIVATE, p, "group", group, "prefixed", "read")
        # Faust keeps its own bookkeeping topics under the app id.
        yield AclSpec(PRIVATE, p, "topic", f"{group}-", "prefixed", "all")
    if name == "router":
        yield AclSpec(PRIVATE, p, "topic", "ingress.", "prefixed", "read")
        yield AclSpec(PRIVATE, p, "topic", RULES_TOPIC, "literal", "read")
        yield AclSpec(PRIVATE, p, "topic", CATALOG_TOPIC, "literal", "read")
        for grade in Grade:
            yield AclSpec(PRIVATE, p, "topic", f"{grade.id}.", "prefixed", "write")
        for topic in (DLQ_TOPIC, DECISIONS_TOPIC):
            yield AclSpec(PRIVATE, p, "topic", topic, "literal", "write")
    elif name == "egress":
        yield AclSpec(PRIVATE, p, "topic", f"{Grade.PUBLIC.id}.", "prefixed", "read")
        yield AclSpec(PRIVATE, p, "topic", RULES_TOPIC, "literal", "read")  # derived view definitions
        yield AclSpec(PRIVATE, p, "topic", CONTROL_TOPIC, "literal", "read")  # the emergency stop
        yield AclSpec(PRIVATE, p, "topic", CATALOG_TOPIC, "literal", "read")
        for topic in (QUARANTINE_TOPIC, DECISIONS_TOPIC):
            yield AclSpec(PRIVATE, p, "topic", topic, "literal", "write")
        yield AclSpec(PUBLIC, p, "topic", f"{Grade.PUBLIC.id}.", "prefixed", "write")
        yield AclSpec(PUBLIC, p, "topic", f"{Grade.PUBLIC.id}.", "prefixed", "read")
        yield AclSpec(PUBLIC, p, "transactional_id", group, "prefixed", "write")
        yield AclSpec(PUBLIC, p, "transactional_id", group, "prefixed", "describe")
        yield AclSpec(PUBLIC, p, "group", group, "prefixed", "read")
    elif name == "archiver":
        yield AclSpec(PRIVATE, p, "topic", f"{Grade.PUBLIC.id}.", "prefixed", "read")
        yield AclSpec(PRIVATE, p, "topic", RULES_TOPIC, "literal", "read")  # derived view definitions
        yield AclSpec(PRIVATE, p, "topic", CONTROL_TOPIC, "literal", "read")  # the emergency stop
        yield AclSpec(PRIVATE, p, "topic", CATALOG_TOPIC, "literal", "read")
        for topic in (QUARANTINE_TOPIC, DECISIONS_TOPIC):
            yield AclSpec(PRIVATE, p, "topic", topic, "literal", "write")
    elif name == "audit":
        yield AclSpec(PRIVATE, p, "topic", DECISIONS_TOPIC, "literal", "read")
        yield AclSpec(PRIVATE, p, "topic", AUDIT_TOPIC, "literal", "write")
        yield AclSpec(PRIVATE, p, "topic", AUDIT_TOPIC, "literal", "read")
    elif name == "gateway":
        yield AclSpec(PRIVATE, p, "topic", "ingress.", "prefixed", "write")
