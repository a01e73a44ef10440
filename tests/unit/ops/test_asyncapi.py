"""`hbus catalog asyncapi`: each department's document and the public one, valid AsyncAPI 3.0.0, with exactly the
topics the identity's ACLs allow and every schema (derived views included) with its grades."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from hybridbus.adapters.codec import schema_fingerprint
from hybridbus.adapters.config import REPO_ROOT
from hybridbus.adapters.loaders import derived_event_types, load_catalog_dir, load_ruleset_dir
from hybridbus.adapters.topology import PRIVATE, PUBLIC, build_topology
from hybridbus.cli.main import app
from hybridbus.ops.asyncapi import AVRO_FORMAT, UnknownDepartment, asyncapi_document
from routing.grades import Grade

CATALOG = load_catalog_dir(REPO_ROOT / "schemas" / "avro")
RULES = load_ruleset_dir(REPO_ROOT / "routing" / "rules")
DERIVED = derived_event_types(CATALOG, RULES)
TOPOLOGY = build_topology(CATALOG, sorted({(t.dept, t.event) for t in DERIVED}))
BOOTSTRAP = {PRIVATE: "127.0.0.1:19092,127.0.0.1:19094", PUBLIC: "127.0.0.1:29092"}
SCHEMA = json.loads((REPO_ROOT / "tests" / "fixtures" / "asyncapi" / "asyncapi-3.0.0.schema.json").read_text())
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)
DEPARTMENTS = sorted(CATALOG.departments)


def assert_valid(document: dict[str, Any]) -> None:
    errors = sorted(VALIDATOR.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message[:300]}" for e in errors[:5])


def acl_topics(principal: str, cluster: str) -> dict[str, set[str]]:
    """What the ACL entries of `principal` allow on each topic of `cluster`, read straight off the topology."""
    allowed: dict[str, set[str]] = {}
    for acl in TOPOLOGY.acls_on(cluster):
        if acl.principal != f"User:{principal}" or acl.resource != "topic":
            continue
        for topic in TOPOLOGY.topics_on(cluster):
            if topic.name == acl.name or (acl.pattern == "prefixed" and topic.name.startswith(acl.name)):
                allowed.setdefault(topic.name, set()).add({"write": "send", "read": "receive"}[acl.operation])
    return allowed


def channel_actions(document: dict[str, Any]) -> dict[str, set[str]]:
    actions: dict[str, set[str]] = {}
    for operation in document["operations"].values():
        topic = operation["channel"]["$ref"].removeprefix("#/channels/")
        actions.setdefault(topic, set()).add(operation["action"])
    return actions


def resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_the_vendored_schema_refuses_what_asyncapi_refuses() -> None:
    """The validator really checks: a wrong version, an unknown top-level key and a broken Avro schema fail."""
    good = asyncapi_document(CATALOG, RULES, TOPOLOGY, BOOTSTRAP, dept="market")
    assert_valid(good)
    for broken in ({**good, "asyncapi": "2.6.0"}, {**good, "topics": {}}):
        assert list(VALIDATOR.iter_errors(broken))
    message = next(iter(good["components"]["messages"]))
    bad_avro = json.loads(json.dumps(good))
    bad_avro["components"]["messages"][message]["payload"]["schema"]["fields"][0]["type"] = 42
    assert list(VALIDATOR.iter_errors(bad_avro))


@pytest.mark.parametrize("dept", DEPARTMENTS)
def test_each_departments_document_is_valid_and_has_exactly_the_topics_its_acls_allow(dept: str) -> None:
    document = asyncapi_document(CATALOG, RULES, TOPOLOGY, BOOTSTRAP, dept=dept, catalog_digest="d1")
    assert_valid(document)
    allowed = acl_topics(f"dept-{dept}", PRIVATE)
    assert set(document["channels"]) == set(allowed)
    assert channel_actions(document) == allowed
    clearance = CATALOG.departments[dept].clearance
    for topic in document["channels"]:
        kind, owner = topic.split(".")[:2]
        if kind == "ingress":
            assert owner == dept and allowed[topic] == {"send"}
        else:
            grade = Grade.parse(kind)
            assert grade <= clearance and (grade <= Grade.INTERNAL or owner == dept)
    # Its own ingress topics all there; no other department's ingress or personal data.
    assert {t.ingress_topic for t in CATALOG.latest() if t.dept == dept} <= set(document["channels"])
    assert list(document["servers"]) == ["private"]
    assert document["servers"]["private"]["host"] == "127.0.0.1:19092"
    assert document["servers"]["private"]["security"] == [{"$ref": "#/components/securitySchemes/scram"}]
    assert document["components"]["securitySchemes"]["scram"]["type"] == "scramSha512"
    assert document["info"]["x-hbus-catalog-digest"] == "d1"


@pytest.mark.parametrize("dept", DEPARTMENTS)
def test_every_message_is_its_avro_schema_with_the_grade_of_each_field(dept: str) -> None:
    document = asyncapi_document(CATALOG, RULES, TOPOLOGY, BOOTSTRAP, dept=dept)
    messages = document["components"]["messages"]
    for topic, channel in document["channels"].items():
        assert channel["messages"], f"{topic} carries no message"
        for ref in channel["messages"].values():
            message = resolve(document, ref["$ref"])
            schema = message["payload"]["schema"]
            assert message["payload"]["schemaFormat"] == AVRO_FORMAT
            assert f"{schema['hbus.dept']}.{schema['hbus.event']}" == ".".join(topic.split(".")[1:])
            assert message["x-hbus-fingerprint"] == schema_fingerprint(schema).hex()
            assert message["x-hbus-field-grades"] == {f["name"]: f["grade"] for f in schema["fields"]}
            assert message["x-hbus-grade"] == schema["grade"]
    for operation in document["operations"].values():
        for ref in operation["messages"]:
            assert resolve(document, ref["$ref"])["$ref"].removeprefix("#/components/messages/") in messages
    ingress = document["channels"][next(t.ingress_topic for t in CATALOG.latest() if t.dept == dept)]
    key = next(t.key for t in CATALOG.latest() if t.dept == dept)
    assert set(ingress["messages"]) == {f"{key}.v{t.version}" for t in CATALOG.versions(key)}


def test_the_public_document_has_the_public_clusters_topics_and_every_type_that_reaches_them() -> None:
    document = asyncapi_document(CATALOG, RULES, TOPOLOGY, BOOTSTRAP)
    assert_valid(document)
    assert list(document["servers"]) == ["public"]
    assert document["servers"]["public"]["x-hbus-bootstrap-servers"] == ["127.0.0.1:29092"]
    allowed = acl_topics("pub-public-reader", PUBLIC)
    assert set(document["channels"]) == set(allowed) == {t.name for t in TOPOLOGY.topics_on(PUBLIC)}
    assert channel_actions(document) == {t: {"receive"} for t in allowed}
    messages = document["components"]["messages"]
    public_types = [t for t in CATALOG if t.record_grade is Grade.PUBLIC] + DERIVED
    assert {m["x-hbus-fingerprint"] for m in messages.values()} == {
        schema_fingerprint(t.schema).hex() for t in public_types}
    assert any("x-hbus-derived-from" in m for m in messages.values())  # the views' schemas are there too
    for message in messages.values():
        assert message["x-hbus-grade"] == "public"
        assert message["x-hbus-schema-object"] == f"_schemas/{message['x-hbus-fingerprint']}.avsc"
    assert "public.govservice.citizen_feedback_stats" in document["channels"]


def test_an_unknown_department_is_refused() -> None:
    with pytest.raises(UnknownDepartment, match="known: "):
        asyncapi_document(CATALOG, RULES, TOPOLOGY, BOOTSTRAP, dept="nobody")


def test_the_cli_writes_the_document_and_wants_exactly_one_view(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "market.json"
    result = runner.invoke(app, ["catalog", "asyncapi", "--dept", "market", "-o", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text(encoding="utf-8"))
    assert_valid(document)
    assert "ingress.market.licence_granted" in document["channels"]
    public = runner.invoke(app, ["catalog", "asyncapi", "--public"])
    assert public.exit_code == 0 and json.loads(public.stdout)["servers"].keys() == {"public"}
    assert runner.invoke(app, ["catalog", "asyncapi"]).exit_code == 2
    assert runner.invoke(app, ["catalog", "asyncapi", "--dept", "market", "--public"]).exit_code == 2
    assert runner.invoke(app, ["catalog", "asyncapi", "--dept", "nobody"]).exit_code == 2
