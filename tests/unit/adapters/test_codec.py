"""The codec's fast path: a payload of exactly the schema's types goes straight to the writer, and the codec still
accepts and refuses exactly what it did when every payload went through the field-by-field validator first."""
from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer

from hybridbus.adapters.codec import MARKER, AvroCodec
from hybridbus.adapters.exceptions import EncodeError
from hybridbus.adapters.loaders import load_catalog_dir
from routing.catalog import EventType, event_type_from_schema

ROOT = Path(__file__).resolve().parents[3]
CATALOG = load_catalog_dir(ROOT / "schemas" / "avro")
CODEC = AvroCodec.for_catalog(CATALOG)


class Text(str):
    pass


class Number(int):
    pass


# Values a caller may hand in for any field: the writer alone would take several of them for an int or a string
# (a bool, an int out of range, a float, bytes, a lone surrogate); the codec must not.
VALUES: list[Any] = [
    None, True, False, 0, -1, 7, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63 - 1, 2**63, -(2**63) - 1, 1.0, 45.678,
    math.nan, "", "text", "中文", "a\ud800b", "\udcff", b"bytes", bytearray(b"x"), [], {}, Text("sub"), Number(3),
]


def _sample(et: EventType) -> dict[str, Any]:
    return json.loads((ROOT / "schemas" / "samples" / f"{et.key}.v{et.version}.json").read_text(encoding="utf-8"))


def _reference(codec: AvroCodec, et: EventType, payload: Any) -> tuple[Any, ...]:
    """What encode() did before the fast path: validate() every field, then the writer with a schema it re-parses."""
    try:
        problems = codec.validate(et, payload)
        if problems:
            raise EncodeError(problems[0].field, f"{et.key}: {problems[0].reason}")
        out = io.BytesIO()
        out.write(MARKER + codec.fingerprint(et))
        schemaless_writer(out, parse_schema(dict(et.schema), _write_hint=False), dict(payload))
        return ("bytes", out.getvalue())
    except Exception as exc:  # noqa: BLE001 - the type and text of any refusal is part of the behaviour compared
        return ("refused", type(exc), str(exc), getattr(exc, "field", None))


def _outcome(codec: AvroCodec, et: EventType, payload: Any) -> tuple[Any, ...]:
    try:
        return ("bytes", codec.encode(et, payload))
    except Exception as exc:  # noqa: BLE001
        return ("refused", type(exc), str(exc), getattr(exc, "field", None))


def _variants(et: EventType) -> list[Any]:
    base = _sample(et)
    payloads: list[Any] = [base, dict(base), None, [], "text", {**base, "not_a_field": 1}, {**base, 7: "x"}]
    for spec in et.fields:
        payloads.append({k: v for k, v in base.items() if k != spec.name})
        payloads += [{**base, spec.name: value} for value in VALUES]
    return payloads


@pytest.mark.parametrize("et", list(CATALOG), ids=lambda et: f"{et.key}.v{et.version}")
def test_encode_accepts_and_refuses_exactly_as_validate_then_write(et: EventType) -> None:
    for payload in _variants(et):
        assert _outcome(CODEC, et, payload) == _reference(CODEC, et, payload), payload


def test_the_writer_alone_would_take_what_the_codec_refuses() -> None:
    # Why the exact check exists: fastavro's writer writes a bool or any int for an Avro int without a word.
    et = CATALOG.get("transport.bus_arrival")
    for value, reason in [(True, "expected int, got a boolean"), (2**40, "out of range for int"),
                          (12.5, "expected int, got float")]:
        payload = {**_sample(et), "delay_seconds": value}
        schemaless_writer(io.BytesIO(), parse_schema(dict(et.schema)), payload)
        with pytest.raises(EncodeError, match=reason) as refused:
            CODEC.encode(et, payload)
        assert refused.value.field == "delay_seconds"


def test_a_lone_surrogate_refused_by_the_writer_is_reported_as_validate_reports_it() -> None:
    et = CATALOG.get("govservice.citizen_feedback")
    payload = {**_sample(et), "contact": "139\udcff7777", "text": "ok"}
    with pytest.raises(EncodeError) as refused:
        CODEC.encode(et, payload)
    assert refused.value.field == "contact" and "not valid UTF-8 text" in str(refused.value)
    assert "7777" not in str(refused.value)


def test_subclasses_and_other_mappings_take_the_validate_path_and_encode_the_same() -> None:
    et = CATALOG.get("transport.bus_arrival")
    base = _sample(et)
    plain = CODEC.encode(et, base)
    from collections import OrderedDict

    assert CODEC.encode(et, OrderedDict(base)) == plain
    assert CODEC.encode(et, {**base, "route": Text(base["route"])}) == plain
    assert CODEC.encode(et, {**base, "delay_seconds": Number(base["delay_seconds"])}) == plain


def _custom_type(fields: list[dict[str, Any]]) -> EventType:
    schema = {"type": "record", "name": "Custom", "namespace": "hybridbus.transport", "hbus.dept": "transport",
              "hbus.event": "custom", "hbus.version": 1, "grade": "public",
              "fields": [{**f, "grade": "public"} for f in fields]}
    return event_type_from_schema(schema, "test", CATALOG.departments)[0]


CUSTOM = _custom_type([
    {"name": "flag", "type": "boolean"},
    {"name": "ratio", "type": "double"},
    {"name": "blob", "type": "bytes"},
    {"name": "count", "type": ["null", "int", "long"], "default": None},
    {"name": "level", "type": {"type": "enum", "name": "Level", "symbols": ["LOW", "HIGH"]}},
    {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
])
PRIMITIVES = _custom_type([
    {"name": "flag", "type": "boolean"},
    {"name": "ratio", "type": ["null", "float", "double"]},
    {"name": "blob", "type": ["bytes", "string"]},
    {"name": "count", "type": ["int", "long"], "default": 0},
])


@pytest.mark.parametrize("et, base", [
    (CUSTOM, {"flag": True, "ratio": 0.5, "blob": b"\x00\x01", "count": 3, "level": "LOW", "tags": ["a"]}),
    (PRIMITIVES, {"flag": False, "ratio": 1.5, "blob": "text", "count": 2**40}),
], ids=["beyond_the_exact_check", "every_primitive"])
def test_other_avro_types_behave_as_before(et: EventType, base: dict[str, Any]) -> None:
    codec = AvroCodec([et])
    payloads: list[Any] = [base, {**base, "extra": 1}]
    for name in base:
        payloads.append({k: v for k, v in base.items() if k != name})
        payloads += [{**base, name: value} for value in [*VALUES, "LOW", "MEDIUM", ["x"], [1], 1.5]]
    for payload in payloads:
        assert _outcome(codec, et, payload) == _reference(codec, et, payload), payload
    assert codec.decode(codec.encode(et, base)) == (et, base)


def test_validate_of_a_type_the_codec_does_not_know_still_works() -> None:
    # validate() takes any event type; the parsed field schemas it keeps are a cache, not a requirement.
    empty = AvroCodec()
    et = CATALOG.get("govservice.citizen_feedback")
    assert empty.validate(et, _sample(et)) == []
    assert [p.field for p in empty.validate(et, {**_sample(et), "contact": 5})] == ["contact"]


def test_decode_reads_bytes_bytearray_and_memoryview_alike() -> None:
    et = CATALOG.get("health.hospital_admission")
    data = CODEC.encode(et, _sample(et))
    framed = memoryview(b"xx" + data + b"yy")[2:-2]  # a view into a larger buffer, as a consumer may hand over
    assert CODEC.decode(data) == CODEC.decode(bytearray(data)) == CODEC.decode(framed) == (et, _sample(et))
