"""Derived views as event types: fields and grades computed from the transforms, a valid Avro schema,
unnamed fields kept out, nullable fields made optional."""
from __future__ import annotations

from pathlib import Path

import pytest
from fastavro import parse_schema

from hybridbus.adapters.loaders import load_catalog_dir, load_ruleset_dir
from routing.catalog import EventType, FieldSpec
from routing.derive import derive_event_type, unnamed_fields, view_grade, views_of
from routing.grades import HIGHEST, Grade
from routing.rules import Match, Rule, RuleSet, Transform, View

ROOT = Path(__file__).resolve().parents[3]
CATALOG = load_catalog_dir(ROOT / "schemas" / "avro")
SHIPPED = load_ruleset_dir(ROOT / "routing" / "rules")


def _view(name: str, **fields: Transform) -> View:
    return View(name, tuple(sorted(fields.items())), ("public_cloud",))


def _source(*fields: tuple[str, Grade, object], record: Grade = Grade.SENSITIVE, full_name: str = "hybridbus.t.Thing") -> EventType:
    specs = tuple(FieldSpec(n, g, True, t, False, isinstance(t, list) and "null" in t) for n, g, t in fields)
    schema = {"type": "record", "name": full_name.rsplit(".", 1)[-1], "grade": record.id,
              "fields": [{"name": n, "type": t, "grade": g.id} for n, g, t in fields]}
    return EventType("govservice", "thing", 1, full_name, record, specs, schema)


def test_the_shipped_feedback_view_is_a_public_event_type_of_its_own() -> None:
    source = CATALOG.get("govservice.citizen_feedback")
    (view,) = views_of(SHIPPED, source)
    derived = derive_event_type(source, view)
    assert (derived.dept, derived.event, derived.version) == ("govservice", "citizen_feedback_stats", 1)
    assert derived.key == "govservice.citizen_feedback_stats"
    assert derived.full_name == "hybridbus.govservice.views.CitizenFeedbackStats"
    assert derived.field_names() == ("topic", "district", "submitted_at")  # source order, dropped ones gone
    assert [(f.grade, f.avro_type) for f in derived.fields] == [(Grade.PUBLIC, "string")] * 3
    assert derived.record_grade is Grade.PUBLIC and derived.schema_grade is Grade.PUBLIC
    assert derived.graded_topic(Grade.PUBLIC) == "public.govservice.citizen_feedback_stats"
    assert derived.path == ""
    schema = derived.schema
    assert schema["hbus.derived_from"] == "govservice.citizen_feedback" and schema["hbus.event"] == "citizen_feedback_stats"
    assert schema["grade"] == "public" and schema["namespace"] == "hybridbus.govservice.views"
    assert [f["name"] for f in schema["fields"]] == ["topic", "district", "submitted_at"]
    assert parse_schema(dict(schema))["name"] == "hybridbus.govservice.views.CitizenFeedbackStats"
    assert view_grade(source, view) is Grade.PUBLIC


def test_every_shipped_view_has_a_valid_avro_schema_for_every_source_version() -> None:
    count = 0
    for source in CATALOG:
        for view in views_of(SHIPPED, source):
            derived = derive_event_type(source, view)
            parse_schema(dict(derived.schema))
            assert derived.schema_grade is Grade.PUBLIC
            count += 1
    assert count == 3


def test_computed_grades_follow_the_transforms() -> None:
    source = _source(("a", Grade.PUBLIC, "string"), ("b", Grade.INTERNAL, "string"), ("c", Grade.SENSITIVE, "string"),
                     ("d", Grade.RESTRICTED, "string"), ("e", Grade.IMPORTANT, "long"), ("f", Grade.SENSITIVE, "long"))
    view = _view("mixed", a=Transform("keep"), b=Transform("mask"), c=Transform("pseudonymise", "k"),
                 d=Transform("mask"), e=Transform("generalise", "month"), f=Transform("keep"))
    derived = derive_event_type(source, view)
    assert {f.name: f.grade for f in derived.fields} == {"a": Grade.PUBLIC, "b": Grade.PUBLIC, "c": Grade.PUBLIC,
                                                         "d": Grade.RESTRICTED, "e": Grade.IMPORTANT, "f": Grade.SENSITIVE}
    assert derived.record_grade is Grade.IMPORTANT  # the record of a view is the high-water mark of its fields
    assert view_grade(source, view) is Grade.IMPORTANT
    parse_schema(dict(derived.schema))
    assert {f["name"]: f["grade"] for f in derived.schema["fields"]}["d"] == "restricted"


def test_a_view_that_drops_everything_is_an_empty_public_record() -> None:
    source = _source(("a", Grade.SENSITIVE, "string"))
    derived = derive_event_type(source, _view("nothing_left", a=Transform("drop")))
    assert derived.fields == () and derived.record_grade is Grade.PUBLIC
    parse_schema(dict(derived.schema))


def test_unnamed_fields_are_left_out_and_make_the_view_highest() -> None:
    source = CATALOG.get("govservice.permit_application")
    view = _view("partial", permit_type=Transform("keep"), district=Transform("keep"), ghost=Transform("keep"))
    derived = derive_event_type(source, view)
    assert derived.field_names() == ("permit_type", "district")  # neither unnamed nor unknown fields enter
    assert unnamed_fields(source, view) == ["application_id", "applicant_name", "applicant_phone", "submitted_at"]
    assert derived.schema_grade is Grade.PUBLIC
    assert view_grade(source, view) is HIGHEST  # fail closed: the author did not say what to do with them


def test_nullable_fields_stay_optional_with_a_null_default_and_others_are_required() -> None:
    source = _source(("opt", Grade.SENSITIVE, ["null", "string"]), ("req", Grade.SENSITIVE, "string"),
                     ("when", Grade.PUBLIC, ["null", "long"]), ("n", Grade.PUBLIC, "null"))
    view = _view("nullable", opt=Transform("mask"), req=Transform("mask"), when=Transform("keep"), n=Transform("keep"))
    derived = derive_event_type(source, view)
    by_name = {f.name: f for f in derived.fields}
    assert by_name["opt"].avro_type == ["null", "string"] and by_name["opt"].nullable and by_name["opt"].has_default
    assert by_name["req"].avro_type == "string" and not by_name["req"].nullable and not by_name["req"].has_default
    assert by_name["when"].avro_type == ["null", "long"] and by_name["when"].nullable
    assert by_name["n"].avro_type == "null" and not by_name["n"].nullable  # a bare null is not a union
    fields = {f["name"]: f for f in derived.schema["fields"]}
    assert fields["opt"]["default"] is None and fields["when"]["default"] is None
    assert "default" not in fields["req"] and "default" not in fields["n"]
    parse_schema(dict(derived.schema))


@pytest.mark.parametrize("view_name, record_name", [
    ("stats", "Stats"), ("permit_application_stats", "PermitApplicationStats"), ("a__b", "AB"), ("x1_y2", "X1Y2"), ("___", "View"),
])
def test_view_record_names_are_camel_case(view_name: str, record_name: str) -> None:
    derived = derive_event_type(CATALOG.get("market.licence_granted"),
                                View(view_name, tuple((f.name, Transform("keep")) for f in CATALOG.get("market.licence_granted").fields), ()))
    assert derived.schema["name"] == record_name
    assert derived.full_name == f"hybridbus.market.views.{record_name}"


def test_a_source_without_namespace_gets_the_hybridbus_namespace() -> None:
    source = _source(("a", Grade.PUBLIC, "string"), full_name="Bare")
    derived = derive_event_type(source, _view("v", a=Transform("keep")))
    assert derived.full_name == "hybridbus.views.V"
    assert parse_schema(dict(derived.schema))["name"] == "hybridbus.views.V"


def test_two_sources_that_differ_only_in_avro_types_derive_their_own_types() -> None:
    as_long = _source(("a", Grade.PUBLIC, "long"))
    as_string = _source(("a", Grade.PUBLIC, "string"))
    view = _view("v", a=Transform("keep"))
    assert derive_event_type(as_long, view).schema["fields"][0]["type"] == "long"
    assert derive_event_type(as_string, view).schema["fields"][0]["type"] == "string"


def test_views_of_lists_the_views_of_every_rule_that_can_match() -> None:
    v1, v2, v3 = _view("one", a=Transform("keep")), _view("two", a=Transform("keep")), _view("three", a=Transform("keep"))
    ruleset = RuleSet("v", (Rule("r1", Match("govservice", "thing"), derive=(v1,)),
                            Rule("r2", Match("govservice", grade=Grade.PUBLIC), derive=(v2,)),
                            Rule("r3", Match("market"), derive=(v3,))))
    assert views_of(ruleset, _source(("a", Grade.PUBLIC, "string"))) == [v1, v2]
    assert views_of(RuleSet.empty(), _source(("a", Grade.PUBLIC, "string"))) == []
