"""`hbus rules validate|test|explain|diff` through Typer's CliRunner: output, JSON and exit codes
(`apply` needs Kafka and is left to the integration tests)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hybridbus.cli.rules import app

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "routing" / "rules"
BAD = ROOT / "tests" / "fixtures" / "bad_rules"
SAMPLES = ROOT / "schemas" / "samples"

runner = CliRunner()


@pytest.fixture(autouse=True)
def _shipped_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HBUS_SCHEMAS_DIR", str(ROOT / "schemas" / "avro"))
    monkeypatch.setenv("HBUS_RULES_DIR", str(RULES))


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    return target


# --- validate ------------------------------------------------------------------------------------------

def test_validate_accepts_the_shipped_rules() -> None:
    result = runner.invoke(app, ["validate", str(RULES)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("rule set 2026.11.30-1: 10 rules valid (digest ")
    assert "error" not in result.output


def test_validate_defaults_to_the_configured_rules_directory() -> None:
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 0 and "10 rules valid" in result.stdout


def test_validate_json_reports_version_digest_and_notes(rules_copy: Path) -> None:
    (rules_copy / "police.yaml").unlink()
    result = runner.invoke(app, ["validate", str(rules_copy), "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["errors"] == [] and data["version"] == "2026.11.30-1" and len(data["digest"]) == 64
    assert data["notes"] == ["event type police.population_stats has no rule: it goes to its graded private topic only"]


def test_validate_refuses_a_leaking_rule_with_file_line_and_rule(rules_copy: Path) -> None:
    (rules_copy / "zz.yaml").write_text("rules:\n  - id: leak\n    match: {dept: health}\n    to: [public_cloud]\n")
    result = runner.invoke(app, ["validate", str(rules_copy)])
    assert result.exit_code == 1
    assert f"error: {rules_copy / 'zz.yaml'}:2: leak: could send health.hospital_admission v1" in result.stderr
    assert "rules valid" not in result.stdout
    as_json = runner.invoke(app, ["validate", str(rules_copy), "--json"])
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["ok"] is False


@pytest.mark.parametrize("fixture, where", [
    ("yaml_syntax", "rules.yaml:5: YAML syntax error"),
    ("bad_grade", "rules.yaml:4: rule 'a': unknown grade 'secretish'"),
    ("duplicate_id", "b.yaml:4: rule id 'same' is already used"),
    ("missing_ruleset", "missing_ruleset: missing ruleset.yaml"),
])
def test_validate_reports_a_file_that_does_not_load(fixture: str, where: str) -> None:
    result = runner.invoke(app, ["validate", str(BAD / fixture)])
    assert result.exit_code == 1
    assert result.stderr.startswith("hbus: ") and where in result.stderr


# --- test ----------------------------------------------------------------------------------------------

def test_the_shipped_rule_test_cases_pass() -> None:
    result = runner.invoke(app, ["test", str(RULES)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == f"{len(lines) - 1} passed, 0 failed"
    assert len(lines) - 1 >= 10
    assert all(line.startswith("ok   ") for line in lines[:-1])


def test_the_shipped_cases_cover_every_catalog_type_a_forgery_a_view_output_and_a_null() -> None:
    from ruamel.yaml import YAML

    cases = YAML(typ="safe").load((RULES / "tests" / "cases.yaml").read_text(encoding="utf-8"))["cases"]
    types = {c["type"] for c in cases}
    assert types >= {"market.licence_granted", "transport.bus_arrival", "transport.road_closure", "govservice.permit_application",
                     "govservice.citizen_feedback", "health.hospital_admission", "police.population_stats"}
    assert {c.get("version") for c in cases if c["type"] == "transport.bus_arrival"} >= {1, None}
    assert any(c["expect"].get("forged") is True for c in cases)
    assert any(k.startswith("public.") and k.endswith("_stats") for c in cases for k in (c["expect"].get("outputs") or {}))
    assert any(None in c["payload"].values() for c in cases)


def test_failing_and_broken_cases_are_reported_and_exit_1(rules_copy: Path) -> None:
    (rules_copy / "tests" / "extra.yaml").write_text("""\
cases:
  - name: wrong destinations
    type: transport.road_closure
    payload: {closure_id: a, road: b, district: c, starts_at: 1, ends_at: 2, reason: d}
    expect: {destinations: [public_cloud:public.transport.road_closure], grade: public, forged: true}
  - name: wrong output
    type: govservice.permit_application
    payload: {application_id: a, applicant_name: b, applicant_phone: c, permit_type: d, district: e, submitted_at: 0}
    expect:
      destinations: [graded:sensitive.govservice.permit_application, graded:public.govservice.permit_application_stats,
                     public_cloud:public.govservice.permit_application_stats, archive:public.govservice.permit_application_stats]
      outputs: {public.govservice.permit_application_stats: {permit_type: d}}
  - name: unknown type
    type: market.nothing
    payload: {}
  - name: no payload
    type: market.licence_granted
""", encoding="utf-8")
    result = runner.invoke(app, ["test", str(rules_copy)])
    assert result.exit_code == 1
    out = result.stdout
    assert "FAIL wrong destinations  (destinations ['graded:internal.transport.road_closure']; grade internal; forged False)" in out
    assert ('FAIL wrong output  (output on public.govservice.permit_application_stats: '
            '{"district": "e", "permit_type": "d", "submitted_at": "1970-01"})') in out
    assert "FAIL unknown type  (error: unknown event type 'market.nothing')" in out
    assert "FAIL no payload  (error: 'payload')" in out
    assert out.strip().endswith("passed, 4 failed")
    data = json.loads(runner.invoke(app, ["test", str(rules_copy), "--json"]).stdout)
    assert data["failed"] == 4 and data["passed"] >= 10
    assert {c["case"] for c in data["cases"] if not c["ok"]} == {"wrong destinations", "wrong output", "unknown type", "no payload"}


def test_a_rules_directory_without_cases_fails(rules_copy: Path) -> None:
    shutil.rmtree(rules_copy / "tests")
    result = runner.invoke(app, ["test", str(rules_copy)])
    assert result.exit_code == 1 and "0 passed, 0 failed" in result.stdout


# --- explain -------------------------------------------------------------------------------------------

def _event(tmp_path: Path, key: str, payload: dict, **extra: object) -> Path:
    path = tmp_path / "event.json"
    path.write_text(json.dumps({"type": key, "payload": payload, **extra}, ensure_ascii=False), encoding="utf-8")
    return path


def _sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


def test_explain_shows_grade_rules_considered_decisions_and_forgery(tmp_path: Path) -> None:
    event = _event(tmp_path, "govservice.citizen_feedback", _sample("govservice.citizen_feedback.v1.json"), claimed_grade="public")
    result = runner.invoke(app, ["explain", str(event), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["event_type"] == "govservice.citizen_feedback v1" and data["grade"] == "sensitive"
    assert data["forged_header"] is True and data["rules_version"] == "2026.11.30-1"
    assert data["grade_reasons"] == ["record govservice.citizen_feedback is sensitive"]
    why = {r["rule"]: r["why"] for r in data["rules"]}
    assert why["citizen-feedback-open-data"] == "MATCHES (first: decides)"
    assert why["permit-applications-statistic"] == "does not match department/event"
    assert sorted(f"{d['destination']}:{d['topic']}" for d in data["decisions"]) == [
        "archive:public.govservice.citizen_feedback_stats", "graded:public.govservice.citizen_feedback_stats",
        "graded:sensitive.govservice.citizen_feedback", "public_cloud:public.govservice.citizen_feedback_stats"]
    assert data["blocked"] == []
    text = runner.invoke(app, ["explain", str(event)])
    assert text.exit_code == 0
    assert text.stdout.startswith("govservice.citizen_feedback v1: grade sensitive (record govservice.citizen_feedback is sensitive)"
                                  "  FORGED grade header")
    assert "citizen-feedback-open-data" in text.stdout and "public.govservice.citizen_feedback_stats" in text.stdout


def test_explain_says_when_a_grade_cap_skips_a_rule_and_what_is_blocked(tmp_path: Path, rules_copy: Path) -> None:
    (rules_copy / "zz.yaml").write_text("rules:\n  - id: later\n    match: {dept: market}\n    to: [archive]\n"
                                        "  - id: also\n    match: {dept: '*'}\n")
    payload = {**_sample("market.licence_granted.v1.json"), "owner_phone": "13800000000"}
    result = runner.invoke(app, ["explain", str(_event(tmp_path, "market.licence_granted", payload, version=1)),
                                 "--rules", str(rules_copy), "--json"])
    data = json.loads(result.stdout)
    assert data["grade"] == "important"
    assert "field 'owner_phone' is not in the schema: important" in data["grade_reasons"]
    why = {r["rule"]: r["why"] for r in data["rules"]}
    assert why["business-licences-open-data"] == "grade important is above the rule's public"
    assert why["later"] == "MATCHES (first: decides)"
    assert why["also"] == "MATCHES (but an earlier rule decided)"
    assert data["blocked"] == [{"rule_id": "later", "destination": "archive",
                                "reason": "market.licence_granted is important: only public events leave"}]
    text = runner.invoke(app, ["explain", str(_event(tmp_path, "market.licence_granted", payload)), "--rules", str(rules_copy)])
    assert "blocked: archive by later: market.licence_granted is important: only public events leave" in text.stdout


@pytest.mark.parametrize("content, message", [
    ("not json", "Expecting value"),
    ('{"payload": {}}', "'type'"),
    ('{"type": "market.nothing", "payload": {}}', "unknown event type 'market.nothing'"),
    ('{"type": "transport.bus_arrival", "version": 9, "payload": {}}', "has no version 9"),
])
def test_explain_refuses_an_unreadable_event_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "e.json"
    path.write_text(content, encoding="utf-8")
    result = runner.invoke(app, ["explain", str(path)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"hbus: {path}: ") and message in result.stderr
    missing = runner.invoke(app, ["explain", str(tmp_path / "none.json")])
    assert missing.exit_code == 1 and "No such file" in missing.stderr


# --- diff ----------------------------------------------------------------------------------------------

def test_diff_of_the_same_rules_moves_nothing(rules_copy: Path) -> None:
    result = runner.invoke(app, ["diff", str(RULES), str(rules_copy)])
    assert result.exit_code == 0
    assert result.stdout.strip() == "2026.11.30-1 -> 2026.11.30-1: nothing moves"
    data = json.loads(runner.invoke(app, ["diff", str(RULES), str(rules_copy), "--json"]).stdout)
    assert data == {"old": "2026.11.30-1", "new": "2026.11.30-1", "changes": [], "widens": False}


def test_diff_shows_what_a_change_moves_and_exits_1(rules_copy: Path) -> None:
    (rules_copy / "ruleset.yaml").write_text('ruleset:\n  version: "next"\n')
    (rules_copy / "transport.yaml").write_text(
        "rules:\n  - id: bus-arrivals-open-data\n    match: {dept: transport, event: bus_arrival, grade: public}\n"
        "    to: [public_cloud]\n")
    (rules_copy / "govservice.yaml").unlink()
    result = runner.invoke(app, ["diff", str(RULES), str(rules_copy), "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["old"] == "2026.11.30-1" and data["new"] == "next"
    changes = {c["event_type"]: (c["added"], c["removed"]) for c in data["changes"]}
    assert changes == {
        "govservice.citizen_feedback v1": ([], ["archive:public.govservice.citizen_feedback_stats",
                                               "graded:public.govservice.citizen_feedback_stats",
                                               "public_cloud:public.govservice.citizen_feedback_stats"]),
        "govservice.permit_application v1": ([], ["archive:public.govservice.permit_application_stats",
                                                 "graded:public.govservice.permit_application_stats",
                                                 "public_cloud:public.govservice.permit_application_stats"]),
        "transport.bus_arrival v1": ([], ["archive:public.transport.bus_arrival"]),
        "transport.bus_arrival v2": ([], ["archive:public.transport.bus_arrival"]),
    }
    table = runner.invoke(app, ["diff", str(RULES), str(rules_copy)])
    assert table.exit_code == 1
    assert "EVENT TYPE" in table.stdout and "transport.bus_arrival v2" in table.stdout


def test_diff_refuses_a_directory_that_does_not_load() -> None:
    result = runner.invoke(app, ["diff", str(RULES), str(BAD / "bad_destination")])
    assert result.exit_code == 1 and "unknown destination 'internet'" in result.stderr


def test_governance_acts_take_the_actor_from_a_login_never_from_a_flag(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HBUS_STATE_DIR", str(tmp_path))  # nobody logged in here
    monkeypatch.delenv("HBUS_TOKEN", raising=False)
    for args in (["propose"], ["approve", "12345678", "--yes"], ["apply", "--shadow"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 3 and "nobody is logged in" in result.output, (args, result.output)
    result = runner.invoke(app, ["apply", "--by", "someone"])
    assert result.exit_code == 2  # usage: there is no flag to name the actor
