"""Property tests of the routing core (hypothesis): over random events of every catalog type, under the shipped
rules and under random rule sets built straight from the model (including reckless ones the validator
refuses), nothing above `public` ever leaves, and no value of a non-public field appears in what leaves."""
from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.validation import validate as avro_valid
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridbus.adapters.loaders import load_catalog_dir, load_ruleset_dir
from routing.boundary import check_export
from routing.catalog import EventType, effective_grade
from routing.engine import GRADED, RoutingResult, route
from routing.grades import Grade
from routing.rules import ARCHIVE, DESTINATIONS, GENERALISE_KINDS, PUBLIC_CLOUD, Match, Rule, RuleSet, Transform, View
from routing.validator import validate

ROOT = Path(__file__).resolve().parents[3]
CATALOG = load_catalog_dir(ROOT / "schemas" / "avro")
SHIPPED = load_ruleset_dir(ROOT / "routing" / "rules")
TYPES = list(CATALOG)
OUT = (PUBLIC_CLOUD, ARCHIVE)
KEY = b"property-test-key"
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Public values are lower-case, digits and CJK: they can never spell a marker (upper-case QZX…).
PUBLIC_TEXT = st.text(alphabet="abcdefg0123456789-: 上海市浦东新区静安县旗", max_size=16)
# Text around a marker: addresses, ISO dates and district suffixes, so that every transform gets a chance to leak it.
AROUND = st.sampled_from(["", "上海市", "浦东新区", "区", "2026-11-20", "2026-11-20T08:00:00Z", "王小明", "138", " "])


def _marker(index: int) -> str:
    return f"QZX{index}LEAK"  # longer than the four characters `mask` keeps


def pseudonymise(data: bytes) -> str:
    return hmac.new(KEY, data, hashlib.sha256).hexdigest()


def _value(avro_type: object, secret: bool, index: int) -> st.SearchStrategy[Any]:
    if isinstance(avro_type, list):
        return st.one_of(*[_value(t, secret, index) for t in avro_type])
    if avro_type == "null":
        return st.none()
    if avro_type == "string":
        if secret:
            return st.tuples(AROUND, AROUND).map(lambda a: f"{a[0]}{_marker(index)}{a[1]}")
        return st.one_of(PUBLIC_TEXT, st.sampled_from(["2026-11-20", "上海市浦东新区张江路1号"]))
    if avro_type in ("long", "int"):
        bound = 2**31 - 1 if avro_type == "int" else 2**45
        if secret:  # large enough that its digits would be recognisable in the output
            return st.integers(min_value=1_000_000, max_value=bound)
        return st.integers(min_value=-(2**31), max_value=bound)
    return st.none()


@st.composite
def events(draw: st.DrawFn, complete: bool = False) -> tuple[EventType, dict[str, Any], dict[str, str]]:
    """An event of a random catalog type, and the markers and digits planted in its non-public fields."""
    event_type = draw(st.sampled_from(TYPES))
    payload: dict[str, Any] = {}
    secrets: dict[str, str] = {}
    for index, spec in enumerate(event_type.fields):
        if not complete and draw(st.integers(0, 9)) == 0:
            continue  # a missing field
        secret = spec.grade > Grade.PUBLIC
        value = draw(_value(spec.avro_type, secret, index))
        payload[spec.name] = value
        if secret and isinstance(value, str):
            secrets[spec.name] = _marker(index)
        elif secret and isinstance(value, int):
            secrets[spec.name] = str(value)[:-1]  # all but the last digit: an age band of it would show them
    if not complete and draw(st.integers(0, 5)) == 0:
        payload["unknown_field"] = _marker(99)
        secrets["unknown_field"] = _marker(99)
    return event_type, payload, secrets


def _check(result: RoutingResult, event_type: EventType, payload: dict[str, Any], secrets: dict[str, str]) -> None:
    assert result.grade is effective_grade(event_type, payload)
    source = result.decisions[0]
    assert (source.destination, source.topic, source.payload) == (GRADED, event_type.graded_topic(result.grade), payload)
    wanted: dict[str, set[str]] = {}
    for decision in result.decisions:
        wanted.setdefault(decision.topic, set()).add(decision.destination)
    for decision in result.decisions:
        if decision.destination not in OUT and decision is source:
            continue
        # Everything but the graded copy is public: a view by its own type, the record itself by the fields it
        # carries (its type may define fields above public: they are empty whenever it leaves).
        assert decision.grade is Grade.PUBLIC
        assert effective_grade(decision.event_type, decision.payload) is Grade.PUBLIC
        if decision.event_type is event_type:
            assert all(decision.payload.get(f.name) is None for f in event_type.fields if f.grade > Grade.PUBLIC)
        else:
            assert decision.event_type.schema_grade is Grade.PUBLIC
        text = json.dumps(dict(decision.payload), ensure_ascii=False, default=str)
        for name, secret in secrets.items():
            assert secret not in text, f"{name} leaked into {decision.topic}: {text}"
        if decision.destination in OUT:
            # The boundary guard, which shares nothing with the engine but the catalog and the grade function, agrees.
            verdict = check_export(decision.event_type, decision.payload, decision.topic, ",".join(wanted[decision.topic]),
                                   decision.destination)
            assert verdict.allowed, verdict.reason


@SETTINGS
@given(events(), st.sampled_from([None, "public", "internal", "sensitive", "restricted", "important", "core", "junk"]),
       st.booleans())
def test_shipped_rules_never_send_anything_non_public_out(event: tuple[EventType, dict[str, Any], dict[str, str]],
                                                          claim: str | None, with_key: bool) -> None:
    event_type, payload, secrets = event
    result = route(event_type, payload, SHIPPED, claimed_grade=claim, pseudonymise=pseudonymise if with_key else None)
    _check(result, event_type, payload, secrets)
    if claim in ("core", "junk"):
        assert result.forged
    elif claim is not None:
        assert result.forged is (Grade.parse(claim) < result.grade)


@SETTINGS
@given(events(complete=True))
def test_shipped_views_of_complete_events_fit_their_avro_schema(event: tuple[EventType, dict[str, Any], dict[str, str]]) -> None:
    event_type, payload, _ = event
    result = route(event_type, payload, SHIPPED, pseudonymise=pseudonymise)
    for decision in result.decisions[1:]:
        schema = parse_schema(dict(decision.event_type.schema))
        assert avro_valid(dict(decision.payload), schema, raise_errors=False)


LOADABLE_TRANSFORMS = st.one_of(
    st.sampled_from([Transform("keep"), Transform("drop"), Transform("mask"), Transform("pseudonymise", "default"),
                     Transform("pseudonymise", "ctx")]),
    st.sampled_from(GENERALISE_KINDS).map(lambda kind: Transform("generalise", kind)),
)
# Also transforms the loader refuses, as a rule built in code could carry them.
TRANSFORMS = st.one_of(LOADABLE_TRANSFORMS, st.sampled_from([Transform("encrypt"), Transform("generalise", "week")]))
DEPTS = sorted({et.dept for et in TYPES})
EVENTS = sorted({et.event for et in TYPES})


@st.composite
def matches(draw: st.DrawFn, focus: EventType | None = None) -> Match:
    depts = ["*", *DEPTS] + ([focus.dept] * 4 if focus else [])
    names = ["*", *EVENTS] + ([focus.event] * 4 if focus else [])
    return Match(draw(st.sampled_from(depts)), draw(st.sampled_from(names)),
                 draw(st.one_of(st.none(), st.sampled_from(list(Grade)))))


@st.composite
def views(draw: st.DrawFn, index: int, transforms: st.SearchStrategy[Transform] = TRANSFORMS,
          focus: EventType | None = None) -> View:
    source = focus if focus is not None and draw(st.booleans()) else draw(st.sampled_from(TYPES))
    names = [f.name for f in source.fields if draw(st.integers(0, 5)) > 0]  # sometimes leave a field unnamed
    names += draw(st.lists(st.sampled_from(["ghost", "unknown_field"]), max_size=1))
    fields = tuple(sorted({n: draw(transforms) for n in names}.items()))
    if not fields:
        fields = (("ghost", Transform("keep")),)
    return View(f"view{index}", fields, tuple(draw(st.sets(st.sampled_from(DESTINATIONS)))))


@st.composite
def reckless_rule_sets(draw: st.DrawFn, transforms: st.SearchStrategy[Transform] = TRANSFORMS,
                       focus: EventType | None = None) -> RuleSet:
    """Rules straight from the model, never validated: they may try to publish anything, anyhow. With a `focus`
    type, most rules and views are aimed at it, so that the reckless ones get to act on its events."""
    rules = []
    for i in range(draw(st.integers(min_value=0, max_value=4))):
        derive = tuple(draw(views(i * 10 + j, transforms, focus)) for j in range(draw(st.integers(0, 2))))
        rules.append(Rule(f"r{i}", draw(matches(focus)), tuple(draw(st.sets(st.sampled_from(DESTINATIONS)))), derive,
                          draw(st.one_of(st.none(), st.just("APPROVED")))))
    return RuleSet("random", tuple(rules))


@SETTINGS
@given(st.data(), st.booleans())
def test_random_rule_sets_never_send_anything_non_public_out(data: st.DataObject, with_key: bool) -> None:
    event_type, payload, secrets = data.draw(events())
    ruleset = data.draw(reckless_rule_sets(focus=event_type))
    result = route(event_type, payload, ruleset, pseudonymise=pseudonymise if with_key else None)
    _check(result, event_type, payload, secrets)
    expected_rule = ruleset.first_match(event_type.dept, event_type.event, result.grade)
    assert result.rule_id == (expected_rule.id if expected_rule else None)


LOWERING = [Transform("mask"), Transform("pseudonymise", "k"), *(Transform("generalise", k) for k in GENERALISE_KINDS)]


@SETTINGS
@given(st.data())
def test_every_lowering_transform_of_every_non_public_field_keeps_its_value_in(data: st.DataObject) -> None:
    """The narrowest view: one non-public field of the event's type, lowered, beside every public field kept."""
    event_type, payload, secrets = data.draw(events())
    fields = {f.name: (Transform("keep") if f.grade is Grade.PUBLIC else Transform("drop")) for f in event_type.fields}
    secret_fields = sorted(name for name, t in fields.items() if t.kind == "drop")
    if secret_fields:
        fields[data.draw(st.sampled_from(secret_fields))] = data.draw(st.sampled_from(LOWERING))
    view = View("narrow", tuple(sorted(fields.items())), DESTINATIONS)
    result = route(event_type, payload, RuleSet("v", (Rule("r", Match(), derive=(view,)),)), pseudonymise=pseudonymise)
    _check(result, event_type, payload, secrets)


@SETTINGS
@given(events(), st.sampled_from(TYPES))
def test_a_rule_that_publishes_whole_events_lets_only_public_events_out(
        event: tuple[EventType, dict[str, Any], dict[str, str]], _: EventType) -> None:
    event_type, payload, secrets = event
    result = route(event_type, payload, RuleSet("all-out", (Rule("all", Match(), DESTINATIONS),)))
    _check(result, event_type, payload, secrets)
    exported = {d.destination for d in result.decisions if d.destination in OUT}
    if result.grade is Grade.PUBLIC:  # whatever fields above public its type defines, it carries none
        assert exported == set(OUT) and result.blocked == ()
    else:
        assert exported == set() and {b.destination for b in result.blocked} == set(OUT)


@settings(max_examples=200, deadline=None)
@given(reckless_rule_sets())
def test_rule_sets_that_the_validator_accepts_have_only_public_views(ruleset: RuleSet) -> None:
    report = validate(ruleset, CATALOG)
    if not report.ok:
        return
    for rule in ruleset.rules:
        # A rule that exports matches only public events: all-public types, or others under a cap of public.
        assert not rule.to or all((et.schema_grade if rule.match.grade is None
                                   else min(et.schema_grade, rule.match.grade)) is Grade.PUBLIC
                                  for et in CATALOG
                                  if rule.match.dept in ("*", et.dept) and rule.match.event in ("*", et.event)
                                  and (rule.match.grade is None or et.record_grade <= rule.match.grade))


@settings(max_examples=200, deadline=None)
@given(reckless_rule_sets(LOADABLE_TRANSFORMS))
def test_rule_sets_round_trip_through_json(ruleset: RuleSet) -> None:
    again = RuleSet.from_json(ruleset.to_json())
    assert again == ruleset and again.digest == ruleset.digest
