"""Derived public views as event types of their own, with grades computed from the transforms.

The router encodes a view with this type, and the boundary guard decodes and re-grades it with the same
type: both get it from the catalog and the rule, never from a record.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache

from routing.catalog import EventType, FieldSpec
from routing.grades import HIGHEST, Grade
from routing.rules import RuleSet, View
from routing.transforms import transformed_grade, transformed_type


def derive_event_type(source: EventType, view: View) -> EventType:
    """The EventType of `view` over `source`; a source field the view does not name is kept out, at HIGHEST."""
    # EventType equality ignores the fields' Avro types, so they are part of the cache key: two sources that
    # differ only there (a schema fixed in place, a test type) must not share a derived schema.
    return _derive(source, view, tuple(json.dumps(f.avro_type, sort_keys=True) for f in source.fields))


@lru_cache(maxsize=256)
def _derive(source: EventType, view: View, _avro_types: tuple[str, ...]) -> EventType:
    fields: list[FieldSpec] = []
    avro_fields = []
    for spec in source.fields:
        transform = view.transform(spec.name)
        if transform is None:
            continue  # unnamed fields never enter a view (the validator reports them)
        grade = transformed_grade(spec.grade, transform)
        if grade is None:
            continue
        avro_type = transformed_type(spec.avro_type, transform)
        nullable = isinstance(avro_type, list) and "null" in avro_type
        fields.append(FieldSpec(spec.name, grade, True, avro_type, nullable, nullable))
        field_schema = {"name": spec.name, "type": avro_type, "grade": grade.id}
        if nullable:
            field_schema["default"] = None
        avro_fields.append(field_schema)
    record_grade = max((f.grade for f in fields), default=Grade.PUBLIC)
    name = "".join(part.capitalize() for part in re.split(r"[_\W]+", view.name) if part) or "View"
    namespace = source.full_name.rsplit(".", 1)[0] if "." in source.full_name else "hybridbus"
    schema = {
        "type": "record",
        "namespace": f"{namespace}.views",
        "name": name,
        "doc": f"Derived public view {view.name} of {source.key} v{source.version}",
        "hbus.dept": source.dept,
        "hbus.event": view.name,
        "hbus.version": source.version,
        "hbus.derived_from": source.key,
        "grade": record_grade.id,
        "fields": avro_fields,
    }
    return EventType(source.dept, view.name, source.version, f"{namespace}.views.{name}", record_grade,
                     tuple(fields), schema, "")


def views_of(ruleset: RuleSet, source: EventType) -> list[View]:
    """The views a rule set derives from `source` (of any rule that can match it)."""
    return [view for rule in ruleset.candidates(source.dept, source.event) for view in rule.derive]


def unnamed_fields(source: EventType, view: View) -> list[str]:
    named = {n for n, _ in view.fields}
    return [f.name for f in source.fields if f.name not in named]


def view_grade(source: EventType, view: View) -> Grade:
    """The highest grade a view of `source` can carry; HIGHEST when it leaves a source field unnamed."""
    if unnamed_fields(source, view):
        return HIGHEST
    return derive_event_type(source, view).schema_grade
