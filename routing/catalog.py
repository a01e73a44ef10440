"""The event catalog: every event type's Avro schema with its data grades, and the effective grade of an event.

Pure: it is handed the `.avsc` files' bytes (read by `hybridbus.adapters.loaders`) and reads nothing itself. Where the grade is decided is `effective_grade` below.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import PurePath
from typing import Any

from ruamel.yaml import YAML

from routing.exceptions import GradeError, SchemaError
from routing.grades import HIGHEST, Grade
from routing.sources import SourceFile

_FILE_NAME = re.compile(r"^(?P<event>[a-z][a-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.avsc$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_AVRO_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Fields graded at or above this are encrypted at the source unless their schema says `"encrypt": false`;
# a field below it is encrypted when its schema says `"encrypt": true`.
ENCRYPT_AT = Grade.RESTRICTED
# The Avro types that can carry the ciphertext envelope (text): a number or a record cannot.
_ENCRYPTABLE = frozenset({"string", "bytes"})


@dataclass(frozen=True)
class FieldSpec:
    """One field of an event type and its grade."""

    name: str
    grade: Grade  # declared grade, or HIGHEST when untagged: an untagged field can never leak
    tagged: bool
    avro_type: object = field(hash=False, compare=False)  # JSON of the schema; may be an unhashable list
    has_default: bool = False
    nullable: bool = False
    # Encrypted by the publishing client before the event leaves the department (envelope encryption): the bus
    # grades it by presence and never sees its value. Decided by `encrypted_by_default` or the field's `encrypt`.
    encrypted: bool = False


@dataclass(frozen=True)
class EventType:
    """One version of one department's event type, as the catalog knows it."""

    dept: str
    event: str
    version: int
    full_name: str
    record_grade: Grade
    fields: tuple[FieldSpec, ...]
    schema: Mapping[str, Any] = field(hash=False, compare=False, repr=False)
    path: str = ""  # the .avsc it came from; "" for derived views

    @property
    def key(self) -> str:
        return f"{self.dept}.{self.event}"

    # The cached properties below depend only on the frozen fields: computed on first use, once per type, since
    # the router and the guard ask for them for every event (cached_property writes the instance's __dict__
    # directly, so the dataclass stays frozen, and equality and hash still see only the fields).

    @cached_property
    def schema_grade(self) -> Grade:
        """Upper bound: the grade of an event of this type that carries every field."""
        return max([self.record_grade, *(f.grade for f in self.fields)])

    @cached_property
    def field_grades(self) -> Mapping[str, Grade]:
        """Each field's grade by name (read-only by convention: shared by every event of the type)."""
        return {f.name: f.grade for f in self.fields}

    @cached_property
    def _graded_topics(self) -> Mapping[Grade, str]:
        return {grade: f"{grade.id}.{self.dept}.{self.event}" for grade in Grade}

    @property
    def encrypted_fields(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if f.encrypted)

    @property
    def ingress_topic(self) -> str:
        return f"ingress.{self.dept}.{self.event}"

    def graded_topic(self, grade: Grade) -> str:
        return self._graded_topics[grade]

    def field(self, name: str) -> FieldSpec:
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


@dataclass(frozen=True)
class Department:
    id: str
    name_zh: str
    name_en: str
    clearance: Grade


def effective_grade(event_type: EventType, payload: Any) -> Grade:
    """The grade of one event: the high-water mark of its record grade and of the fields it carries.

    A field is carried when present and not None. A key the schema does not know, or a payload that
    is not a mapping, makes the event the highest grade (fail closed).
    """
    if type(payload) is not dict and not isinstance(payload, Mapping):  # a dict, as decoded, without the ABC's check
        return HIGHEST
    grades = event_type.field_grades
    result = event_type.record_grade
    for name, value in payload.items():
        if name not in grades:
            return HIGHEST  # even when None: a key the schema does not know is never graded by guess
        if value is not None and grades[name] > result:
            result = grades[name]
    return result


def grade_reasons(event_type: EventType, payload: Any) -> list[str]:
    """Which fields raise the grade above the record's, for people reading `hbus rules explain`."""
    if not isinstance(payload, Mapping):
        return ["payload is not a record: treated as the highest grade"]
    grades = {f.name: f.grade for f in event_type.fields}
    reasons = [f"record {event_type.key} is {event_type.record_grade.id}"]
    for name, value in payload.items():
        if name not in grades:
            reasons.append(f"field {name!r} is not in the schema: {HIGHEST.id}")
        elif value is not None and grades[name] > event_type.record_grade:
            reasons.append(f"field {name!r} is {grades[name].id}")
    return reasons


class Catalog:
    """Every event type of every version, loaded from `schemas/avro/<dept>/<event>.v<N>.avsc`."""

    def __init__(self, event_types: list[EventType], departments: Mapping[str, Department], warnings: tuple[str, ...] = ()):
        self._types: dict[str, dict[int, EventType]] = {}
        for et in event_types:
            self._types.setdefault(et.key, {})[et.version] = et
        self.departments: Mapping[str, Department] = dict(departments)
        self.warnings = warnings

    @classmethod
    def check(cls, schema_files: Sequence[SourceFile], departments_file: SourceFile,
              where: str = "") -> tuple[Catalog | None, list[SchemaError], list[str]]:
        """Every problem of the catalog at once (not only the first), and the warnings.

        `schema_files` are the `<dept>/<event>.v<N>.avsc` files as read by the adapters; `where` names the folder.
        """
        errors: list[SchemaError] = []
        warnings: list[str] = []
        try:
            departments = departments_from_source(departments_file)
        except SchemaError as exc:
            return None, [exc], warnings
        types: list[EventType] = []
        if not schema_files:
            errors.append(SchemaError("no .avsc file found under <dept>/ folders", where))
        for source in sorted(schema_files, key=lambda s: s.path):
            try:
                et, file_warnings = event_type_from_source(source, departments)
                types.append(et)
                warnings.extend(file_warnings)
            except SchemaError as exc:
                errors.append(exc)
        by_key: dict[str, list[EventType]] = {}
        for et in types:
            by_key.setdefault(et.key, []).append(et)
        for versions in by_key.values():
            versions.sort(key=lambda e: e.version)
            for older, newer in zip(versions, versions[1:]):
                errors.extend(compatibility_errors(older, newer))
        if errors:
            return None, errors, warnings
        return cls(types, departments, tuple(warnings)), errors, warnings

    def get(self, key: str, version: int | None = None) -> EventType:
        versions = self._types.get(key)
        if not versions:
            raise SchemaError(f"unknown event type {key!r}")
        if version is None:
            return versions[max(versions)]
        try:
            return versions[version]
        except KeyError:
            raise SchemaError(f"event type {key!r} has no version {version} (known: {sorted(versions)})") from None

    def __contains__(self, key: object) -> bool:
        return key in self._types

    def latest(self) -> list[EventType]:
        return [versions[max(versions)] for _, versions in sorted(self._types.items())]

    def versions(self, key: str) -> list[EventType]:
        return [v for _, v in sorted(self._types.get(key, {}).items())]

    def __iter__(self) -> Iterator[EventType]:
        for key in sorted(self._types):
            yield from self.versions(key)

    def __len__(self) -> int:
        return sum(len(v) for v in self._types.values())

    @cached_property
    def digest(self) -> str:
        """sha256 of every schema and department clearance: two guards with the same digest grade alike (the
        quarantine stamps it, so a release can tell whether the catalog changed since)."""
        body = {"types": [dict(et.schema) for et in self],
                "departments": {d.id: d.clearance.id for d in self.departments.values()}}
        return hashlib.sha256(json.dumps(body, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def departments_from_source(source: SourceFile) -> dict[str, Department]:
    path = source.path
    if source.data is None:
        raise SchemaError("departments file not found", path)
    try:
        data = YAML(typ="safe").load(source.data.decode("utf-8"))
    except Exception as exc:  # noqa: BLE001 - any YAML error is reported with its text
        raise SchemaError(f"not valid YAML: {exc}", str(path)) from None
    if data is not None and not isinstance(data, dict):
        raise SchemaError("must be a mapping with a 'departments' list", str(path))
    result: dict[str, Department] = {}
    for entry in (data or {}).get("departments", []):
        try:
            dept = Department(str(entry["id"]), str(entry["name_zh"]), str(entry["name_en"]), Grade.parse(entry["clearance"]))
        except (KeyError, TypeError) as exc:
            raise SchemaError(f"department entry misses {exc}", str(path)) from None
        except GradeError as exc:
            raise SchemaError(f"department {entry.get('id')!r}: {exc}", str(path)) from None
        if not _NAME.match(dept.id):
            raise SchemaError(f"department id {dept.id!r} must be lower-case letters, digits and _", str(path))
        result[dept.id] = dept
    if not result:
        raise SchemaError("no department defined", str(path))
    return result


def event_type_from_source(source: SourceFile, departments: Mapping[str, Department]) -> tuple[EventType, list[str]]:
    """One `.avsc` file as an EventType, with the warnings it raises (untagged fields)."""
    where = source.path
    path = PurePath(source.path)
    match = _FILE_NAME.match(path.name)
    if not match:
        raise SchemaError("file name must be <event>.v<N>.avsc (lower-case event name)", where)
    if source.data is None:
        raise SchemaError("file not found", where)
    try:
        schema = json.loads(source.data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SchemaError(f"not valid JSON: {exc}", where) from None
    return event_type_from_schema(schema, where, departments, expected=(path.parent.name, match["event"], int(match["version"])))


def event_type_from_schema(
    schema: Any, where: str, departments: Mapping[str, Department], expected: tuple[str, str, int] | None = None
) -> tuple[EventType, list[str]]:
    """Check one parsed schema and turn it into an EventType; SchemaError names what is wrong."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise SchemaError("an event schema must be an Avro record", where)
    _check_avro(schema, where)
    # fastavro lets these through; the Avro spec (and the Apache library) refuse them, and a second field of
    # the same name would let one grade shadow the other.
    if not isinstance(schema.get("fields"), list):
        raise SchemaError("not a valid Avro schema: a record needs a list of fields", where)
    seen: set[str] = set()
    for raw in schema["fields"]:
        if not isinstance(raw["name"], str) or not _AVRO_NAME.match(raw["name"]):
            raise SchemaError(f"not a valid Avro schema: field name {raw['name']!r} must match [A-Za-z_][A-Za-z0-9_]*", where)
        if raw["name"] in seen:
            raise SchemaError(f"field {raw['name']!r} is defined more than once", where)
        seen.add(raw["name"])
    dept, event, version = schema.get("hbus.dept"), schema.get("hbus.event"), schema.get("hbus.version")
    if not isinstance(dept, str) or dept not in departments:
        raise SchemaError(f"hbus.dept {dept!r} is not a known department ({', '.join(sorted(departments))})", where)
    if not isinstance(event, str) or not _NAME.match(event):
        raise SchemaError(f"hbus.event {event!r} must be lower-case letters, digits and _", where)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SchemaError(f"hbus.version {version!r} must be a positive integer", where)
    if expected and (dept, event, version) != expected:
        raise SchemaError(
            f"schema says {dept}/{event}.v{version} but the file is {expected[0]}/{expected[1]}.v{expected[2]}", where
        )
    if "grade" not in schema:
        raise SchemaError("the record has no grade", where)
    try:
        record_grade = Grade.parse(schema["grade"])
    except GradeError as exc:
        raise SchemaError(f"record grade: {exc}", where) from None
    warnings: list[str] = []
    fields = []
    for raw in schema.get("fields", []):
        name = raw.get("name")
        if "grade" in raw:
            try:
                grade, tagged = Grade.parse(raw["grade"]), True
            except GradeError as exc:
                raise SchemaError(f"field {name!r}: {exc}", where) from None
        else:
            grade, tagged = HIGHEST, False
            warnings.append(f"{where}: field {name!r} has no grade: treated as {HIGHEST.id}")
        avro_type = raw.get("type")
        nullable = avro_type == "null" or (isinstance(avro_type, list) and "null" in avro_type)
        encrypted = _encrypted(raw, grade, tagged, avro_type, where)
        fields.append(FieldSpec(name, grade, tagged, avro_type, "default" in raw, nullable, encrypted))
    namespace = schema.get("namespace")
    full_name = f"{namespace}.{schema['name']}" if namespace else schema["name"]
    return EventType(dept, event, version, full_name, record_grade, tuple(fields), schema, where), warnings


def encrypted_by_default(grade: Grade) -> bool:
    return grade >= ENCRYPT_AT


def _encrypted(raw: Mapping[str, Any], grade: Grade, tagged: bool, avro_type: object, where: str) -> bool:
    """Whether a field is encrypted at the source; SchemaError when it must be but its type cannot carry ciphertext."""
    name = raw.get("name")
    choice = raw.get("encrypt")
    if choice is not None and not isinstance(choice, bool):
        raise SchemaError(f"field {name!r}: encrypt must be true or false, not {choice!r}", where)
    kinds = [avro_type] if not isinstance(avro_type, list) else [t for t in avro_type if t != "null"]
    encryptable = bool(kinds) and all(isinstance(k, str) and k in _ENCRYPTABLE for k in kinds)
    if choice is None and not tagged:
        # Untagged is already the highest grade with a warning: encrypted where its type allows (fail closed),
        # never a refused catalog for a field its author has not graded yet.
        return encryptable
    encrypted = encrypted_by_default(grade) if choice is None else choice
    if encrypted:
        if not encryptable:
            shown = json.dumps(avro_type, ensure_ascii=False)
            raise SchemaError(
                f"field {name!r} is {grade.id} and encrypted at the source, but its type {shown} cannot carry "
                "ciphertext: make it a string or bytes (optionally nullable), or say \"encrypt\": false with a reason "
                "in its doc", where)
    return encrypted


def _check_avro(schema: dict[str, Any], where: str) -> None:
    from fastavro import parse_schema
    from fastavro.schema import SchemaParseException, UnknownType

    try:
        parse_schema(schema, _write_hint=False)
    except UnknownType as exc:  # its text is the bare type name, which reads like no reason at all
        raise SchemaError(f"not a valid Avro schema: unknown type {exc.name!r}", where) from None
    except (SchemaParseException, ValueError, TypeError, KeyError) as exc:
        raise SchemaError(f"not a valid Avro schema: {exc}", where) from None


def compatibility_errors(older: EventType, newer: EventType) -> list[SchemaError]:
    """Every way `newer` breaks `older`: a reader of `newer` must read `older` data (backward compatible), and
    no field a reader of `older` needs without a default may disappear."""
    errors = []
    old = {f.name: f for f in older.fields}
    for spec in newer.fields:
        if spec.name not in old and not spec.has_default:
            errors.append(SchemaError(
                f"field {spec.name!r} is new in v{newer.version} and has no default: v{older.version} data cannot be read",
                newer.path))
        elif spec.name in old and json.dumps(old[spec.name].avro_type, sort_keys=True) != json.dumps(spec.avro_type, sort_keys=True):
            errors.append(SchemaError(
                f"field {spec.name!r} changed type between v{older.version} and v{newer.version}", newer.path))
    # Readers still on the older version must also read newer data: a field they expect may only go if they
    # can fill it from its default (consumers of a department upgrade at their own pace).
    kept = {f.name for f in newer.fields}
    for spec in older.fields:
        if spec.name not in kept and not spec.has_default:
            errors.append(SchemaError(
                f"field {spec.name!r} of v{older.version} is removed in v{newer.version} but has no default in "
                f"v{older.version}: readers still on v{older.version} cannot read v{newer.version} data", newer.path))
    if older.full_name != newer.full_name:
        errors.append(SchemaError(f"record name changed from {older.full_name} to {newer.full_name}", newer.path))
    return errors
