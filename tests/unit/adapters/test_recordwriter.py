"""The compiled record writer writes fastavro's bytes for every payload it takes and declines the rest."""
from __future__ import annotations

import json
import random

import pytest

from hybridbus.adapters.codec import MARKER, AvroCodec
from hybridbus.adapters.config import REPO_ROOT
from hybridbus.adapters.loaders import load_catalog
from hybridbus.adapters.recordwriter import _varint, compile_writer
from routing.catalog import EventType

CATALOG = load_catalog()
CODEC = AvroCodec.for_catalog(CATALOG)
SAMPLES = REPO_ROOT / "schemas" / "samples"


def writer_of(event_type: EventType):  # type: ignore[no-untyped-def]
    writer = compile_writer(event_type, MARKER + CODEC.fingerprint(event_type))
    assert writer is not None, f"{event_type.key} v{event_type.version} has a field type beyond the writer"
    return writer


def _random_value(avro_type: object, rng: random.Random) -> object:
    branches = avro_type if isinstance(avro_type, list) else [avro_type]
    kind = rng.choice(branches)
    if kind == "null":
        return None
    if kind == "string":
        return "".join(rng.choice("aé中\U0001f600 ") for _ in range(rng.choice([0, 1, 63, 64, 300, 3000])))
    if kind == "int":
        return rng.choice([0, -1, 1, 63, -64, 64, 8191, -8192, 2**31 - 1, -(2**31), rng.randint(-(2**31), 2**31 - 1)])
    if kind == "long":
        return rng.choice([0, -1, 2**63 - 1, -(2**63), 2**55, -(2**56), 1795645480482,
                           rng.randint(-(2**63), 2**63 - 1), rng.randint(-(2**40), 2**40)])
    raise AssertionError(f"no generator for {kind}")


@pytest.mark.parametrize("event_type", list(CATALOG), ids=lambda et: f"{et.key}.v{et.version}")
def test_every_catalog_type_writes_fastavros_bytes_on_generated_payloads(event_type: EventType) -> None:
    writer, rng = writer_of(event_type), random.Random(event_type.key)
    for _ in range(150):
        payload = {f.name: _random_value(f.avro_type, rng) for f in event_type.fields
                   if not (f.has_default and rng.random() < 0.3)}  # an absent defaulted field takes its default
        assert writer.write(payload) == CODEC.encode(event_type, payload)


@pytest.mark.parametrize("sample", sorted(p.stem for p in SAMPLES.glob("*.json")))
def test_every_sample_writes_the_codecs_bytes(sample: str) -> None:
    dept, event, version = sample.split(".")
    event_type = CATALOG.get(f"{dept}.{event}", int(version[1:]))
    payload = json.loads((SAMPLES / f"{sample}.json").read_text(encoding="utf-8"))
    assert writer_of(event_type).write(payload) == CODEC.encode(event_type, payload)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda p: p.update(delay_seconds=2**31), "out of range for int"),
        (lambda p: p.update(arrived_at=2**63), "out of range for long"),
        (lambda p: p.update(delay_seconds=True), "a bool is not an int here"),
        (lambda p: p.update(delay_seconds=1.0), "a float is not an int"),
        (lambda p: p.update(route=b"12"), "bytes for text"),
        (lambda p: p.update(route="\udcff"), "not UTF-8"),
        (lambda p: p.update(extra="x"), "a key the schema does not name"),
        (lambda p: p.pop("route"), "a required field missing"),
    ],
)
def test_what_it_does_not_take_is_left_to_the_codec(change, why: str) -> None:  # type: ignore[no-untyped-def]
    payload = json.loads((SAMPLES / "transport.bus_arrival.v2.json").read_text(encoding="utf-8"))
    change(payload)
    assert writer_of(CATALOG.get("transport.bus_arrival", 2)).write(payload) is None, why


def test_a_mapping_that_is_not_a_dict_is_left_to_the_codec() -> None:
    from types import MappingProxyType

    payload = json.loads((SAMPLES / "transport.bus_arrival.v2.json").read_text(encoding="utf-8"))
    assert writer_of(CATALOG.get("transport.bus_arrival", 2)).write(MappingProxyType(payload)) is None


def test_a_type_beyond_the_writer_has_none() -> None:
    base = CATALOG.get("transport.bus_arrival", 2)
    for avro_type in ("float", ["int", "long"], {"type": "long", "logicalType": "timestamp-millis"}):
        schema = {**base.schema, "fields": [{"name": "x", "type": avro_type}]}
        field = base.fields[0].__class__(name="x", grade=base.fields[0].grade, tagged=True, avro_type=avro_type)
        odd = EventType(base.dept, base.event, 99, base.full_name, base.record_grade, (field,), schema)
        assert compile_writer(odd, MARKER) is None


def test_varint_matches_fastavros_on_every_length() -> None:
    import io

    from fastavro import schemaless_writer

    def fastavros(unsigned: int) -> bytes:  # the long whose zig-zag is `unsigned`, as fastavro writes it
        out = io.BytesIO()
        schemaless_writer(out, "long", (unsigned >> 1) ^ -(unsigned & 1))
        return out.getvalue()

    rng = random.Random(7)
    for n in [0, 127, 128, 16383, 16384, 2**56 - 1, 2**56, 2**64 - 1] + [rng.getrandbits(rng.randint(1, 64))
                                                                      for _ in range(20_000)]:
        assert _varint(n) == fastavros(n)


def test_types_the_catalog_does_not_use_yet_write_fastavros_bytes_too() -> None:
    import io

    from fastavro import parse_schema, schemaless_writer

    base = CATALOG.get("transport.bus_arrival", 2)
    declared = [{"name": "flag", "type": "boolean"}, {"name": "ratio", "type": "double"},
                {"name": "blob", "type": "bytes"}, {"name": "maybe", "type": ["null", "boolean"], "default": None},
                {"name": "either", "type": ["string", "bytes", "double"]}]
    schema = {**base.schema, "fields": declared}
    field = base.fields[0].__class__
    fields = tuple(field(name=d["name"], grade=base.fields[0].grade, tagged=True, avro_type=d["type"],
                         has_default="default" in d) for d in declared)
    writer = compile_writer(EventType(base.dept, base.event, 99, base.full_name, base.record_grade, fields, schema),
                            b"")
    assert writer is not None
    parsed = parse_schema(schema)
    for payload in ({"flag": True, "ratio": 0.1, "blob": b"\x00\xff", "maybe": False, "either": "é"},
                    {"flag": False, "ratio": -1e300, "blob": b"", "either": b"\x01"},
                    {"flag": False, "ratio": float("inf"), "blob": b"x" * 200, "maybe": None, "either": 2.5}):
        out = io.BytesIO()
        schemaless_writer(out, parsed, payload)
        assert writer.write(payload) == out.getvalue()
    assert writer.write({"flag": 1, "ratio": 0.1, "blob": b"", "either": "x"}) is None  # an int is not a boolean
    assert writer.write({"flag": True, "ratio": 1, "blob": b"", "either": "x"}) is None  # nor a double
