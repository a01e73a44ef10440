"""Avro single-object encoding of catalog events (marker C3 01, CRC-64-AVRO fingerprint, binary body).

Any Avro library can decode what this writes; errors name the field and the reason, never a value.
"""
from __future__ import annotations

import io
import struct
from collections.abc import Iterable, Mapping
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
class _Entry:
    event_type: EventType
    parsed: Any
    prefix: bytes
    int_fields: tuple[str, ...] = ()  # fastavro reads an Avro int as a 64-bit varint: range-checked on decode


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
        int_fields = tuple(f.name for f in event_type.fields if "int" in _base_types(f.avro_type))
        entry = _Entry(event_type, parse_schema(dict(event_type.schema), _write_hint=False), MARKER + fp, int_fields)
        self._by_fingerprint[fp] = entry
        self._by_type[(event_type.key, event_type.version)] = entry

    def _entry(self, event_type: EventType) -> _Entry:
        entry = self._by_type.get((event_type.key, event_type.version))
        if entry is None:
            raise UnknownSchemaError(f"{event_type.key} v{event_type.version} is not known to this codec")
        return entry

    def fingerprint(self, event_type: EventType) -> bytes:
        return self._entry(event_type).prefix[2:]

    def validate(self, event_type: EventType, payload: Any) -> list[FieldProblem]:
        """Every problem of `payload` against the schema, by field; an empty list means valid."""
        if not isinstance(payload, Mapping):
            return [FieldProblem("", f"payload must be a JSON object, not {type(payload).__name__}")]
        problems = []
        known = {f.name: f for f in event_type.fields}
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
            if not avro_validate(value, _field_schema(spec.avro_type), raise_errors=False):
                if isinstance(value, int) and _base_types(spec.avro_type) & {"int", "long"}:
                    problems.append(FieldProblem(spec.name, f"out of range for {_describe(spec.avro_type)}"))
                    continue
                problems.append(FieldProblem(spec.name, f"expected {_describe(spec.avro_type)}, got {type(value).__name__}"))
        return problems

    def encode(self, event_type: EventType, payload: Mapping[str, Any]) -> bytes:
        entry = self._entry(event_type)
        problems = self.validate(event_type, payload)
        if problems:
            raise EncodeError(problems[0].field, f"{event_type.key}: {problems[0].reason}")
        out = io.BytesIO()
        out.write(entry.prefix)
        schemaless_writer(out, entry.parsed, dict(payload))
        return out.getvalue()

    def decode(self, data: bytes) -> tuple[EventType, dict[str, Any]]:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DecodeError(f"expected bytes, got {type(data).__name__}")
        if len(data) < HEADER_SIZE:
            raise DecodeError("shorter than the 10-byte single-object header")
        if data[:2] != MARKER:
            raise DecodeError("no Avro single-object marker (C3 01)")
        entry = self._by_fingerprint.get(bytes(data[2:HEADER_SIZE]))
        if entry is None:
            raise UnknownSchemaError(f"unknown schema fingerprint {bytes(data[2:HEADER_SIZE]).hex()}")
        body = io.BytesIO(data[HEADER_SIZE:])
        try:
            record = schemaless_reader(body, entry.parsed, None)
        except (EOFError, struct.error, UnicodeDecodeError, ValueError, IndexError, OverflowError, MemoryError) as exc:
            raise DecodeError(f"{entry.event_type.key}: body does not decode ({type(exc).__name__})") from None
        if body.tell() != len(data) - HEADER_SIZE:
            raise DecodeError(f"{entry.event_type.key}: {len(data) - HEADER_SIZE - body.tell()} trailing bytes after the record")
        for name in entry.int_fields:
            value = record.get(name)
            if isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
                raise DecodeError(f"{entry.event_type.key}: field {name!r} is out of range for int")
        return entry.event_type, record


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
