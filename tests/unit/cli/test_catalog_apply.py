"""`hbus catalog apply` through Typer's CliRunner, the stack replaced by a plan: the plan table, JSON, refusals
with their files, and exit codes (1 refused, 3 a system down)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hybridbus.adapters.topology import PRIVATE, PUBLIC, build_topology
from hybridbus.adapters.vault import PersonToken
from hybridbus.cli.catalog import app
from hybridbus.adapters.loaders import load_catalog_dir
from hybridbus.ops import catalogapply as A
from hybridbus.ops import people
from hybridbus.ops.stack.bootstrap import person_policy_name
from hybridbus.runtime.catalogstore import CatalogSnapshot
from routing.catalogdiff import CatalogChange
from routing.exceptions import SchemaError
from routing.rules import RuleSet

ROOT = Path(__file__).resolve().parents[3]
runner = CliRunner()
TOPOLOGY = build_topology(load_catalog_dir(ROOT / "schemas" / "avro"), (), {PRIVATE: 1, PUBLIC: 1})
PLAN = A.Plan(CatalogSnapshot({"departments.yaml": "new"}), CatalogSnapshot({"departments.yaml": "old"}),
              CatalogChange(("ecology",), ("ecology.air_quality",), (("ecology.air_quality", 1),)), RuleSet.empty(),
              TOPOLOGY, (A.Step("vault", "approle", "hbus-ecology", A.CREATE),
                         A.Step("vault", "approle", "hbus-market", A.UNCHANGED),
                         A.Step("kafka-private", "topic", "ingress.ecology.air_quality", A.CREATE),
                         A.Step("catalog", "snapshot", "sha256:new", A.CREATE)))


@pytest.fixture(autouse=True)
def engineer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(people, "current", lambda _cfg=None: PersonToken("li.wei", (person_policy_name("engineer"),), "t"))


def test_a_dry_run_prints_the_plan_and_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(A, "prepare", lambda *_a: PLAN)
    monkeypatch.setattr(A, "execute", lambda *_a: pytest.fail("a dry run executes nothing"))
    result = runner.invoke(app, ["apply", "--dry-run"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.split()[:5] == ["vault", "approle", "1", "0", "1"] and "hbus-ecology" in line for line in lines)
    assert "new departments: ecology; new versions: ecology.air_quality v1" in result.stdout
    assert "dry run: 3 to make, nothing changed" in result.stdout


def test_apply_reports_what_it_made_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(A, "prepare", lambda *_a: PLAN)
    monkeypatch.setattr(A, "execute", lambda plan, *_a: plan.todo)
    result = runner.invoke(app, ["apply", "--json"])
    data = json.loads(result.stdout)
    assert result.exit_code == 0 and data["applied_by"] == "li.wei" and not data["dry_run"]
    assert [(r["system"], r["kind"], r["create"]) for r in data["applied"]] == [
        ("vault", "approle", 1), ("kafka-private", "topic", 1), ("catalog", "snapshot", 1)]


def test_a_refused_change_names_each_file_and_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a):  # type: ignore[no-untyped-def]
        raise A.CatalogRefused([SchemaError("field 'x' is public in v2, lower than sensitive before", "avro/a/b.v2.avsc")])
    monkeypatch.setattr(A, "prepare", refuse)
    result = runner.invoke(app, ["apply"])
    assert result.exit_code == 1
    assert "error: avro/a/b.v2.avsc: field 'x' is public in v2, lower than sensitive before" in result.stderr
    assert "nothing applied" in result.stderr


def test_a_stop_part_way_says_what_was_applied_and_exits_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(A, "prepare", lambda *_a: PLAN)

    def stop(plan, *_a):  # type: ignore[no-untyped-def]
        raise A.ApplyStopped(plan.todo[:1], "kafka-private topic ingress.ecology.air_quality", "broker down")
    monkeypatch.setattr(A, "execute", stop)
    result = runner.invoke(app, ["apply"])
    assert result.exit_code == 3
    assert "stopped at kafka-private topic ingress.ecology.air_quality: broker down; applied before it: " \
           "approle 1 on vault" in result.stderr
