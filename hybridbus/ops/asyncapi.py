"""The bus described as AsyncAPI 3.0: what one department may publish and read, or what a public-cloud consumer gets.

A pure function of the catalog, the rule set and the topology: channels are the topics the identity's ACLs allow.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hybridbus.adapters.codec import schema_fingerprint
from hybridbus.adapters.config import Settings, settings
from hybridbus.adapters.loaders import derived_event_types, load_catalog, load_rules, public_event_types, topology_for
from hybridbus.adapters.topology import PRIVATE, PUBLIC, PUBLIC_READER, AclSpec, Topology
from hybridbus.runtime.archive import schema_key
from hybridbus.runtime.catalogstore import CatalogSnapshot
from routing import headers as H
from routing.catalog import Catalog, EventType
from routing.exceptions import HybridbusError
from routing.grades import Grade
from routing.rules import RuleSet

ASYNCAPI_VERSION = "3.0.0"
AVRO_FORMAT = "application/vnd.apache.avro+json;version=1.9.0"
WIRE_CONTENT_TYPE = "avro/binary"  # the Avro specification's own name for binary-encoded data
SCRAM = "scramSha512"

_PRODUCER_HEADERS = (H.EVENT_ID, H.DEPT, H.EVENT_TYPE, H.SCHEMA_VERSION, H.OCCURRED_AT, H.TRACE_ID)
_ROUTER_HEADERS = (H.GRADE, H.RULES_VERSION, H.ROUTED_AT)


class UnknownDepartment(HybridbusError):
    """`--dept` names no department of the catalog."""


@dataclass(frozen=True)
class Channel:
    """One topic the identity may use: `send` (publish into it) and/or `receive` (read it)."""

    topic: str
    actions: tuple[str, ...]


def allowed_topics(topology: Topology, identity: str, cluster: str) -> list[Channel]:
    """The topics of `cluster` that `identity`'s ACLs let it write or read, from the topology's own ACL entries."""
    principal = f"User:{topology.identity(identity).principal}"
    acls = [a for a in topology.acls_on(cluster) if a.principal == principal and a.resource == "topic"]
    channels = []
    for topic in topology.topics_on(cluster):
        granted = {a.operation for a in acls if _matches(a, topic.name)}
        actions = tuple(action for action, ops in (("send", {"write", "all"}), ("receive", {"read", "all"}))
                        if granted & ops)
        if actions:
            channels.append(Channel(topic.name, actions))
    return channels


def _matches(acl: AclSpec, topic: str) -> bool:
    return topic == acl.name if acl.pattern == "literal" else topic.startswith(acl.name)


def asyncapi_document(catalog: Catalog, ruleset: RuleSet | None, topology: Topology, bootstrap: Mapping[str, str],
                      *, dept: str | None = None, catalog_digest: str | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of department `dept` (private cluster), or of a public-cloud consumer (`dept` None).

    `bootstrap` maps a cluster (`private`, `public`) to its `host:port,…` list; `catalog_digest` (optional) names
    the catalog the document was made from.
    """
    derived = derived_event_types(catalog, ruleset)
    if dept is None:
        cluster, identity = PUBLIC, PUBLIC_READER
        types = public_event_types(catalog, derived)
        title = "hybridbus: open data on the public cluster"
        description = (
            "What a consumer in the public cloud can read: the `public.*` topics of the public Kafka cluster (login: "
            "the public reader's SCRAM credentials). Each record is Avro single-object encoded: C3 01, then the "
            "8-byte CRC-64-AVRO fingerprint of its writer schema, then the Avro binary body. The schema of every "
            "fingerprint is published in the open-data bucket as `_schemas/<fingerprint as hex>.avsc` (readable "
            "without private credentials) and in this document (`x-hbus-fingerprint` on each message). The same "
            "records are archived in the bucket as Avro object container files under `<dept>/<event>/v<N>/dt=<day>/`.")
    else:
        if dept not in catalog.departments:
            raise UnknownDepartment(f"unknown department {dept!r} (known: {', '.join(sorted(catalog.departments))})")
        cluster, identity = PRIVATE, dept
        types = list(catalog) + derived
        department = catalog.departments[dept]
        title = f"hybridbus: {department.name_en} ({department.name_zh}, {dept})"
        description = (
            f"The bus as department `{dept}` sees it on the private Kafka cluster: the ingress topics it publishes to "
            f"(`send`) and the graded topics it may read up to its clearance `{department.clearance.id}` "
            "(`receive`), exactly as its ACLs allow. Log in with SASL/SCRAM-SHA-512 as `dept-" + dept + "`, the "
            "password from Vault. Each record is Avro single-object encoded (C3 01, the 8-byte CRC-64-AVRO "
            "fingerprint of its writer schema, the Avro binary body); grades are in each message's `x-hbus-*` "
            "fields and in the schema's `grade` attributes. Publish with the hybridbus client or the HTTP ingest "
            "gateway, which encode, grade-check and encrypt for you.")

    channels = allowed_topics(topology, identity, cluster)
    by_topic = _types_by_topic(types)
    messages: dict[str, Any] = {}
    doc_channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for channel in channels:
        carried = by_topic.get(channel.topic, [])
        ids = [_message_id(t) for t in carried]
        for event_type, message_id in zip(carried, ids):
            messages.setdefault(message_id, _message(event_type, public_side=dept is None))
        doc_channels[channel.topic] = {
            "address": channel.topic,
            "title": channel.topic,
            "description": _channel_description(channel.topic),
            "servers": [{"$ref": f"#/servers/{cluster}"}],
            "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in ids},
        }
        for action in channel.actions:
            operations[f"{action}.{channel.topic}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{channel.topic}"},
                "summary": f"{'Publish to' if action == 'send' else 'Read'} {channel.topic}",
                "messages": [{"$ref": f"#/channels/{channel.topic}/messages/{m}"} for m in ids],
            }

    info: dict[str, Any] = {"title": title, "version": ruleset.version if ruleset else "0", "description": description}
    if catalog_digest:
        info["x-hbus-catalog-digest"] = catalog_digest
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": info,
        "defaultContentType": WIRE_CONTENT_TYPE,
        "servers": {cluster: _server(cluster, bootstrap[cluster])},
        "channels": doc_channels,
        "operations": operations,
        "components": {
            "messages": dict(sorted(messages.items())),
            "securitySchemes": {"scram": {
                "type": SCRAM,
                "description": "SASL/SCRAM-SHA-512; each identity has its own login, kept in Vault.",
            }},
        },
    }


def asyncapi_for(cfg: Settings | None = None, dept: str | None = None) -> dict[str, Any]:
    """`asyncapi_document` of the catalog, rules and clusters of `cfg` (the files on disk, as `hbus stack up` uses)."""
    cfg = cfg or settings()
    return asyncapi_document(
        load_catalog(cfg), load_rules(cfg), topology_for(cfg),
        {PRIVATE: str(cfg.private_bootstrap), PUBLIC: str(cfg.public_bootstrap)},
        dept=dept, catalog_digest=CatalogSnapshot.from_dir(cfg.schemas_dir).digest)


def _types_by_topic(types: Iterable[EventType]) -> dict[str, list[EventType]]:
    """The types whose records a topic can carry: its ingress topic and its graded topics (which of those exist is
    the topology's word; a topic it does not hold is never looked up)."""
    result: dict[str, list[EventType]] = {}
    for event_type in types:
        topics = {event_type.ingress_topic} | {event_type.graded_topic(g) for g in Grade}
        for topic in topics:
            result.setdefault(topic, []).append(event_type)
    return result


def _message_id(event_type: EventType) -> str:
    return f"{event_type.dept}.{event_type.event}.v{event_type.version}"


def _message(event_type: EventType, *, public_side: bool) -> dict[str, Any]:
    fingerprint = schema_fingerprint(event_type.schema).hex()
    derived_from = event_type.schema.get("hbus.derived_from")
    message: dict[str, Any] = {
        "name": _message_id(event_type),
        "title": f"{event_type.key} v{event_type.version}",
        "summary": str(event_type.schema.get("doc") or f"{event_type.key} version {event_type.version}"),
        "contentType": WIRE_CONTENT_TYPE,
        "headers": _headers(),
        "payload": {"schemaFormat": AVRO_FORMAT, "schema": dict(event_type.schema)},
        "x-hbus-grade": event_type.record_grade.id,
        "x-hbus-max-grade": event_type.schema_grade.id,
        "x-hbus-field-grades": {f.name: f.grade.id for f in event_type.fields},
        "x-hbus-fingerprint": fingerprint,
    }
    encrypted = [f.name for f in event_type.encrypted_fields]
    if encrypted:
        message["x-hbus-encrypted-fields"] = encrypted
    if derived_from:
        message["x-hbus-derived-from"] = derived_from
    if public_side:
        message["x-hbus-schema-object"] = schema_key(event_type)
    return message


def _headers() -> dict[str, Any]:
    names = {name: {"type": "string", "description": "set by the publishing client"} for name in _PRODUCER_HEADERS}
    names.update({name: {"type": "string", "description": "stamped by the router"} for name in _ROUTER_HEADERS})
    return {"type": "object", "description": "Kafka record headers (UTF-8 text).", "properties": names}


def _channel_description(topic: str) -> str:
    kind = topic.split(".", 1)[0]
    if kind == "ingress":
        return "Ingress: the department's systems publish here; the router grades and routes every record."
    return (f"Graded `{kind}`: every record here is of grade `{kind}` (the high-water mark of the record and the "
            "fields it carries), written by the router" + (" and copied out by egress." if kind == "public" else "."))


def _server(cluster: str, bootstrap: str) -> dict[str, Any]:
    brokers = [b.strip() for b in bootstrap.split(",") if b.strip()]
    return {
        "host": brokers[0],
        "protocol": "kafka",
        "title": f"{cluster} Kafka cluster",
        "description": f"The {cluster} cluster; bootstrap with every broker of `x-hbus-bootstrap-servers`.",
        "security": [{"$ref": "#/components/securitySchemes/scram"}],
        "x-hbus-bootstrap-servers": brokers,
    }
