"""`hbus catalog apply` on the real stack: a new department with a new event type, and a new version of an existing
type, planned (nothing changes), applied (its topics, ACLs, SCRAM user and Vault login exist and work, the catalog
is in force, the act is on the audit chain's input), applied again (all unchanged); bad changes change nothing."""
from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hybridbus.adapters import kafka
from hybridbus.adapters.config import Settings
from hybridbus.adapters.topology import DECISIONS_TOPIC, PRIVATE, PUBLIC, AclSpec
from hybridbus.adapters.vault import approle_file
from hybridbus.cli.main import app
from hybridbus.ops.catalogapply import catalog_in_force, write_catalog_dir
from hybridbus.ops.drills import ONBOARDED_EVENT, onboarding_files
from hybridbus.ops.people import sample_login
from hybridbus.ops.stack.bootstrap import existing_acls, kafka_admin, scram_users
from hybridbus.runtime.catalogstore import CatalogSnapshot, latest_snapshot
from producers.publisher import Publisher
from tests.integration.kafkatools import end_offsets, list_topics, read_after

runner = CliRunner()


@pytest.fixture(scope="module")
def engineer(stack: Settings) -> dict[str, str]:
    return {"HBUS_TOKEN": sample_login("li.wei", stack).token}


def apply_cli(schemas: Path, env: Mapping[str, str], *flags: str) -> tuple[int, dict[str, Any] | None, str]:
    result = runner.invoke(app, ["catalog", "apply", "--schemas", str(schemas), "--json", *flags], env=dict(env))
    try:
        data = json.loads(result.stdout)
    except ValueError:
        data = None
    return result.exit_code, data, result.stdout + result.stderr


def changed(plan: dict[str, Any], system: str, kind: str) -> list[str]:
    return next(r["changed"] for r in plan["plan"] if (r["system"], r["kind"]) == (system, kind))


def test_a_new_department_is_planned_then_provisioned_then_unchanged(stack: Settings, engineer: dict[str, str],
                                                                     tmp_path: Path) -> None:
    # `hbus stack up` put the catalog it started with in force, or an earlier apply put one there.
    assert latest_snapshot(kafka.admin_credentials(PRIVATE, stack)) is not None
    before = catalog_in_force(stack)
    dept = f"onboard_{uuid.uuid4().hex[:6]}"
    files = onboarding_files(before.files, dept)
    schemas = write_catalog_dir(files, tmp_path)
    ingress, graded = f"ingress.{dept}.{ONBOARDED_EVENT}", f"public.{dept}.{ONBOARDED_EVENT}"
    principal = f"dept-{dept}"
    new_version = next(name for name in files if name not in before.files and not name.startswith(dept))

    code, plan, out = apply_cli(schemas, engineer, "--dry-run")
    assert code == 0, out
    assert plan is not None and plan["dry_run"] and plan["applied"] == []
    assert plan["new_departments"] == [dept]
    assert f"{dept}.{ONBOARDED_EVENT} v1" in plan["new_versions"] and len(plan["new_versions"]) == 2, plan
    assert set(changed(plan, "kafka-private", "topic")) == {ingress, graded}
    assert changed(plan, "kafka-public", "topic") == [graded]
    assert changed(plan, "kafka-private", "scram-user") == [principal]
    assert changed(plan, "vault", "approle") == [f"hbus-{dept}"]
    # The dry run changed nothing anywhere.
    assert ingress not in list_topics(PRIVATE) and graded not in list_topics(PUBLIC)
    private_admin = kafka_admin(stack, PRIVATE, kafka.admin_credentials(PRIVATE, stack))
    assert principal not in scram_users(private_admin, PRIVATE)
    assert not approle_file(dept, stack).exists()
    assert catalog_in_force(stack).digest == before.digest

    decisions = end_offsets(PRIVATE, DECISIONS_TOPIC)
    code, result, out = apply_cli(schemas, engineer)
    assert code == 0, out
    assert result is not None and result["applied_by"] == "li.wei"
    assert {ingress, graded} <= set(list_topics(PRIVATE)) and graded in list_topics(PUBLIC)
    acls = existing_acls(private_admin, PRIVATE)
    assert AclSpec(PRIVATE, f"User:{principal}", "topic", f"ingress.{dept}.", "prefixed", "write") in acls
    assert AclSpec(PRIVATE, f"User:{principal}", "topic", "public.", "prefixed", "read") in acls
    assert principal in scram_users(private_admin, PRIVATE)
    # The department logs in with its own AppRole, reads its SCRAM login from Vault, and publishes to its ingress.
    snapshot = CatalogSnapshot(files)
    publisher = Publisher.for_department(dept, catalog=snapshot.catalog())
    delivery = publisher.publish(f"{dept}.{ONBOARDED_EVENT}", {"station": "s1", "pm25": 12, "measured_at": 1})
    assert delivery.topic == ingress and delivery.offset >= 0
    in_force = latest_snapshot(kafka.admin_credentials(PRIVATE, stack))
    assert in_force is not None and in_force.digest == snapshot.digest == result["digest"]
    assert in_force.applied_by == "li.wei" and new_version in in_force.files
    acts = [d for r in read_after(PRIVATE, DECISIONS_TOPIC, decisions,
                                  lambda r: r.value is not None and b"catalog_applied" in r.value)
            for d in json.loads(r.value or b"[]") if d.get("verdict") == "catalog_applied"]
    assert [(a["component"], a["actor"], a["rules_version"]) for a in acts] == [("catalog", "li.wei", snapshot.digest)]

    code, again, out = apply_cli(schemas, engineer)
    assert code == 0, out
    assert again is not None and again["applied"] == [] and again["applied_by"] is None
    assert all(r["create"] == 0 and r["update"] == 0 for r in again["plan"]), again["plan"]


def test_a_change_that_lowers_a_grade_is_refused_with_its_file_and_changes_nothing(
        stack: Settings, engineer: dict[str, str], tmp_path: Path) -> None:
    before = catalog_in_force(stack)
    files = dict(before.files)
    schema = json.loads(files["health/hospital_admission.v1.avsc"])
    version = 1 + max(int(n.rsplit(".v", 1)[1][:-5]) for n in files if n.startswith("health/hospital_admission.v"))
    schema["hbus.version"] = version
    schema["fields"].append({"name": f"note_v{version}", "type": ["null", "string"], "default": None, "grade": "internal"})
    for spec in schema["fields"]:
        if spec["name"] == "diagnosis_code":
            spec["grade"] = "internal"
    files[f"health/hospital_admission.v{version}.avsc"] = json.dumps(schema)
    schemas = write_catalog_dir(files, tmp_path)
    topics = list_topics(PRIVATE)

    result = runner.invoke(app, ["catalog", "apply", "--schemas", str(schemas)], env=engineer)
    assert result.exit_code == 1, result.stdout + result.stderr
    assert f"error: {schemas}/health/hospital_admission.v{version}.avsc: field 'diagnosis_code' is internal" \
           in result.stderr
    assert "nothing applied" in result.stderr
    assert catalog_in_force(stack).digest == before.digest and list_topics(PRIVATE) == topics


def test_only_an_engineer_may_apply_a_catalog(stack: Settings, tmp_path: Path) -> None:
    schemas = write_catalog_dir(catalog_in_force(stack).files, tmp_path)
    result = runner.invoke(app, ["catalog", "apply", "--schemas", str(schemas), "--dry-run"],
                           env={"HBUS_TOKEN": sample_login("wang.fang", stack).token})
    assert result.exit_code == 1 and "wang.fang is not an engineer" in result.stderr


def test_against_a_partly_down_stack_it_stops_changes_nothing_and_a_rerun_applies(
        stack: Settings, engineer: dict[str, str], tmp_path: Path) -> None:
    from hybridbus.ops.stack import manager

    dept = f"partly_{uuid.uuid4().hex[:6]}"
    schemas = write_catalog_dir(onboarding_files(catalog_in_force(stack).files, dept), tmp_path)
    ingress = f"ingress.{dept}.{ONBOARDED_EVENT}"
    manager.component(stack, "kafka-public").process.stop()
    try:
        result = runner.invoke(app, ["catalog", "apply", "--schemas", str(schemas)], env=engineer)
        assert result.exit_code == 3, result.stdout + result.stderr
        assert "stopped at kafka-public" in result.stderr and "applied before it: nothing" in result.stderr
        assert ingress not in list_topics(PRIVATE) and not approle_file(dept, stack).exists()
    finally:
        manager.up(stack, echo=lambda *_: None)
    code, applied, out = apply_cli(schemas, engineer)
    assert code == 0, out
    assert applied is not None and applied["applied_by"] == "li.wei" and ingress in list_topics(PRIVATE)
