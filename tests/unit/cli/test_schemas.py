"""`hbus schemas list|show|check` through the real `hbus` entry point (Typer's CliRunner), on the shipped catalog
and on the bad-schema fixtures."""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hybridbus.adapters.config import settings
from hybridbus.adapters.loaders import load_catalog_dir
from hybridbus.cli.main import app
from routing.grades import Grade

ROOT = Path(__file__).resolve().parents[3]
AVRO = ROOT / "schemas" / "avro"
BAD = ROOT / "tests" / "fixtures" / "bad_schemas"
EXPECTED = {k: v for k, v in json.loads((BAD / "expected.json").read_text(encoding="utf-8")).items() if not k.startswith("_")}
BAD_CASES = sorted(case for case, spec in EXPECTED.items() if "error" in spec)
runner = CliRunner()


@pytest.fixture(autouse=True)
def _shipped_catalog(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HBUS_SCHEMAS_DIR", str(AVRO))
    settings.cache_clear()
    yield
    settings.cache_clear()


def _use(monkeypatch: pytest.MonkeyPatch, schemas_dir: Path) -> None:
    monkeypatch.setenv("HBUS_SCHEMAS_DIR", str(schemas_dir))
    settings.cache_clear()


def test_list_prints_every_type_with_department_grades_and_topic() -> None:
    result = runner.invoke(app, ["schemas", "list"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["TYPE", "VERSION", "DEPARTMENT", "RECORD", "GRADE", "UPPER", "BOUND", "INGRESS", "TOPIC"]
    assert len(lines) == 1 + len(load_catalog_dir(AVRO))
    row = next(line for line in lines if line.startswith("health.hospital_admission"))
    assert row.split() == ["health.hospital_admission", "1", "health", "卫生健康委", "restricted", "restricted",
                           "ingress.health.hospital_admission"]


def test_list_json_has_one_entry_per_type_and_version() -> None:
    result = runner.invoke(app, ["schemas", "list", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert [(r["type"], r["version"]) for r in rows] == [(et.key, et.version) for et in load_catalog_dir(AVRO)]
    feedback = next(r for r in rows if r["type"] == "govservice.citizen_feedback")
    assert feedback == {"type": "govservice.citizen_feedback", "version": 1, "dept": "govservice", "dept_zh": "政务服务中心",
                        "record_grade": "sensitive", "schema_grade": "sensitive",
                        "ingress_topic": "ingress.govservice.citizen_feedback"}
    assert {r["schema_grade"] for r in rows} == {g.id for g in Grade}
    assert [r["version"] for r in rows if r["type"] == "transport.bus_arrival"] == [1, 2]


def test_show_prints_each_field_with_grade_avro_type_and_tag() -> None:
    result = runner.invoke(app, ["schemas", "show", "govservice.citizen_feedback"])
    assert result.exit_code == 0, result.output
    assert "record sensitive (敏感)" in result.stdout
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[2:]}
    assert rows["topic"] == ["topic", "public", "string", "yes"]
    assert rows["contact"] == ["contact", "sensitive", '["null",', '"string"]', "yes"]
    assert set(rows) == {"feedback_id", "topic", "district", "text", "contact", "submitted_at"}


def test_show_json_and_an_older_version() -> None:
    result = runner.invoke(app, ["schemas", "show", "transport.bus_arrival", "--version", "1", "--json"])
    assert result.exit_code == 0
    shown = json.loads(result.stdout)
    assert (shown["type"], shown["version"], shown["schema_grade"]) == ("transport.bus_arrival", 1, "public")
    assert [f["field"] for f in shown["fields"]] == ["route", "stop_id", "stop_name", "arrived_at", "delay_seconds"]
    assert shown["fields"][4] == {"field": "delay_seconds", "grade": "public", "type": "int", "tagged": True}
    latest = json.loads(runner.invoke(app, ["schemas", "show", "transport.bus_arrival", "--json"]).stdout)
    assert latest["version"] == 2 and latest["fields"][-1]["field"] == "occupancy"
    contact = next(f for f in json.loads(runner.invoke(app, ["schemas", "show", "govservice.citizen_feedback", "--json"])
                                         .stdout)["fields"] if f["field"] == "contact")
    assert contact["type"] == ["null", "string"]


def test_show_marks_an_untagged_field_as_the_highest_grade(monkeypatch: pytest.MonkeyPatch) -> None:
    _use(monkeypatch, BAD / "untagged_field" / "avro")
    result = runner.invoke(app, ["schemas", "show", "market.stall_inspected"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if line.startswith("inspector_phone"))
    assert row.split()[:4] == ["inspector_phone", "important", "string", "NO"]
    assert "upper bound important" in result.stdout
    shown = json.loads(runner.invoke(app, ["schemas", "show", "market.stall_inspected", "--json"]).stdout)
    assert {f["field"]: f["tagged"] for f in shown["fields"]} == {"stall_id": True, "inspector_phone": False, "passed": True}


@pytest.mark.parametrize("args, reason", [
    (["show", "health.unknown"], "unknown event type 'health.unknown'"),
    (["show", "transport.bus_arrival", "--version", "9"], "has no version 9"),
])
def test_show_of_an_unknown_type_or_version_fails(args: list[str], reason: str) -> None:
    result = runner.invoke(app, ["schemas", *args])
    assert result.exit_code == 1 and reason in result.stderr and result.stdout == ""


def test_list_and_show_fail_on_a_broken_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    _use(monkeypatch, BAD / "grade_core" / "avro")
    for args in (["list"], ["show", "market.credit_blacklist"]):
        result = runner.invoke(app, ["schemas", *args])
        assert result.exit_code == 1 and "never carried" in result.stderr and "hbus schemas check" in result.stderr


def test_check_of_the_shipped_catalog_prints_one_summary_line() -> None:
    result = runner.invoke(app, ["schemas", "check"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "9 schemas of 8 event types valid\n" and result.stderr == ""
    assert runner.invoke(app, ["schemas", "check", str(AVRO)]).stdout == result.stdout
    assert runner.invoke(app, ["schemas", "check", str(ROOT / "schemas")]).stdout == result.stdout  # the catalog root


@pytest.mark.parametrize("case", BAD_CASES)
def test_check_names_the_file_and_reason_of_each_bad_fixture(case: str) -> None:
    result = runner.invoke(app, ["schemas", "check", str(BAD / case / "avro")])
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert errors[0].startswith(f"error: {BAD / case / EXPECTED[case]['file']}: ") and EXPECTED[case]["error"] in errors[0]
    assert result.stdout == ""
    assert runner.invoke(app, ["schemas", "check", str(BAD / case)]).exit_code == 1  # the case folder itself


def test_check_of_an_untagged_field_warns_and_passes() -> None:
    result = runner.invoke(app, ["schemas", "check", str(BAD / "untagged_field")])
    assert result.exit_code == 0
    spec = EXPECTED["untagged_field"]
    assert result.stderr == f"warning: {BAD / 'untagged_field' / spec['file']}: {spec['warning']}\n"
    assert result.stdout == "1 schemas of 1 event types valid, 1 warning\n"


def test_check_reports_every_error_and_warning_at_once(tmp_path: Path) -> None:
    shutil.copy(BAD / "invalid_json" / "departments.yaml", tmp_path / "departments.yaml")
    for case in EXPECTED:
        shutil.copytree(BAD / case / "avro", tmp_path / "avro", dirs_exist_ok=True)
    result = runner.invoke(app, ["schemas", "check", str(tmp_path)])
    assert result.exit_code == 1 and result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(errors) == len(BAD_CASES) and len(warnings) == 1
    for case in BAD_CASES:
        prefix = f"error: {tmp_path / EXPECTED[case]['file']}: "
        assert any(e.startswith(prefix) and EXPECTED[case]["error"] in e for e in errors), case


def test_check_of_a_folder_without_schemas_fails(tmp_path: Path) -> None:
    result = runner.invoke(app, ["schemas", "check", str(tmp_path)])
    assert result.exit_code == 1 and result.stderr.startswith("error: ") and "departments file not found" in result.stderr


@pytest.mark.parametrize("command", [[], ["list"], ["show"], ["check"]], ids=lambda c: " ".join(c) or "schemas")
def test_help_shows_an_example(command: list[str]) -> None:
    result = runner.invoke(app, ["schemas", *command, "--help"])
    assert result.exit_code == 0 and "Example: hbus schemas " in result.stdout
