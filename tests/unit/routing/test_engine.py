"""The routing engine: each shipped event type's sample through the shipped rules, forged claims, blocked
exports under rules that bypassed the validator, failing views, first-match and grade caps."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hybridbus.adapters.loaders import load_catalog_dir, load_ruleset_dir
from routing.catalog import EventType, effective_grade, grade_reasons
from routing.engine import GRADED, Blocked, route
from routing.grades import HIGHEST, Grade
from routing.rules import ARCHIVE, PUBLIC_CLOUD, Match, Rule, RuleSet, Transform, View

ROOT = Path(__file__).resolve().parents[3]
CATALOG = load_catalog_dir(ROOT / "schemas" / "avro")
SHIPPED = load_ruleset_dir(ROOT / "routing" / "rules")
SAMPLES = ROOT / "schemas" / "samples"


def sample(key: str, version: int | None = None) -> tuple[EventType, dict[str, Any]]:
    et = CATALOG.get(key, version)
    return et, json.loads((SAMPLES / f"{et.key}.v{et.version}.json").read_text(encoding="utf-8"))


def dests(result: Any) -> list[str]:
    return sorted(f"{d.destination}:{d.topic}" for d in result.decisions)


def _all(topic: str) -> list[str]:
    return [f"{ARCHIVE}:{topic}", f"{GRADED}:{topic}", f"{PUBLIC_CLOUD}:{topic}"]


SHIPPED_EXPECTATIONS = [
    ("market.licence_granted", 1, Grade.PUBLIC, "business-licences-open-data", _all("public.market.licence_granted")),
    ("transport.bus_arrival", 1, Grade.PUBLIC, "bus-arrivals-open-data", _all("public.transport.bus_arrival")),
    ("transport.bus_arrival", 2, Grade.PUBLIC, "bus-arrivals-open-data", _all("public.transport.bus_arrival")),
    ("transport.road_closure", 1, Grade.INTERNAL, "road-closures-stay-internal", ["graded:internal.transport.road_closure"]),
    ("govservice.permit_application", 1, Grade.SENSITIVE, "permit-applications-statistic",
     sorted(["graded:sensitive.govservice.permit_application", *_all("public.govservice.permit_application_stats")])),
    ("govservice.citizen_feedback", 1, Grade.SENSITIVE, "citizen-feedback-open-data",
     sorted(["graded:sensitive.govservice.citizen_feedback", *_all("public.govservice.citizen_feedback_stats")])),
    ("health.hospital_admission", 1, Grade.RESTRICTED, "hospital-admissions-stay-private",
     ["graded:restricted.health.hospital_admission"]),
    ("police.population_stats", 1, Grade.IMPORTANT, "population-statistics-stay-private",
     ["graded:important.police.population_stats"]),
    ("market.inspection_result", 1, Grade.PUBLIC, "inspection-results-open-data",
     _all("public.market.inspection_result")),
]


def test_the_expectations_cover_every_catalog_type_and_version() -> None:
    assert sorted((k, v) for k, v, *_ in SHIPPED_EXPECTATIONS) == sorted((et.key, et.version) for et in CATALOG)


@pytest.mark.parametrize("key, version, grade, rule_id, expected", SHIPPED_EXPECTATIONS)
def test_every_sample_goes_where_the_shipped_rules_say(key: str, version: int, grade: Grade, rule_id: str,
                                                         expected: list[str]) -> None:
    et, payload = sample(key, version)
    result = route(et, payload, SHIPPED)
    assert result.grade is grade
    assert result.rule_id == rule_id
    assert result.forged is False
    assert result.ruleset_version == SHIPPED.version
    assert result.blocked == ()
    assert dests(result) == expected
    source_decision = result.decisions[0]
    assert (source_decision.destination, source_decision.topic) == (GRADED, et.graded_topic(grade))
    assert source_decision.payload == payload and source_decision.event_type is et
    assert source_decision.reason == f"graded {grade.id} by schema; rule {rule_id}"
    for decision in result.decisions:
        assert decision.rule_id == rule_id
        if decision.destination != GRADED:
            assert decision.grade is Grade.PUBLIC
            assert effective_grade(decision.event_type, decision.payload) is Grade.PUBLIC


def test_the_permit_statistic_view_carries_exactly_the_public_fields() -> None:
    et, payload = sample("govservice.permit_application")
    result = route(et, payload, SHIPPED)
    views = [d for d in result.decisions if d.topic == "public.govservice.permit_application_stats"]
    assert sorted(d.destination for d in views) == [ARCHIVE, GRADED, PUBLIC_CLOUD]
    for decision in views:
        assert dict(decision.payload) == {"permit_type": "食品经营许可", "district": "徐汇区", "submitted_at": "2026-11"}
        assert decision.event_type.key == "govservice.permit_application_stats"
        assert decision.reason == "rule permit-applications-statistic view permit_application_stats"
    text = json.dumps([dict(d.payload) for d in views], ensure_ascii=False)
    for secret in ("王小明", "13812345678", "ZW-2026-558812"):
        assert secret not in text


def test_a_null_optional_sensitive_field_does_not_lower_the_record_grade() -> None:
    et, payload = sample("govservice.citizen_feedback")
    result = route(et, {**payload, "contact": None}, SHIPPED)
    assert result.grade is Grade.SENSITIVE  # the record grade is the floor
    (view,) = [d for d in result.decisions if d.destination == PUBLIC_CLOUD]
    assert dict(view.payload) == {"topic": "噪音", "district": "静安区", "submitted_at": "2026-11"}


def test_an_unknown_field_makes_the_event_highest_and_sends_nothing_out() -> None:
    et, payload = sample("market.licence_granted")
    result = route(et, {**payload, "owner_id_number": "310101199001011234"}, SHIPPED)
    assert result.grade is HIGHEST
    assert result.rule_id is None  # the only rule is capped at public
    assert dests(result) == ["graded:important.market.licence_granted"]
    assert result.decisions[0].reason == "graded important by schema; no rule: private only"


# --- forged and honest claims --------------------------------------------------------------------------

@pytest.mark.parametrize("key, claim, forged", [
    ("govservice.permit_application", "public", True),
    ("govservice.permit_application", "internal", True),
    ("govservice.permit_application", "sensitive", False),
    ("govservice.permit_application", "Restricted", False),  # over-claiming is cautious, not a forgery
    ("health.hospital_admission", "sensitive", True),
    ("police.population_stats", "important", False),
    ("market.licence_granted", "public", False),
    ("market.licence_granted", "internal", False),
    ("market.licence_granted", "openish", True),  # unreadable claims are treated as attempts
    ("market.licence_granted", "core", True),
    ("market.licence_granted", None, False),
    ("market.licence_granted", "", False),
])
def test_a_claim_lower_than_the_schema_grade_is_a_forgery(key: str, claim: str | None, forged: bool) -> None:
    et, payload = sample(key)
    honest = route(et, payload, SHIPPED)
    result = route(et, payload, SHIPPED, claimed_grade=claim)
    assert result.forged is forged
    # The claim never changes the grade or where the event goes.
    assert result.grade is honest.grade
    assert dests(result) == dests(honest)


# --- blocked exports under invalid rules ----------------------------------------------------------------

@pytest.mark.parametrize("key", ["transport.road_closure", "govservice.permit_application", "health.hospital_admission",
                                 "police.population_stats"])
def test_a_rule_that_sends_a_non_public_type_out_is_blocked(key: str) -> None:
    et, payload = sample(key)
    reckless = RuleSet("bad", (Rule("leak", Match(et.dept, et.event), (PUBLIC_CLOUD, ARCHIVE)),))
    result = route(et, payload, reckless)
    assert dests(result) == [f"graded:{et.graded_topic(result.grade)}"]
    assert result.blocked == (
        Blocked("leak", PUBLIC_CLOUD, f"{et.key} is {et.schema_grade.id}: only public events leave"),
        Blocked("leak", ARCHIVE, f"{et.key} is {et.schema_grade.id}: only public events leave"),
    )


def test_a_public_type_with_an_optional_higher_grade_field_leaves_only_when_the_field_is_empty() -> None:
    et, payload = sample("market.inspection_result")
    assert et.record_grade is Grade.PUBLIC and et.schema_grade is Grade.RESTRICTED
    anyone = RuleSet("wide", (Rule("out", Match(et.dept, et.event), (PUBLIC_CLOUD, ARCHIVE)),))
    empty = route(et, payload, anyone)
    assert empty.grade is Grade.PUBLIC and empty.blocked == ()
    assert dests(empty) == _all("public.market.inspection_result")
    named = route(et, {**payload, "inspector_id_number": "310101198503152417"}, anyone)
    assert dests(named) == ["graded:restricted.market.inspection_result"]
    assert named.blocked == (Blocked("out", PUBLIC_CLOUD, "market.inspection_result is restricted: only public events leave"),
                             Blocked("out", ARCHIVE, "market.inspection_result is restricted: only public events leave"))


def test_the_shipped_inspection_rules_export_the_empty_variant_and_keep_the_others_private() -> None:
    et, payload = sample("market.inspection_result")
    complaint = route(et, {**payload, "complainant_phone": "13911112222"}, SHIPPED,
                      pseudonymise=lambda data: b"p:" + data[::-1])
    assert complaint.grade is Grade.SENSITIVE and complaint.rule_id == "inspection-complaints-pseudonymous"
    assert dests(complaint) == sorted(["graded:sensitive.market.inspection_result",
                                       *_all("public.market.inspection_complaints")])
    view = complaint.decisions[1].payload
    assert view["complainant_phone"] == "p:" + "complainant:13911112222"[::-1]
    assert "inspection_id" not in view and "inspector_id_number" not in view
    both = route(et, {**payload, "complainant_phone": "13911112222", "inspector_id_number": "X"}, SHIPPED)
    assert dests(both) == ["graded:restricted.market.inspection_result"] and both.blocked == ()


def _feedback_view(**overrides: Transform) -> View:
    fields = {"feedback_id": Transform("drop"), "topic": Transform("keep"), "district": Transform("keep"),
              "text": Transform("drop"), "contact": Transform("drop"), "submitted_at": Transform("generalise", "month")}
    fields.update(overrides)
    return View("fb", tuple(sorted(fields.items())), (PUBLIC_CLOUD,))


@pytest.mark.parametrize("overrides, grade", [
    ({"text": Transform("keep")}, "sensitive"),
    ({"feedback_id": Transform("keep")}, "internal"),
])
def test_a_view_that_keeps_a_non_public_field_is_blocked_everywhere(overrides: dict[str, Transform], grade: str) -> None:
    et, payload = sample("govservice.citizen_feedback")
    result = route(et, payload, RuleSet("bad", (Rule("r", Match(et.dept, et.event), derive=(_feedback_view(**overrides),)),)))
    assert dests(result) == ["graded:sensitive.govservice.citizen_feedback"]
    assert result.blocked == (Blocked("r", GRADED, f"view fb would be {grade}"), Blocked("r", PUBLIC_CLOUD, f"view fb would be {grade}"))


def test_a_view_that_keeps_a_restricted_field_is_blocked() -> None:
    et, payload = sample("health.hospital_admission")
    view = View("adm", tuple(sorted({f.name: Transform("keep" if f.name == "diagnosis_code" else "drop")
                                     for f in et.fields}.items())), (ARCHIVE,))
    result = route(et, payload, RuleSet("bad", (Rule("r", Match("health"), derive=(view,), approval="A-1"),)))
    assert [d.destination for d in result.decisions] == [GRADED]
    assert {b.destination for b in result.blocked} == {GRADED, ARCHIVE}
    assert all(b.reason == "view adm would be restricted" for b in result.blocked)


def test_a_view_with_a_failing_transform_is_not_produced() -> None:
    et, payload = sample("govservice.citizen_feedback")
    view = _feedback_view(district=Transform("generalise", "district"))
    result = route(et, {**payload, "district": "no district here"}, RuleSet("v", (Rule("r", Match("govservice"), derive=(view,)),)))
    assert dests(result) == ["graded:sensitive.govservice.citizen_feedback"]
    assert result.blocked == (Blocked("r", GRADED, "view fb: address has no recognisable district"),
                              Blocked("r", PUBLIC_CLOUD, "view fb: address has no recognisable district"))
    # The same rule on a real address produces the view.
    ok = route(et, {**payload, "district": "上海市静安区南京西路"}, RuleSet("v", (Rule("r", Match("govservice"), derive=(view,)),)))
    assert [dict(d.payload)["district"] for d in ok.decisions if d.destination == PUBLIC_CLOUD] == ["静安区"]


def test_a_pseudonymised_view_needs_a_key() -> None:
    et, payload = sample("govservice.citizen_feedback")
    view = _feedback_view(contact=Transform("pseudonymise", "contacts"))
    ruleset = RuleSet("v", (Rule("r", Match("govservice"), derive=(view,)),))
    without = route(et, payload, ruleset)
    assert [d.destination for d in without.decisions] == [GRADED]
    assert [b.reason for b in without.blocked] == ["view fb: no pseudonymisation key available"] * 2
    with_key = route(et, payload, ruleset, pseudonymise=lambda data: f"p:{len(data)}")
    out = [dict(d.payload) for d in with_key.decisions if d.destination == PUBLIC_CLOUD]
    assert out == [{"topic": "噪音", "district": "静安区", "submitted_at": "2026-11", "contact": f"p:{len(b'contacts:13987654321')}"}]
    # A null optional field needs no key and stays null.
    assert [dict(d.payload)["contact"] for d in route(et, {**payload, "contact": None}, ruleset).decisions
            if d.destination == PUBLIC_CLOUD] == [None]


def test_view_fields_the_source_lacks_or_that_are_unnamed_never_appear() -> None:
    et, payload = sample("govservice.permit_application")
    view = View("pv", (("ghost", Transform("keep")), ("permit_type", Transform("keep"))), (PUBLIC_CLOUD,))
    result = route(et, payload, RuleSet("v", (Rule("r", Match("govservice"), derive=(view,)),)))
    assert [dict(d.payload) for d in result.decisions if d.destination == PUBLIC_CLOUD] == [{"permit_type": "食品经营许可"}]


# --- rule order, caps, empty set -------------------------------------------------------------------------

def test_the_first_matching_rule_decides_alone() -> None:
    et, payload = sample("transport.bus_arrival", 2)
    first = Rule("first", Match("transport", "bus_arrival"), (ARCHIVE,))
    second = Rule("second", Match("transport"), (PUBLIC_CLOUD,))
    result = route(et, payload, RuleSet("v", (first, second)))
    assert result.rule_id == "first"
    assert dests(result) == ["archive:public.transport.bus_arrival", "graded:public.transport.bus_arrival"]
    swapped = route(et, payload, RuleSet("v", (second, first)))
    assert swapped.rule_id == "second"
    assert dests(swapped) == ["graded:public.transport.bus_arrival", "public_cloud:public.transport.bus_arrival"]


def test_a_grade_cap_lets_a_later_rule_take_events_above_it() -> None:
    et, payload = sample("govservice.citizen_feedback")
    capped = Rule("capped", Match("govservice", grade=Grade.INTERNAL), derive=(_feedback_view(),))
    fallback = Rule("fallback", Match("govservice"))
    result = route(et, payload, RuleSet("v", (capped, fallback)))
    assert result.rule_id == "fallback"
    assert dests(result) == ["graded:sensitive.govservice.citizen_feedback"]
    assert result.decisions[0].reason == "graded sensitive by schema; rule fallback"
    exactly = Rule("exactly", Match("govservice", grade=Grade.SENSITIVE), derive=(_feedback_view(),))
    assert route(et, payload, RuleSet("v", (exactly, fallback))).rule_id == "exactly"


def test_an_empty_rule_set_sends_every_sample_to_its_graded_topic_only() -> None:
    for et in CATALOG:
        _, payload = sample(et.key, et.version)
        result = route(et, payload, RuleSet.empty())
        assert result.rule_id is None and result.blocked == () and result.ruleset_version == "none"
        assert dests(result) == [f"graded:{et.graded_topic(effective_grade(et, payload))}"]


def test_grade_reasons_name_the_fields_that_raise_the_grade() -> None:
    et, payload = sample("govservice.citizen_feedback")
    assert grade_reasons(et, {**payload, "contact": None, "x": 1}) == [
        "record govservice.citizen_feedback is sensitive", "field 'x' is not in the schema: important"]
    et, payload = sample("transport.road_closure")
    assert grade_reasons(et, payload) == ["record transport.road_closure is internal"]
    et, payload = sample("health.hospital_admission")
    assert grade_reasons(et, payload) == ["record health.hospital_admission is restricted"]
    assert grade_reasons(et, "not a record") == ["payload is not a record: treated as the highest grade"]
    pub, payload = sample("market.licence_granted")
    forced = EventType(pub.dept, pub.event, 1, pub.full_name, Grade.PUBLIC,
                       tuple(f if f.name != "district" else type(f)("district", Grade.SENSITIVE, True, "string") for f in pub.fields),
                       pub.schema)
    assert grade_reasons(forced, payload) == ["record market.licence_granted is public", "field 'district' is sensitive"]


def test_a_view_of_a_restricted_record_without_approval_is_not_produced() -> None:
    et, payload = sample("health.hospital_admission")
    fields = tuple(sorted({f.name: Transform("keep" if f.name == "hospital" else "drop") for f in et.fields}.items()))
    view = View("by_hospital", fields, (ARCHIVE,))
    unapproved = route(et, payload, RuleSet("v", (Rule("r", Match("health"), derive=(view,)),)))
    assert [d.destination for d in unapproved.decisions] == [GRADED]
    assert {b.destination for b in unapproved.blocked} == {GRADED, ARCHIVE}
    assert all("needs an approval" in b.reason for b in unapproved.blocked)
    approved = route(et, payload, RuleSet("v", (Rule("r", Match("health"), derive=(view,), approval="REV-1"),)))
    assert [dict(d.payload) for d in approved.decisions if d.destination == ARCHIVE] == [{"hospital": "市第一人民医院"}]
