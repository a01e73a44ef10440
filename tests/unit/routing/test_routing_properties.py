"""Property tests: over random events and random rule sets — including reckless ones the validator would
refuse — no decision ever sends a non-public payload out, and no non-public value ever appears in one."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridbus.adapters.loaders import load_catalog_dir, load_ruleset_dir
from routing.catalog import EventType, effective_grade
from routing.engine import route
from routing.grades import Grade
from routing.rules import DESTINATIONS, Match, Rule, RuleSet, View
from tests.unit.routing.strategies import transforms

ROOT = Path(__file__).resolve().parents[3]
CATALOG = load_catalog_dir(ROOT / "schemas" / "avro")
SHIPPED = load_ruleset_dir(ROOT / "routing" / "rules")
TYPES = list(CATALOG)
MARKER = "秘LEAK"


def _value(avro_type: object, name: str) -> st.SearchStrategy[Any]:
    """A value of the field's type; strings carry the field's name, so one field's value is never another's."""
    if isinstance(avro_type, list):
        return st.one_of(*[_value(t, name) for t in avro_type])
    return {
        "null": st.none(),
        "string": st.text(max_size=12).map(lambda s: f"<{name}>{s}{MARKER}"),
        "long": st.integers(min_value=-(2**40), max_value=2**45),
        "int": st.integers(min_value=-(2**31), max_value=2**31 - 1),
    }.get(str(avro_type), st.none())


@st.composite
def events(draw: st.DrawFn) -> tuple[EventType, dict[str, Any]]:
    event_type = draw(st.sampled_from(TYPES))
    payload = {f.name: draw(_value(f.avro_type, f.name)) for f in event_type.fields}
    if draw(st.booleans()):  # sometimes a field the schema does not know
        payload["extra_" + draw(st.text(alphabet="abc", min_size=1, max_size=3))] = "<extra>" + MARKER
    return event_type, payload




@st.composite
def reckless_rule_sets(draw: st.DrawFn) -> RuleSet:
    """Rules built straight from the model, never validated: they may try to publish anything."""
    rules = []
    for i in range(draw(st.integers(min_value=1, max_value=4))):
        source = draw(st.sampled_from(TYPES))
        names = [f.name for f in source.fields] + draw(st.lists(st.sampled_from(["ghost", "extra_a"]), max_size=1))
        views = tuple(
            View(f"view{i}{j}", tuple(sorted((n, draw(transforms)) for n in names
                                            if draw(st.booleans()))), tuple(draw(st.sets(st.sampled_from(DESTINATIONS)))))
            for j in range(draw(st.integers(min_value=0, max_value=2)))
        )
        match = Match(draw(st.sampled_from([source.dept, "*"])), draw(st.sampled_from([source.event, "*"])),
                      draw(st.one_of(st.none(), st.sampled_from(list(Grade)))))
        rules.append(Rule(f"r{i}", match, tuple(draw(st.sets(st.sampled_from(DESTINATIONS)))), views))
    return RuleSet("reckless", tuple(rules))


def _assert_nothing_non_public_leaves(event_type: EventType, payload: dict[str, Any], ruleset: RuleSet) -> None:
    result = route(event_type, payload, ruleset, claimed_grade="public", pseudonymise=lambda data: "h" + str(hash(data)))
    secret_values = [str(v) for name, v in payload.items() if v is not None and (
        name not in {f.name for f in event_type.fields} or event_type.field(name).grade > Grade.PUBLIC)]
    for decision in result.decisions:
        if decision.destination == "graded":
            continue
        assert effective_grade(decision.event_type, decision.payload) is Grade.PUBLIC
        assert decision.event_type.schema_grade is Grade.PUBLIC
        rendered = repr(dict(decision.payload))
        for value in secret_values:
            if MARKER in value:
                assert value not in rendered


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events())
def test_the_shipped_rules_never_send_a_non_public_payload_out(event: tuple[EventType, dict[str, Any]]) -> None:
    _assert_nothing_non_public_leaves(*event, SHIPPED)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events(), reckless_rule_sets())
def test_even_reckless_rules_never_send_a_non_public_payload_out(event: tuple[EventType, dict[str, Any]], ruleset: RuleSet) -> None:
    _assert_nothing_non_public_leaves(*event, ruleset)
