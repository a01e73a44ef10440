"""The routing core without any broker: grades, rules loading, transforms, derived views, engine, validator."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hybridbus.adapters.loaders import load_catalog_dir, load_ruleset_dir
from routing.catalog import Catalog, effective_grade
from routing.derive import derive_event_type, view_grade
from routing.engine import route
from routing.exceptions import GradeError, RuleError
from routing.grades import HIGHEST, Grade, highest
from routing.rules import Match, Rule, RuleSet, Transform, View
from routing.transforms import TransformError, apply, generalise, mask, transformed_grade
from routing.validator import validate

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "routing" / "rules"
SAMPLES = ROOT / "schemas" / "samples"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog_dir(ROOT / "schemas" / "avro")


@pytest.fixture(scope="module")
def shipped() -> RuleSet:
    return load_ruleset_dir(RULES)


def sample(catalog: Catalog, key: str, version: int | None = None) -> tuple:  # type: ignore[type-arg]
    et = catalog.get(key, version)
    return et, json.loads((SAMPLES / f"{et.key}.v{et.version}.json").read_text(encoding="utf-8"))


# --- grades ---------------------------------------------------------------------------------------------

def test_grades_are_ordered_and_parse_by_name() -> None:
    assert Grade.PUBLIC < Grade.INTERNAL < Grade.SENSITIVE < Grade.RESTRICTED < Grade.IMPORTANT
    assert [Grade.parse(g.id) for g in Grade] == list(Grade)
    assert Grade.parse(" Sensitive ") is Grade.SENSITIVE
    assert highest([Grade.INTERNAL, Grade.RESTRICTED, Grade.PUBLIC]) is Grade.RESTRICTED
    assert highest([]) is Grade.PUBLIC


@pytest.mark.parametrize("name, reason", [("core", "never carried"), ("核心数据", "never carried"),
                                          ("secretive", "unknown grade"), (3, "must be a string")])
def test_grades_that_are_not_carried_are_refused_with_their_reason(name: object, reason: str) -> None:
    with pytest.raises(GradeError, match=reason):
        Grade.parse(name)
    assert Grade.parse_or_highest(name) is HIGHEST


# --- effective grade -----------------------------------------------------------------------------------

def test_effective_grade_is_the_high_water_mark_of_the_fields_carried(catalog: Catalog) -> None:
    et, payload = sample(catalog, "govservice.citizen_feedback")
    assert effective_grade(et, payload) is Grade.SENSITIVE
    assert effective_grade(et, {**payload, "contact": None}) is Grade.SENSITIVE  # text is still carried
    assert effective_grade(et, {"topic": "噪音"}) is Grade.SENSITIVE  # the record's own grade is the floor
    assert effective_grade(et, {**payload, "id_number": "x"}) is HIGHEST  # unknown field: fail closed
    assert effective_grade(et, ["not", "a", "record"]) is HIGHEST


# --- rules loading -------------------------------------------------------------------------------------

def _rules_dir(tmp_path: Path, body: str, name: str = "x.yaml") -> Path:
    target = tmp_path / "rules"
    target.mkdir()
    (target / "ruleset.yaml").write_text('ruleset:\n  version: "t1"\n')
    (target / name).write_text(body)
    return target


@pytest.mark.parametrize("body, line, reason", [
    ("rules:\n  - id: a\n    match: {dept: market}\n    to: [public_cloud\n", 5, "YAML syntax error"),
    ("rules:\n  - id: a\n    match: {dept: market}\n    colour: blue\n", 4, "unknown key"),
    ("rules:\n  - match: {dept: market}\n", 2, "no `id`"),
    ("rules:\n  - id: a\n    match: {department: market}\n", 3, "unknown match key"),
    ("rules:\n  - id: a\n    match: {dept: market, grade: core}\n", 3, "never carried"),
    ("rules:\n  - id: a\n    match: {dept: market}\n    to: [internet]\n", 4, "unknown destination"),
    ("rules:\n  - id: a\n    match: {dept: govservice}\n    derive:\n      - name: v\n        fields:\n"
     "          text: {encrypt: aes}\n", 7, "encryption never lowers a grade"),
    ("rules:\n  - id: a\n    match: {dept: govservice}\n    derive:\n      - name: v\n        fields:\n"
     "          submitted_at: {generalise: week}\n", 7, "generalise to one of"),
    ("other: 1\n", 1, "expected only a top-level `rules:`"),
])
def test_bad_rules_files_are_refused_with_file_line_and_reason(tmp_path: Path, body: str, line: int, reason: str) -> None:
    with pytest.raises(RuleError) as refused:
        load_ruleset_dir(_rules_dir(tmp_path, body))
    assert refused.value.path and refused.value.path.endswith("x.yaml")
    assert refused.value.line == line
    assert reason in refused.value.reason


def test_duplicate_rule_ids_across_files_are_refused(tmp_path: Path) -> None:
    rules = _rules_dir(tmp_path, "rules:\n  - id: a\n    match: {dept: market}\n")
    (rules / "y.yaml").write_text("rules:\n  - id: a\n    match: {dept: transport}\n")
    with pytest.raises(RuleError, match="already used"):
        load_ruleset_dir(rules)


def test_a_rules_directory_without_a_version_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="ruleset.yaml"):
        load_ruleset_dir(tmp_path)


def test_rule_sets_round_trip_through_json_with_the_same_digest(shipped: RuleSet) -> None:
    again = RuleSet.from_json(shipped.to_json())
    assert again.version == shipped.version and again.rules == shipped.rules
    assert again.digest == shipped.digest
    changed = RuleSet(shipped.version, shipped.rules[1:])
    assert changed.digest != shipped.digest


# --- transforms ----------------------------------------------------------------------------------------

def test_transforms_shape_values_and_never_lower_restricted_grades() -> None:
    assert mask("13812345678") == "*******5678"
    assert mask("李华") == "**"
    assert generalise("month", 1795567380000) == "2026-11"
    assert generalise("date", "2026-11-20T08:00:00Z") == "2026-11-20"
    assert generalise("district", "上海市浦东新区张江路1号") == "浦东新区"
    assert generalise("age_band", 37) == "30-39"
    for bad_kind, value in (("month", 10**20), ("date", "yesterday"), ("age_band", -1), ("district", "???"), ("week", 1)):
        with pytest.raises(TransformError):
            generalise(bad_kind, value)
    with pytest.raises(TransformError, match="no pseudonymisation key"):
        apply(Transform("pseudonymise", "k"), "x", None)
    assert apply(Transform("pseudonymise", "k"), "x", lambda data: b"h:" + data[-1:]) == "h:x"
    assert apply(Transform("mask"), None) is None
    for grade in Grade:
        assert transformed_grade(grade, Transform("drop")) is None
        assert transformed_grade(grade, Transform("keep")) is grade
        lowered = transformed_grade(grade, Transform("generalise", "month"))
        assert lowered is (Grade.PUBLIC if grade <= Grade.SENSITIVE else grade)


# --- derived views and the engine ------------------------------------------------------------------------

def test_the_feedback_view_is_public_and_carries_only_topic_district_and_month(catalog: Catalog, shipped: RuleSet) -> None:
    et, payload = sample(catalog, "govservice.citizen_feedback")
    result = route(et, payload, shipped)
    view = [d for d in result.decisions if d.topic == "public.govservice.citizen_feedback_stats"]
    assert {d.destination for d in view} == {"graded", "public_cloud", "archive"}
    assert dict(view[0].payload) == {"topic": payload["topic"], "district": payload["district"], "submitted_at": "2026-11"}
    assert view[0].event_type.schema_grade is Grade.PUBLIC
    assert derive_event_type(et, [v for r in shipped.rules for v in r.derive if v.name == "citizen_feedback_stats"][0]).path == ""


@pytest.mark.parametrize("key, graded, out", [
    ("market.licence_granted", "public.market.licence_granted", {"public_cloud", "archive"}),
    ("transport.road_closure", "internal.transport.road_closure", set()),
    ("health.hospital_admission", "restricted.health.hospital_admission", set()),
    ("police.population_stats", "important.police.population_stats", set()),
])
def test_every_event_goes_to_its_graded_topic_and_only_public_goes_out(catalog: Catalog, shipped: RuleSet,
                                                                      key: str, graded: str, out: set[str]) -> None:
    et, payload = sample(catalog, key)
    result = route(et, payload, shipped)
    assert result.decisions[0].destination == "graded" and result.decisions[0].topic == graded
    assert {d.destination for d in result.decisions[1:]} == out
    assert result.ruleset_version == shipped.version


def test_a_forged_lower_grade_claim_is_detected_and_ignored(catalog: Catalog, shipped: RuleSet) -> None:
    et, payload = sample(catalog, "health.hospital_admission")
    forged = route(et, payload, shipped, claimed_grade="public")
    assert forged.forged and forged.grade is Grade.RESTRICTED
    assert {d.destination for d in forged.decisions} == {"graded"}
    assert not route(et, payload, shipped, claimed_grade="restricted").forged
    assert route(et, payload, shipped, claimed_grade="???").forged  # an unreadable claim is an attempt too


def test_the_engine_blocks_a_rule_that_would_send_sensitive_data_out(catalog: Catalog) -> None:
    et, payload = sample(catalog, "govservice.citizen_feedback")
    reckless = RuleSet("bad", (Rule("leak", Match("govservice", "citizen_feedback"), ("public_cloud", "archive")),))
    result = route(et, payload, reckless)
    assert {d.destination for d in result.decisions} == {"graded"}
    assert {b.destination for b in result.blocked} == {"public_cloud", "archive"}


def test_the_engine_blocks_a_view_that_keeps_sensitive_fields_or_cannot_pseudonymise(catalog: Catalog) -> None:
    et, payload = sample(catalog, "govservice.citizen_feedback")
    keeps_text = View("v", tuple((f.name, Transform("keep")) for f in et.fields), ("public_cloud",))
    needs_key = View("w", tuple((f.name, Transform("pseudonymise", "c") if f.name == "feedback_id" else Transform("drop"))
                                for f in et.fields), ("archive",))
    ruleset = RuleSet("bad", (Rule("r", Match("govservice", "citizen_feedback"), (), (keeps_text, needs_key)),))
    result = route(et, payload, ruleset)
    assert [d.topic for d in result.decisions] == ["sensitive.govservice.citizen_feedback"]
    reasons = " ".join(b.reason for b in result.blocked)
    assert "view v would be sensitive" in reasons and "no pseudonymisation key" in reasons
    with_key = route(et, payload, ruleset, pseudonymise=lambda data: "p-" + str(len(data)))
    [view] = [d for d in with_key.decisions if d.topic == "public.govservice.w" and d.destination == "archive"]
    assert dict(view.payload) == {"feedback_id": f"p-{len(b'c:') + len(payload['feedback_id'].encode())}"}


def test_first_match_decides_and_grade_caps_limit_a_match(catalog: Catalog) -> None:
    et, payload = sample(catalog, "market.licence_granted")
    ruleset = RuleSet("t", (Rule("capped", Match("market", "*", Grade.PUBLIC), ("archive",)),
                            Rule("later", Match("*", "*"), ("public_cloud",))))
    assert {d.destination for d in route(et, payload, ruleset).decisions} == {"graded", "archive"}
    assert ruleset.first_match("market", "licence_granted", Grade.INTERNAL).id == "later"
    assert {d.destination for d in route(et, payload, RuleSet.empty()).decisions} == {"graded"}


# --- validator -----------------------------------------------------------------------------------------

def test_the_shipped_rules_are_valid_and_cover_every_event_type(catalog: Catalog, shipped: RuleSet) -> None:
    report = validate(shipped, catalog)
    assert report.ok, [str(e) for e in report.errors]
    assert not [n for n in report.notes if "has no rule" in n.reason]


def _copy_rules(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    return target


def _errors(tmp_path: Path, catalog: Catalog, edit) -> list[str]:  # type: ignore[no-untyped-def]
    rules = _copy_rules(tmp_path)
    edit(rules)
    report = validate(load_ruleset_dir(rules), catalog)
    return [str(e) for e in report.errors]


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("edit, expected", [
    (lambda r: _replace(r / "health.yaml", "to: []", "to: [public_cloud]"), "hospital_admission v1 (restricted by its schema) to public_cloud"),
    (lambda r: _replace(r / "govservice.yaml", "          contact: drop\n", ""), "does not say what to do with field 'contact'"),
    (lambda r: _replace(r / "govservice.yaml", "          text: drop", "          text: drop\n          mood: drop"), "names field 'mood'"),
    (lambda r: _replace(r / "govservice.yaml", "          text: drop", "          text: keep"), "would be sensitive"),
    (lambda r: (r / "zz.yaml").write_text("rules:\n  - id: dup\n    match: {dept: market, event: licence_granted, grade: public}\n    to: [archive]\n"),
     "conflicts with rule 'business-licences-open-data'"),
    (lambda r: (r / "zz.yaml").write_text("rules:\n  - id: late\n    match: {dept: health, event: hospital_admission, grade: public}\n"),
     "is shadowed by rule 'hospital-admissions-stay-private'"),
    (lambda r: (r / "zz.yaml").write_text("rules:\n  - id: who\n    match: {dept: tax}\n"), "unknown department 'tax'"),
    (lambda r: (r / "zz.yaml").write_text("rules:\n  - id: what\n    match: {dept: market, event: lottery}\n"), "no event type market.lottery"),
    (lambda r: _replace(r / "health.yaml", "    to: []", "    derive:\n      - name: admissions_stats\n        fields:\n"
                        "          admission_id: drop\n          patient_id_number: {generalise: district}\n          patient_name: drop\n"
                        "          diagnosis_code: drop\n          hospital: keep\n          ward: drop\n          admitted_at: {generalise: month}\n"
                        "        to: [archive]"), "restricted data may only be dropped"),
    (lambda r: _replace(r / "govservice.yaml", "name: citizen_feedback_stats", "name: permit_application"),
     "is already an event type"),
])
def test_the_validator_refuses_each_unsafe_or_unclear_rule_with_its_place(tmp_path: Path, catalog: Catalog, edit, expected: str) -> None:  # type: ignore[no-untyped-def]
    errors = _errors(tmp_path, catalog, edit)
    assert any(expected in e for e in errors), errors
    assert all(".yaml:" in e for e in errors)  # every error names file and line


def test_a_view_from_restricted_data_needs_an_approval(tmp_path: Path, catalog: Catalog) -> None:
    view = ("    derive:\n      - name: admissions_by_hospital\n        fields:\n          admission_id: drop\n"
            "          patient_id_number: drop\n          patient_name: drop\n          diagnosis_code: drop\n"
            "          hospital: keep\n          ward: drop\n          admitted_at: {generalise: month}\n        to: [archive]")
    errors = _errors(tmp_path, catalog, lambda r: _replace(r / "health.yaml", "    to: []", view))
    assert any("needs an aggregate or an explicit reviewed `approval`" in e for e in errors)
    approved = _errors(tmp_path / "b", catalog, lambda r: _replace(r / "health.yaml", "    to: []", view + "\n    approval: WJW-2026-07"))
    assert approved == []


def test_a_removed_rule_leaves_its_event_type_uncovered_in_the_report(tmp_path: Path, catalog: Catalog) -> None:
    rules = _copy_rules(tmp_path)
    (rules / "police.yaml").unlink()
    report = validate(load_ruleset_dir(rules), catalog)
    assert report.ok
    assert any("police.population_stats has no rule" in n.reason for n in report.notes)


def test_view_grade_is_highest_when_a_field_is_left_unnamed(catalog: Catalog) -> None:
    et = catalog.get("govservice.citizen_feedback")
    partial = View("p", (("topic", Transform("keep")),), ())
    assert view_grade(et, partial) is HIGHEST
