"""The rules validator: the shipped rules are valid, and each kind of error is reported with the rule id,
its file and its line."""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from hybridbus.adapters.loaders import load_catalog_dir, load_ruleset_dir
from routing.catalog import Catalog
from routing.grades import Grade
from routing.rules import Match, Rule, RuleSet, Transform, View
from routing.validator import Finding, Report, matched_types, validate

ROOT = Path(__file__).resolve().parents[3]
CATALOG = load_catalog_dir(ROOT / "schemas" / "avro")
RULES = ROOT / "routing" / "rules"

FEEDBACK_FIELDS = """\
          feedback_id: drop
          topic: keep
          district: keep
          text: drop
          contact: drop
          submitted_at: {generalise: month}
"""


def _load(tmp_path: Path, body: str) -> tuple[RuleSet, Path]:
    (tmp_path / "ruleset.yaml").write_text('ruleset:\n  version: "t"\n', encoding="utf-8")
    path = tmp_path / "r.yaml"
    path.write_text(body, encoding="utf-8")
    return load_ruleset_dir(tmp_path), path


def _errors(tmp_path: Path, body: str) -> tuple[list[Finding], Path]:
    ruleset, path = _load(tmp_path, body)
    return validate(ruleset, CATALOG).errors, path


def test_the_shipped_rules_are_valid_and_cover_every_event_type() -> None:
    report = validate(load_ruleset_dir(RULES), CATALOG)
    assert report.ok, [str(e) for e in report.errors]
    assert report.errors == [] and report.notes == []


@pytest.mark.parametrize("removed, uncovered", [
    ("health.yaml", ["health.hospital_admission"]),
    ("transport.yaml", ["transport.bus_arrival", "transport.road_closure"]),
    ("govservice.yaml", ["govservice.citizen_feedback", "govservice.permit_application"]),
])
def test_removing_a_rule_reports_the_types_left_uncovered(tmp_path: Path, removed: str, uncovered: list[str]) -> None:
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    (target / removed).unlink()
    report = validate(load_ruleset_dir(target), CATALOG)
    assert report.ok
    assert [str(n) for n in report.notes] == [
        f"event type {key} has no rule: it goes to its graded private topic only" for key in uncovered]
    assert all(n.rule_id == "" and n.path == "" and n.line == 0 for n in report.notes)


@pytest.mark.parametrize("match, to, key, grade", [
    ("{dept: transport, event: road_closure}", "[public_cloud]", "transport.road_closure v1", "internal"),
    ("{dept: govservice, event: permit_application}", "[archive]", "govservice.permit_application v1", "sensitive"),
    ("{dept: health}", "[public_cloud, archive]", "health.hospital_admission v1", "restricted"),
    ("{dept: police, event: population_stats}", "[archive]", "police.population_stats v1", "important"),
])
def test_sending_a_non_public_type_out_is_an_error(tmp_path: Path, match: str, to: str, key: str, grade: str) -> None:
    errors, path = _errors(tmp_path, f"rules:\n  - id: leak\n    match: {match}\n    to: {to}\n")
    assert len(errors) == 1
    (error,) = errors
    assert (error.rule_id, error.path, error.line) == ("leak", str(path), 2)
    assert f"could send {key} ({grade} by its schema)" in error.reason
    assert "only public data may leave" in error.reason
    assert str(error).startswith(f"{path}:2: leak: could send")


def test_a_grade_cap_does_not_make_an_export_of_a_non_public_schema_valid(tmp_path: Path) -> None:
    errors, _ = _errors(tmp_path, "rules:\n  - id: capped\n    match: {dept: transport, grade: public}\n    to: [public_cloud]\n")
    assert errors == []  # the cap leaves only the all-public bus arrivals (v1 and v2)
    errors, _ = _errors(tmp_path, "rules:\n  - id: wide\n    match: {dept: transport, grade: internal}\n    to: [public_cloud]\n")
    assert [(e.rule_id, e.line) for e in errors] == [("wide", 2)]
    assert "transport.road_closure v1 (internal" in errors[0].reason


def test_a_public_type_with_optional_higher_grade_fields_may_be_exported_only_under_a_public_cap(tmp_path: Path) -> None:
    # The cap makes the rule match only the events that leave those fields empty: they are public, and leave.
    capped = "rules:\n  - id: capped\n    match: {dept: market, event: inspection_result, grade: public}\n    to: [archive]\n"
    (tmp_path / "capped").mkdir()
    (tmp_path / "wide").mkdir()
    assert _errors(tmp_path / "capped", capped)[0] == []
    wide = "rules:\n  - id: wide\n    match: {dept: market, event: inspection_result}\n    to: [archive]\n"
    errors, _ = _errors(tmp_path / "wide", wide)
    assert [(e.rule_id, e.line) for e in errors] == [("wide", 2)]
    assert "market.inspection_result v1 (restricted by its schema)" in errors[0].reason


def test_a_view_must_name_every_source_field_and_only_those(tmp_path: Path) -> None:
    body = ("rules:\n  - id: r\n    match: {dept: govservice, event: citizen_feedback}\n    derive:\n      - name: fb\n"
            "        fields:\n          topic: keep\n          district: keep\n          text: drop\n          contact: drop\n"
            "          submitted_at: {generalise: month}\n          ghost: drop\n")
    errors, path = _errors(tmp_path, body)
    reasons = [e.reason for e in errors]
    assert reasons == [
        "view 'fb' names field 'ghost', which govservice.citizen_feedback v1 does not have",
        "view 'fb' does not say what to do with field 'feedback_id' of govservice.citizen_feedback v1 "
        "(keep, drop, mask, generalise or pseudonymise)",
    ]
    assert {(e.rule_id, e.path, e.line) for e in errors} == {("r", str(path), 5)}


@pytest.mark.parametrize("transform", ["mask", "pseudonymise", "{generalise: district}", "{pseudonymise: ids}", "keep"])
def test_restricted_fields_may_only_be_dropped(tmp_path: Path, transform: str) -> None:
    body = ("rules:\n  - id: health-stats\n    approval: REVIEW-2026-01\n    match: {dept: health}\n    derive:\n"
            "      - name: admissions\n        fields:\n          admission_id: drop\n"
            f"          patient_id_number: {transform}\n          patient_name: drop\n          diagnosis_code: drop\n"
            "          hospital: keep\n          ward: drop\n          admitted_at: {generalise: month}\n")
    errors, path = _errors(tmp_path, body)
    assert [(e.rule_id, e.path, e.line) for e in errors] == [("health-stats", str(path), 6)] * 2
    assert errors[0].reason == ("view 'admissions': field 'patient_id_number' is restricted; restricted data may only "
                                "be dropped (it is encrypted at the source: the bus never sees its value)")
    assert errors[1].reason == "view 'admissions' would be restricted, not public"


def test_important_fields_may_only_be_dropped(tmp_path: Path) -> None:
    body = ("rules:\n  - id: pop\n    approval: A-1\n    match: {dept: police}\n    derive:\n      - name: pop_view\n"
            "        fields: {district: keep, period: keep, registered_residents: {generalise: age_band}, households: drop,"
            " moved_in: drop, moved_out: drop}\n        to: [public_cloud]\n")
    errors, _ = _errors(tmp_path, body)
    assert [e.reason for e in errors] == [
        "view 'pop_view': field 'registered_residents' is important; important data may only be dropped",
        "view 'pop_view' would be important, not public, yet goes to public_cloud"]


@pytest.mark.parametrize("approval, errors_expected", [("", 1), ("    approval: REVIEW-2026-07 (data office)\n", 0)])
def test_a_view_of_a_restricted_record_needs_an_approval(tmp_path: Path, approval: str, errors_expected: int) -> None:
    body = ("rules:\n  - id: adm\n" + approval + "    match: {dept: health, event: hospital_admission}\n    derive:\n"
            "      - name: admissions_by_hospital\n        fields: {admission_id: drop, patient_id_number: drop, patient_name: drop,"
            " diagnosis_code: drop, hospital: keep, ward: drop, admitted_at: {generalise: month}}\n        to: [archive]\n")
    errors, path = _errors(tmp_path, body)
    assert len(errors) == errors_expected
    if errors:
        assert (errors[0].rule_id, errors[0].path, errors[0].line) == ("adm", str(path), 5)
        assert errors[0].reason == ("view 'admissions_by_hospital' of health.hospital_admission (restricted): publishing from "
                                    "restricted data needs an aggregate or an explicit reviewed `approval`")


@pytest.mark.parametrize("kept, grade", [("text", "sensitive"), ("feedback_id", "internal")])
def test_a_view_that_would_not_be_public_is_an_error_with_or_without_destinations(tmp_path: Path, kept: str, grade: str) -> None:
    fields = FEEDBACK_FIELDS.replace(f"{kept}: drop", f"{kept}: keep")
    (tmp_path / "a").mkdir()
    with_to, _ = _errors(tmp_path / "a",
                            "rules:\n  - id: fb\n    match: {dept: govservice, event: citizen_feedback}\n    derive:\n"
                            "      - name: fb_view\n        fields:\n" + fields + "        to: [public_cloud, archive]\n")
    assert [(e.rule_id, e.line, e.reason) for e in with_to] == [
        ("fb", 5, f"view 'fb_view' would be {grade}, not public, yet goes to public_cloud, archive")]
    (tmp_path / "b").mkdir()
    without_to, _ = _errors(tmp_path / "b", "rules:\n  - id: fb\n    match: {dept: govservice, event: citizen_feedback}\n"
                                            "    derive:\n      - name: fb_view\n        fields:\n" + fields)
    assert [(e.rule_id, e.line, e.reason) for e in without_to] == [("fb", 5, f"view 'fb_view' would be {grade}, not public")]


def test_a_later_rule_that_an_earlier_one_covers_is_shadowed(tmp_path: Path) -> None:
    body = ("rules:\n  - id: all-transport\n    match: {dept: transport}\n\n"
            "  - id: closures\n    match: {dept: transport, event: road_closure}\n")
    errors, path = _errors(tmp_path, body)
    assert [(e.rule_id, e.path, e.line) for e in errors] == [("closures", str(path), 5)]
    assert errors[0].reason == (f"is shadowed by rule 'all-transport' ({path}:2), which matches every event it does and comes first")


def test_a_grade_capped_earlier_rule_does_not_shadow(tmp_path: Path) -> None:
    body = ("rules:\n  - id: public-arrivals\n    match: {dept: transport, event: bus_arrival, grade: public}\n    to: [archive]\n"
            "  - id: arrivals\n    match: {dept: transport, event: bus_arrival}\n")
    errors, _ = _errors(tmp_path, body)
    assert errors == []


def test_two_rules_with_the_same_match_and_different_outcomes_conflict(tmp_path: Path) -> None:
    body = ("rules:\n  - id: a\n    match: {dept: market, event: licence_granted, grade: public}\n    to: [archive]\n"
            "  - id: b\n    match: {dept: market, event: licence_granted, grade: public}\n    to: [public_cloud]\n")
    errors, path = _errors(tmp_path, body)
    assert [(e.rule_id, e.path, e.line) for e in errors] == [("b", str(path), 5)]
    assert errors[0].reason == (f"conflicts with rule 'a' ({path}:2): same match, different destinations; "
                                "the earlier one always wins")


def test_two_identical_rules_are_shadowed_not_conflicting(tmp_path: Path) -> None:
    body = ("rules:\n  - id: a\n    match: {dept: market}\n  - id: b\n    match: {dept: market}\n")
    errors, _ = _errors(tmp_path, body)
    assert [(e.rule_id, e.line) for e in errors] == [("b", 4)]
    assert errors[0].reason.startswith("is shadowed by rule 'a'")


@pytest.mark.parametrize("match, reason", [
    ("{dept: customs}", "unknown department 'customs'"),
    ("{dept: market, event: bus_arrival}", "no event type market.bus_arrival in the catalog"),
    ("{event: weather}", "no event type *.weather in the catalog"),
    ("{dept: govservice, grade: public}", "matches no event type of the catalog"),
])
def test_a_rule_that_matches_nothing_is_an_error(tmp_path: Path, match: str, reason: str) -> None:
    errors, path = _errors(tmp_path, f"rules:\n  - id: nothing\n    description: x\n    match: {match}\n")
    assert [(e.rule_id, e.path, e.line, e.reason) for e in errors] == [("nothing", str(path), 2, reason)]


def test_two_rules_deriving_the_same_view_name_are_an_error(tmp_path: Path) -> None:
    body = ("rules:\n  - id: one\n    match: {dept: govservice, event: citizen_feedback}\n    derive:\n      - name: stats\n"
            "        fields:\n" + FEEDBACK_FIELDS +
            "  - id: two\n    match: {dept: govservice, event: permit_application}\n    derive:\n      - name: stats\n"
            "        fields: {application_id: drop, applicant_name: drop, applicant_phone: drop, permit_type: keep,"
            " district: keep, submitted_at: {generalise: month}}\n")
    errors, path = _errors(tmp_path, body)
    assert [(e.rule_id, e.path, e.line, e.reason) for e in errors] == [
        ("two", str(path), 16, "view govservice.stats is also derived by rule 'one'")]


def test_a_view_named_like_an_existing_event_type_is_an_error(tmp_path: Path) -> None:
    body = ("rules:\n  - id: clash\n    match: {dept: govservice, event: citizen_feedback}\n    derive:\n"
            "      - name: permit_application\n        fields:\n" + FEEDBACK_FIELDS)
    errors, path = _errors(tmp_path, body)
    assert [(e.rule_id, e.path, e.line, e.reason) for e in errors] == [
        ("clash", str(path), 5, "view name 'permit_application' is already an event type of govservice")]


def test_matched_types_include_every_version_under_the_grade_cap() -> None:
    keys = lambda rule: [(et.key, et.version) for et in matched_types(rule, CATALOG)]  # noqa: E731
    assert keys(Rule("r", Match("transport"))) == [("transport.bus_arrival", 1), ("transport.bus_arrival", 2),
                                                   ("transport.road_closure", 1)]
    assert keys(Rule("r", Match("transport", grade=Grade.PUBLIC))) == [("transport.bus_arrival", 1), ("transport.bus_arrival", 2)]
    assert len(keys(Rule("r", Match()))) == len(CATALOG)


def test_findings_and_reports_read_well_for_hand_built_rules() -> None:
    rule = Rule("r", Match("nowhere"))
    report = validate(RuleSet("v", (rule,)), CATALOG)
    assert [str(e) for e in report.errors] == ["r: unknown department 'nowhere'"]
    assert not report.ok
    assert str(Finding("", "", 0, "just a reason")) == "just a reason"
    assert str(Finding("", "f.yaml", 3, "why")) == "f.yaml:3: why"
    empty = Report()
    empty.error(None, "general", 7)
    assert empty.errors == [Finding("", "", 7, "general")]


def test_a_hand_built_view_with_an_unlowering_transform_is_not_public() -> None:
    # The loader refuses `encrypt`; a rule built in code must not slip it past the validator either.
    fields = {"feedback_id": Transform("drop"), "topic": Transform("keep"), "district": Transform("keep"),
              "text": Transform("encrypt"), "contact": Transform("drop"), "submitted_at": Transform("generalise", "month")}
    rule = Rule("enc", Match("govservice", "citizen_feedback"), derive=(View("enc_view", tuple(sorted(fields.items())), ("archive",)),))
    report = validate(RuleSet("v", (rule,)), CATALOG)
    assert [e.reason for e in report.errors] == ["view 'enc_view' would be sensitive, not public, yet goes to archive"]


@pytest.mark.parametrize("transform", ["mask", "{generalise: district}", "{pseudonymise: ids}"])
def test_a_rule_that_needs_an_encrypted_restricted_value_is_refused(tmp_path: Path, transform: str) -> None:
    body = ("rules:\n  - id: health-stats\n    approval: REVIEW-2026-01\n    match: {dept: health}\n    derive:\n"
            "      - name: admissions\n        fields:\n          admission_id: drop\n          patient_id_number: drop\n"
            f"          patient_name: drop\n          diagnosis_code: {transform}\n"
            "          hospital: keep\n          ward: drop\n          admitted_at: {generalise: month}\n")
    errors, _ = _errors(tmp_path, body)
    assert errors[0].reason == ("view 'admissions': field 'diagnosis_code' is restricted; restricted data may only be "
                                "dropped (it is encrypted at the source: the bus never sees its value)")


def test_a_rule_that_needs_an_encrypted_sensitive_value_is_refused() -> None:
    # A sensitive field its schema chose to encrypt: lowerable by grade, but the router only holds ciphertext.
    source = CATALOG.get("govservice.citizen_feedback")
    sealed = replace(source, fields=tuple(replace(f, encrypted=True) if f.name == "text" else f for f in source.fields))
    catalog = Catalog([sealed if et.key == source.key else et for et in CATALOG], CATALOG.departments)
    fields = {"feedback_id": Transform("drop"), "topic": Transform("keep"), "district": Transform("keep"),
              "text": Transform("mask"), "contact": Transform("drop"), "submitted_at": Transform("generalise", "month")}
    rule = Rule("fb", Match("govservice", "citizen_feedback"), derive=(View("fb_view", tuple(sorted(fields.items())), ()),))
    assert [e.reason for e in validate(RuleSet("v", (rule,)), catalog).errors] == [
        "view 'fb_view': field 'text' is encrypted at the source: the bus never sees its value, so it may only be "
        "dropped, not mask"]
    dropped = Rule("fb", Match("govservice", "citizen_feedback"),
                   derive=(View("fb_view", tuple(sorted({**fields, "text": Transform("drop")}.items())), ()),))
    assert validate(RuleSet("v", (dropped,)), catalog).ok
