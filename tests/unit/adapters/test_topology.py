"""The topology model: topics and deny-by-default ACLs derived from the catalog."""
from __future__ import annotations

from pathlib import Path

import pytest

from hybridbus.adapters.loaders import load_catalog_dir
from hybridbus.adapters.topology import PRIVATE, PUBLIC, build_topology
from routing.grades import Grade

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas" / "avro"


@pytest.fixture(scope="module")
def topology():  # type: ignore[no-untyped-def]
    return build_topology(load_catalog_dir(SCHEMAS), [("govservice", "citizen_feedback_stats")])


def test_every_catalog_type_has_an_ingress_and_its_graded_topics(topology) -> None:  # type: ignore[no-untyped-def]
    private = {t.name for t in topology.topics_on(PRIVATE)}
    for event_type in load_catalog_dir(SCHEMAS).latest():
        assert event_type.ingress_topic in private
        assert event_type.graded_topic(event_type.record_grade) in private


def test_only_public_topics_exist_on_the_public_cluster(topology) -> None:  # type: ignore[no-untyped-def]
    public = [t.name for t in topology.topics_on(PUBLIC)]
    assert public and all(name.startswith("public.") for name in public)
    assert "public.govservice.citizen_feedback_stats" in public
    assert not any("hospital_admission" in name or "population_stats" in name for name in public)


def test_departments_write_only_their_own_ingress(topology) -> None:  # type: ignore[no-untyped-def]
    writes = [a for a in topology.acls if a.principal == "User:dept-market" and a.operation == "write"]
    assert [(a.name, a.pattern) for a in writes] == [("ingress.market.", "prefixed")]


def test_clearance_limits_what_a_department_reads(topology) -> None:  # type: ignore[no-untyped-def]
    reads = {a.name for a in topology.acls if a.principal == "User:dept-market" and a.resource == "topic"
             and a.operation == "read"}
    assert reads == {"public.", "internal."}  # market is cleared for internal: no personal data at all
    health = {a.name for a in topology.acls if a.principal == "User:dept-health" and a.resource == "topic"
              and a.operation == "read"}
    assert "restricted.health." in health and "important." not in {h[:10] for h in health}


def test_only_egress_writes_the_public_cluster(topology) -> None:  # type: ignore[no-untyped-def]
    writers = {a.principal for a in topology.acls_on(PUBLIC) if a.operation == "write" and a.resource == "topic"}
    assert writers == {"User:svc-egress"}


def test_audit_topic_is_one_partition_and_kept_forever(topology) -> None:  # type: ignore[no-untyped-def]
    audit = next(t for t in topology.topics if t.name == "_hbus.audit")
    assert audit.partitions == 1 and audit.config["retention.ms"] == "-1"


def test_no_identity_may_read_every_grade_of_every_department(topology) -> None:  # type: ignore[no-untyped-def]
    for ident in topology.identities:
        names = {a.name for a in topology.acls if a.principal == f"User:{ident.principal}" and a.operation == "read"}
        assert f"{Grade.IMPORTANT.id}." not in names
