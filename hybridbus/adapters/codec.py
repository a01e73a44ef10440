"""Avro single-object encoding of catalog events (marker C3 01, CRC-64-AVRO fingerprint, binary body).

Any Avro library can decode what this writes; errors name the field and the reason, never a value.
"""
from __future__ import annotations

import io
import struct
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint as avro_fingerprint
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import validate as avro_validate

from hybridbus.adapters.exceptions import DecodeError, EncodeError, UnknownSchemaError
from routing.catalog import Catalog, EventType

MARKER = b"\xc3\x01"
HEADER_SIZE = 10
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


@dataclass(frozen=True)
class FieldProblem:
    field: str
    reason: str


@dataclass(frozen=True)
class _FieldCheck:
    """The exact Python types one field takes: enough to tell a valid payload valid without fastavro's validator."""

    name: str
    types: frozenset[type]
    bounds: tuple[int, int] | None  # int and long: fastavro's writer would write any int, or a bool, without a word
    required: bool


@dataclass(frozen=True)
class _Entry:
    event_type: EventType
    parsed: Any  # parsed with fastavro's hints: its reader and writer then take it as it is, not parse it each call
    prefix: bytes
    int_fields: tuple[str, ...]  # fastavro reads an Avro int as a 64-bit varint: range-checked on decode
    field_schemas: Mapping[str, Any]  # each field's type parsed once, for the field-by-field validate()
    names: frozenset[str]
    checks: tuple[_FieldCheck, ...] | None  # None when a field's type is beyond the exact check: validate() decides
    body_check: Callable[[bytes], bool] | None  # `compile_body_check`'s; None when a field's type is beyond it
    fingerprint: bytes


def header_fingerprint(data: bytes | None) -> bytes | None:
    """The fingerprint a record names in a well-formed single-object header, or None (not one: garbage)."""
    if data is None or len(data) < HEADER_SIZE or data[:2] != MARKER:
        return None
    return bytes(data[2:HEADER_SIZE])


def schema_fingerprint(schema: Mapping[str, Any]) -> bytes:
    """The 8-byte little-endian CRC-64-AVRO fingerprint of the schema's Parsing Canonical Form."""
    canonical = to_parsing_canonical_form(parse_schema(dict(schema), _write_hint=False))
    return int(avro_fingerprint(canonical, "CRC-64-AVRO"), 16).to_bytes(8, "little")


class AvroCodec:
    """Encodes and decodes the events of a catalog; derived views are added at run time with `add`."""

    def __init__(self, event_types: Iterable[EventType] = ()) -> None:
        self._by_fingerprint: dict[bytes, _Entry] = {}
        self._by_type: dict[tuple[str, int], _Entry] = {}
        for event_type in event_types:
            self.add(event_type)

    @classmethod
    def for_catalog(cls, catalog: Catalog) -> AvroCodec:
        return cls(catalog)

    def add(self, event_type: EventType) -> None:
        fp = schema_fingerprint(event_type.schema)
        # A union with a long may hold a long there: only a field that can hold no wider int is range-checked.
        int_fields = tuple(f.name for f in event_type.fields
                           if "int" in _base_types(f.avro_type) and "long" not in _base_types(f.avro_type))
        entry = _Entry(event_type, parse_schema(dict(event_type.schema)), MARKER + fp, int_fields,
                       {f.name: _field_schema(f.avro_type) for f in event_type.fields},
                       frozenset(f.name for f in event_type.fields), _field_checks(event_type),
                       compile_body_check(event_type, int_fields), fp)
        self._by_fingerprint[fp] = entry
        self._by_type[(event_type.key, event_type.version)] = entry

    def _entry(self, event_type: EventType) -> _Entry:
        entry = self._by_type.get((event_type.key, event_type.version))
        if entry is None:
            raise UnknownSchemaError(f"{event_type.key} v{event_type.version} is not known to this codec")
        return entry

    def fingerprints_of(self, keep: Callable[[EventType], bool]) -> frozenset[bytes]:
        """The fingerprints of the known types (catalog and views added) for which `keep` is true."""
        return frozenset(fp for fp, entry in self._by_fingerprint.items() if keep(entry.event_type))

    def knows(self, fingerprint: bytes) -> bool:
        """True when records of this 8-byte fingerprint decode here (a catalog type or a view added)."""
        return fingerprint in self._by_fingerprint

    def knows_type(self, event_type: EventType) -> bool:
        """True when this codec's entry for the type's key and version is this very type object."""
        entry = self._by_type.get((event_type.key, event_type.version))
        return entry is not None and entry.event_type is event_type

    def fingerprint(self, event_type: EventType) -> bytes:
        return self._entry(event_type).fingerprint

    def validate(self, event_type: EventType, payload: Any) -> list[FieldProblem]:
        """Every problem of `payload` against the schema, by field; an empty list means valid."""
        if not isinstance(payload, Mapping):
            return [FieldProblem("", f"payload must be a JSON object, not {type(payload).__name__}")]
        problems = []
        known = {f.name: f for f in event_type.fields}
        entry = self._by_type.get((event_type.key, event_type.version))
        schemas = entry.field_schemas if entry is not None and entry.event_type is event_type else None
        for name in payload:
            if name not in known:
                problems.append(FieldProblem(str(name), "not a field of this event type"))
        for spec in event_type.fields:
            if spec.name not in payload:
                if not spec.has_default:
                    problems.append(FieldProblem(spec.name, "missing"))
                continue
            value = payload[spec.name]
            if isinstance(value, str) and not _valid_utf8(value):
                problems.append(FieldProblem(spec.name, "not valid UTF-8 text"))
                continue
            if isinstance(value, bool) and _base_types(spec.avro_type) & {"int", "long", "float", "double"}:
                problems.append(FieldProblem(spec.name, f"expected {_describe(spec.avro_type)}, got a boolean"))
                continue
            schema = schemas[spec.name] if schemas is not None else _field_schema(spec.avro_type)
            if not avro_validate(value, schema, raise_errors=False):
                if isinstance(value, int) and _base_types(spec.avro_type) & {"int", "long"}:
                    problems.append(FieldProblem(spec.name, f"out of range for {_describe(spec.avro_type)}"))
                    continue
                problems.append(FieldProblem(spec.name, f"expected {_describe(spec.avro_type)}, got {type(value).__name__}"))
        return problems

    def encode(self, event_type: EventType, payload: Mapping[str, Any]) -> bytes:
        """The single-object encoding of `payload`; raises EncodeError naming the first field that does not fit.

        A payload of exactly the schema's types goes straight to the writer; anything else, and anything the
        writer refuses (text that is not UTF-8), is judged by validate(), so both refuse exactly the same.
        """
        entry = self._entry(event_type)
        record = payload if _fits(entry, payload) else self._valid_record(event_type, payload)
        out = io.BytesIO()
        out.write(entry.prefix)
        try:
            schemaless_writer(out, entry.parsed, record)
        except (UnicodeEncodeError, ValueError, TypeError, OverflowError):
            self._valid_record(event_type, payload)  # raises the typed error; its text never carries the value
            raise
        return out.getvalue()

    def _valid_record(self, event_type: EventType, payload: Any) -> dict[str, Any]:
        problems = self.validate(event_type, payload)
        if problems:
            raise EncodeError(problems[0].field, f"{event_type.key}: {problems[0].reason}")
        return dict(payload)

    def decode(self, data: bytes) -> tuple[EventType, dict[str, Any]]:
        return self._decode(data, self._entry_of(data))

    def decode_unless(self, data: bytes, unread: Container[bytes]) -> tuple[EventType, dict[str, Any] | None]:
        """`decode`, but a record whose fingerprint is in `unread` is only checked: (its type, None) when it decodes.

        For a reader that needs a record's type and its validity, not its values. The verdict is decode's: the
        check accepts only what decode accepts, and anything it does not accept is decoded (for the error and its
        reason, or for a record decode takes that the check does not, which then comes with its payload).
        """
        entry = self._entry_of(data)
        if entry.body_check is not None and type(data) is bytes and entry.fingerprint in unread:
            try:
                if entry.body_check(data):
                    return entry.event_type, None
            except (IndexError, UnicodeDecodeError):  # past the end, or text that is not UTF-8: decode says which
                pass
        return self._decode(data, entry)

    def _entry_of(self, data: bytes) -> _Entry:
        if type(data) is bytes and data.startswith(MARKER):  # the usual case, without the copies below
            entry = self._by_fingerprint.get(data[2:HEADER_SIZE])
            if entry is not None:
                return entry
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DecodeError(f"expected bytes, got {type(data).__name__}")
        if len(data) < HEADER_SIZE:
            raise DecodeError("shorter than the 10-byte single-object header")
        if data[:2] != MARKER:
            raise DecodeError("no Avro single-object marker (C3 01)")
        entry = self._by_fingerprint.get(bytes(data[2:HEADER_SIZE]))
        if entry is None:
            raise UnknownSchemaError(f"unknown schema fingerprint {bytes(data[2:HEADER_SIZE]).hex()}")
        return entry

    @staticmethod
    def _decode(data: bytes, entry: _Entry) -> tuple[EventType, dict[str, Any]]:
        body = io.BytesIO(data)  # shares the bytes of a `bytes` value: the body is read where it lies, not copied
        body.seek(HEADER_SIZE)
        try:
            record = schemaless_reader(body, entry.parsed, None)
        except (EOFError, struct.error, UnicodeDecodeError, ValueError, IndexError, OverflowError, MemoryError) as exc:
            raise DecodeError(f"{entry.event_type.key}: body does not decode ({type(exc).__name__})") from None
        if body.tell() != len(data):
            raise DecodeError(f"{entry.event_type.key}: {len(data) - body.tell()} trailing bytes after the record")
        for name in entry.int_fields:
            value = record.get(name)
            if isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
                raise DecodeError(f"{entry.event_type.key}: field {name!r} is out of range for int")
        return entry.event_type, record


# --- the body check: is a record valid, without building it ------------------------------------------------------
#
# A reader that needs only to know that a record decodes (the router, for a type whose routing no value can change)
# runs a function compiled per schema that walks the body as fastavro's reader does: varints, lengths, UTF-8, union
# branches, int ranges, and no byte left over. It returns True only where fastavro's reader (and decode's checks
# around it) would accept the record; False or an IndexError / UnicodeDecodeError leave the verdict to decode. It
# is stricter than the reader at the edges (a varint over 10 bytes, a negative length, a length past the end, a
# negative union branch), which decode then judges. The function is written out as source and compiled, so that
# every field is a few straight lines: the same walk as a loop over the fields costs about twice as much. No text
# of the schema enters that source (field names, docs): only the fields' primitive types, in order.

_CHECKED_TYPES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


def compile_body_check(event_type: EventType, int_fields: Iterable[str] = ()) -> Callable[[bytes], bool] | None:
    """The body check of `event_type` (see above), or None when a field is of a type beyond it (a record, an enum,
    an array, a map, a fixed, a logical type): decode then judges every record of the type."""
    ranged = frozenset(int_fields)
    lines = ["def check(data):", " end = len(data)", f" pos = {HEADER_SIZE}"]
    for spec in event_type.fields:
        branches = spec.avro_type if isinstance(spec.avro_type, list) else [spec.avro_type]
        if not branches or not all(isinstance(b, str) and b in _CHECKED_TYPES for b in branches):
            return None
        if isinstance(spec.avro_type, list):
            lines += _read_varint("branch", " ")
            for index, branch in enumerate(branches):
                lines.append(f" {'if' if index == 0 else 'elif'} branch == {index}:")
                lines += _check_value(branch, spec.name in ranged, "  ")
            lines.append(" else:\n  return False")
        else:
            lines += _check_value(branches[0], spec.name in ranged, " ")
    lines.append(" return pos == end")
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), f"<body check of {event_type.key} v{event_type.version}>", "exec"), namespace)
    return namespace["check"]  # type: ignore[no-any-return]


def _read_varint(name: str, indent: str) -> list[str]:
    # Inline, with one byte (small numbers, short texts) first: a call per value would cost as much as the rest.
    return [f"{indent}byte = data[pos]",
            f"{indent}pos += 1",
            f"{indent}if byte < 0x80:",
            f"{indent} {name} = (byte >> 1) ^ -(byte & 1)",
            f"{indent}else:",
            f"{indent} {name}, shift = byte & 0x7F, 7",
            f"{indent} while byte & 0x80:",
            f"{indent}  if shift > 63:",
            f"{indent}   raise IndexError('varint over 10 bytes')",  # fastavro reads on: decode judges
            f"{indent}  byte = data[pos]",
            f"{indent}  pos += 1",
            f"{indent}  {name} |= (byte & 0x7F) << shift",
            f"{indent}  shift += 7",
            f"{indent} {name} = ({name} >> 1) ^ -({name} & 1)"]


def _check_value(avro_type: str, ranged: bool, indent: str) -> list[str]:
    if avro_type == "null":
        return [f"{indent}pass"]
    if avro_type in ("int", "long"):
        lines = _read_varint("number", indent)
        if ranged:
            lines += [f"{indent}if not {INT_MIN} <= number <= {INT_MAX}:", f"{indent} return False"]
        return lines
    if avro_type in ("boolean", "float", "double"):  # fixed sizes; fastavro takes any byte for a boolean
        size = {"boolean": 1, "float": 4, "double": 8}[avro_type]
        return [f"{indent}pos += {size}", f"{indent}if pos > end:", f"{indent} return False"]
    lines = _read_varint("size", indent) + [f"{indent}if size < 0 or pos + size > end:", f"{indent} return False"]
    if avro_type == "string":
        lines.append(f"{indent}data[pos:pos + size].decode()")  # strict UTF-8, as fastavro's reader
    return lines + [f"{indent}pos += size"]


_ABSENT = object()
_PYTHON_TYPES: Mapping[str, tuple[type, ...]] = {
    "null": (type(None),), "boolean": (bool,), "string": (str,), "bytes": (bytes,), "int": (int,), "long": (int,),
    "float": (float,), "double": (float,),
}
_BOUNDS: Mapping[str, tuple[int, int]] = {"int": (INT_MIN, INT_MAX), "long": (-(2**63), 2**63 - 1)}


def _field_checks(event_type: EventType) -> tuple[_FieldCheck, ...] | None:
    """The exact check of every field, or None when a field has a type it does not cover (a record, an enum, a
    logical type …), which leaves every payload of the type to validate().

    Only exact types are taken (an int subclass, an int for a double, a bytearray go to validate()), so what
    passes here validate() would pass too; UTF-8 is left to the writer, which refuses a lone surrogate.
    """
    checks = []
    for spec in event_type.fields:
        branches = spec.avro_type if isinstance(spec.avro_type, list) else [spec.avro_type]
        if not all(isinstance(b, str) and b in _PYTHON_TYPES for b in branches):
            return None
        bounds = [_BOUNDS[b] for b in branches if b in _BOUNDS]
        checks.append(_FieldCheck(spec.name, frozenset(t for b in branches for t in _PYTHON_TYPES[b]),
                                  (min(lo for lo, _ in bounds), max(hi for _, hi in bounds)) if bounds else None,
                                  not spec.has_default))
    return tuple(checks)


def _fits(entry: _Entry, payload: Any) -> bool:
    """True when `payload` holds the schema's fields only, each of exactly its type and in range."""
    if entry.checks is None or type(payload) is not dict or not payload.keys() <= entry.names:
        return False
    for check in entry.checks:
        value = payload.get(check.name, _ABSENT)
        kind = type(value)
        if kind not in check.types:
            if value is _ABSENT and not check.required:
                continue  # the writer writes the default, as validate() allows
            return False
        if check.bounds is not None and kind is int and not check.bounds[0] <= value <= check.bounds[1]:
            return False
    return True


def _valid_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:  # lone surrogates, e.g. from bytes decoded with surrogateescape
        return False


def _field_schema(avro_type: object) -> Any:
    return parse_schema(avro_type, _write_hint=False) if isinstance(avro_type, (dict, list)) else avro_type


def _base_types(avro_type: object) -> set[str]:
    if isinstance(avro_type, str):
        return {avro_type}
    if isinstance(avro_type, list):
        return {t for t in avro_type if isinstance(t, str)}
    if isinstance(avro_type, dict):
        return {str(avro_type.get("type"))}
    return set()


def _describe(avro_type: object) -> str:
    if isinstance(avro_type, list):
        return " or ".join(_describe(t) for t in avro_type)
    if isinstance(avro_type, dict):
        return str(avro_type.get("logicalType") or avro_type.get("type"))
    return str(avro_type)
