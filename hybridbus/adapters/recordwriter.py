"""The Avro body of a flat record of primitive fields, written by a plan compiled once per schema: fastavro's bytes.

It writes only a payload of exactly the schema's Python types and answers None for anything else, so the codec
(fastavro, with its typed per-field errors) still decides every payload it does not take.
"""
from __future__ import annotations

import io
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastavro import parse_schema, schemaless_writer

from routing.catalog import EventType

_INT = (-(2**31), 2**31 - 1)
_LONG = (-(2**63), 2**63 - 1)
_ONE_BYTE = [bytes((n,)) for n in range(128)]
_CONTINUED = [0] + [int.from_bytes(b"\x80" * (length - 1) + b"\x00", "little") for length in range(1, 9)]
_ABSENT = object()
_pack_double = struct.Struct("<d").pack

Encoder = Callable[[Any], bytes]


class _Misfit(Exception):
    """A value the plan does not take (out of range, not UTF-8): the codec judges the payload instead."""


def _varint(n: int) -> bytes:
    """Avro's unsigned base-128 varint of a non-negative (already zig-zagged) integer."""
    if n < 0x80:
        return _ONE_BYTE[n]
    if n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    if n < 1 << 56:
        # The 7-bit groups spread to one byte each in three steps rather than a loop per byte: epoch milliseconds
        # take six bytes, and a loop of six rounds is most of what writing such a field costs.
        x = (n & 0xFFFFFFF) | ((n & 0xFFFFFFF0000000) << 4)
        x = (x & 0x00003FFF00003FFF) | ((x & 0x0FFFC0000FFFC000) << 2)
        x = (x & 0x007F007F007F007F) | ((x & 0x3F803F803F803F80) << 1)
        length = (n.bit_length() + 6) // 7
        return (x | _CONTINUED[length]).to_bytes(length, "little")
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _integer(bounds: tuple[int, int]) -> Encoder:
    low, high = bounds

    def encode(value: int) -> bytes:
        if not low <= value <= high:
            raise _Misfit
        return _varint((value << 1) ^ (value >> 63))
    return encode


def _string(value: str) -> bytes:
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: the codec names it
        raise _Misfit from None
    return _varint(len(data) << 1) + data


def _bytes(value: bytes) -> bytes:
    return _varint(len(value) << 1) + value


# Each Avro primitive the plan writes: the one exact Python type it takes, and how. `float` is left to fastavro, whose
# C cast of an out-of-range value differs from struct's refusal; an int or a bool for a double goes to the codec too.
_PRIMITIVES: Mapping[str, tuple[type, Encoder]] = {
    "null": (type(None), lambda _value: b""),
    "boolean": (bool, lambda value: b"\x01" if value else b"\x00"),
    "int": (int, _integer(_INT)),
    "long": (int, _integer(_LONG)),
    "double": (float, _pack_double),
    "string": (str, _string),
    "bytes": (bytes, _bytes),
}


def _with_branch(index: int, encode: Encoder) -> Encoder:
    branch = _varint(index << 1)
    return lambda value: branch + encode(value)


@dataclass(frozen=True)
class _Field:
    name: str
    encoders: Mapping[type, Encoder]  # exact Python type of the value -> its bytes (the union branch included)
    default: bytes | None  # the default's bytes, written for an absent field; None: the field is required


class RecordWriter:
    """Writes `prefix` + the Avro body of one event type's payloads; `write` answers None for a payload it does not
    take, and the caller then asks the codec (which takes or refuses it with a typed error)."""

    __slots__ = ("_fields", "_prefix", "_count")

    def __init__(self, prefix: bytes, fields: tuple[_Field, ...]) -> None:
        self._prefix = prefix
        self._fields = fields
        self._count = len(fields)

    def write(self, payload: Any) -> bytes | None:
        if type(payload) is not dict:
            return None
        parts = [self._prefix]
        append = parts.append
        defaulted = 0
        try:
            for spec in self._fields:
                value = payload.get(spec.name, _ABSENT)
                encode = spec.encoders.get(type(value))
                if encode is not None:
                    append(encode(value))
                elif value is _ABSENT and spec.default is not None:
                    append(spec.default)
                    defaulted += 1
                else:
                    return None
        except _Misfit:
            return None
        # Every key was a field: a payload with a key the schema does not name is the codec's to refuse.
        if len(payload) + defaulted != self._count:
            return None
        return b"".join(parts)


def compile_writer(event_type: EventType, prefix: bytes) -> RecordWriter | None:
    """The writer of one event type, or None when a field's type is beyond it (a record, an enum, a logical type,
    `float`, or a union whose branches take the same Python type, where fastavro's choice of branch decides)."""
    declared = {f["name"]: f for f in event_type.schema.get("fields", ())}
    fields = []
    for spec in event_type.fields:
        branches = spec.avro_type if isinstance(spec.avro_type, list) else [spec.avro_type]
        if not all(isinstance(b, str) and b in _PRIMITIVES for b in branches):
            return None
        kinds = [_PRIMITIVES[b][0] for b in branches]
        if len(set(kinds)) != len(kinds):
            return None
        if isinstance(spec.avro_type, list):
            encoders = {kind: _with_branch(i, _PRIMITIVES[b][1]) for i, (b, kind) in enumerate(zip(branches, kinds))}
        else:
            encoders = {kinds[0]: _PRIMITIVES[branches[0]][1]}
        default = None
        if spec.has_default:
            default = _written_by_fastavro(spec.avro_type, declared[spec.name]["default"])
        fields.append(_Field(spec.name, encoders, default))
    return RecordWriter(prefix, tuple(fields))


def _written_by_fastavro(avro_type: Any, value: Any) -> bytes:
    """A default's bytes as fastavro writes them, worked out once: the plan then copies them."""
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(avro_type), value)
    return out.getvalue()
