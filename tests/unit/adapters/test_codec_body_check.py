"""The body check (`AvroCodec.decode_unless`): a record only checked gets decode's verdict, with decode's reason
when it is refused, on every sample, the hostile corpus, damaged records and every primitive Avro type."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from hybridbus.adapters.codec import MARKER, AvroCodec, compile_body_check
from hybridbus.adapters.exceptions import DecodeError, UnknownSchemaError
from hybridbus.adapters.loaders import load_catalog_dir
from routing.catalog import EventType
from tests.unit.adapters.test_codec import _custom_type
from tests.unit.runtime.inputs import hostile_records, sample_records

ROOT = Path(__file__).resolve().parents[3]
CATALOG = load_catalog_dir(ROOT / "schemas" / "avro")


def _verdict(codec: AvroCodec, data: Any, unread: frozenset[bytes]) -> tuple[Any, ...]:
    """(ok, type, payload or None) or (error class, reason)."""
    try:
        event_type, payload = codec.decode_unless(data, unread) if unread else codec.decode(data)
    except (DecodeError, UnknownSchemaError) as exc:
        return type(exc).__name__, exc.reason
    except Exception as exc:  # noqa: BLE001 - whatever escapes decode must escape the check alike
        return "escaped", type(exc).__name__
    return "ok", event_type, payload


def _same_verdict(codec: AvroCodec, data: Any) -> bool:
    """True when the check took the record (payload None) and decode takes it too; asserts the verdicts agree."""
    every = frozenset(codec.fingerprint(et) for et in _types(codec))
    checked, decoded = _verdict(codec, data, every), _verdict(codec, data, frozenset())
    if checked[0] == "ok" and checked[2] is None:
        assert decoded[0] == "ok" and decoded[1] is checked[1], data
        return True
    assert checked == decoded, data
    return False


def _types(codec: AvroCodec) -> list[EventType]:
    return [entry.event_type for entry in codec._by_fingerprint.values()]  # noqa: SLF001 - the test's own codec


def _damaged(records: list[bytes], count: int, seed: int) -> list[bytes]:
    """Records with bytes changed, cut off, added or inserted: mostly refused, some still valid."""
    rnd = random.Random(seed)
    out = []
    for _ in range(count):
        data = bytearray(rnd.choice(records))
        for _ in range(rnd.randint(1, 3)):
            where = rnd.randrange(10, len(data) + 1)
            change = rnd.random()
            if change < 0.5 and where < len(data):
                data[where] = rnd.randrange(256)
            elif change < 0.7:
                del data[where:]
            elif change < 0.85:
                data += bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 3)))
            else:
                data.insert(where, rnd.randrange(256))
        out.append(bytes(data))
    return out


def test_every_catalog_type_is_checked_and_its_samples_pass_without_a_payload() -> None:
    codec = AvroCodec.for_catalog(CATALOG)
    assert all(codec._by_type[(et.key, et.version)].body_check is not None for et in CATALOG)  # noqa: SLF001
    records = [value for _, _, _, value, _ in sample_records(CATALOG, codec)]
    assert records and all(_same_verdict(codec, value) for value in records)


def test_the_hostile_corpus_and_damaged_records_get_decodes_verdict_and_reason() -> None:
    codec = AvroCodec.for_catalog(CATALOG)
    samples = [value for _, _, _, value, _ in sample_records(CATALOG, codec) if value is not None]
    hostile = [value for _, _, _, value, _ in hostile_records(CATALOG, codec, 200)]
    taken = [_same_verdict(codec, value) for value in hostile + _damaged(samples, 4000, seed=17)]
    assert 0 < sum(taken) < len(taken)  # both ways were exercised


PRIMITIVES = _custom_type([
    {"name": "flag", "type": "boolean"},
    {"name": "ratio", "type": ["null", "float", "double"]},
    {"name": "blob", "type": ["bytes", "string"]},
    {"name": "small", "type": "int"},
    {"name": "maybe", "type": ["null", "int"], "default": None},
    {"name": "count", "type": ["int", "long"], "default": 0},
    {"name": "note", "type": "string"},
])
PAYLOADS: list[dict[str, Any]] = [
    {"flag": True, "ratio": 0.5, "blob": b"\x00\xff", "small": -5, "maybe": None, "count": 2**40, "note": "x" * 200},
    {"flag": False, "ratio": None, "blob": "中文", "small": 2**31 - 1, "maybe": -(2**31), "count": -1, "note": ""},
    {"flag": True, "ratio": 1e300, "blob": "t" * 9000, "small": 0, "maybe": 7, "count": 2**63 - 1, "note": "é"},
]


def test_every_primitive_type_and_union_is_checked_as_decode_judges_it() -> None:
    codec = AvroCodec([PRIMITIVES])
    records = [codec.encode(PRIMITIVES, payload) for payload in PAYLOADS]
    assert all(_same_verdict(codec, data) for data in records)
    header = MARKER + codec.fingerprint(PRIMITIVES)
    # An int field written as a long out of its range, text that is not UTF-8, a branch past the union's end.
    out_of_range = header + b"\x01" + b"\x00" + b"\x00" + b"\x80\x80\x80\x80\x20" + b"\x00" + b"\x00" + b"\x00"
    not_utf8 = header + b"\x01" + b"\x00" + b"\x00" + b"\x00" + b"\x00" + b"\x00" + b"\x04\xff\xfe"
    bad_branch = header + b"\x01" + b"\x06" + b"\x00" + b"\x00" + b"\x00" + b"\x00" + b"\x00"
    for data in (out_of_range, not_utf8, bad_branch):
        assert not _same_verdict(codec, data)
        assert _verdict(codec, data, frozenset())[0] == "DecodeError"
    for data in _damaged(records, 3000, seed=5):
        _same_verdict(codec, data)


@pytest.mark.parametrize("avro_type", [
    {"type": "enum", "name": "Level", "symbols": ["LOW", "HIGH"]},
    {"type": "array", "items": "string"},
    {"type": "long", "logicalType": "timestamp-millis"},
], ids=["enum", "array", "logical"])
def test_a_type_beyond_the_check_is_always_decoded(avro_type: Any) -> None:
    et = _custom_type([{"name": "flag", "type": "boolean"}, {"name": "other", "type": avro_type}])
    assert compile_body_check(et) is None
    codec = AvroCodec([et])
    value = {"enum": "LOW", "array": ["a"], "logical": 1_800_000_000_000}
    kind = avro_type["logicalType"] if "logicalType" in avro_type else avro_type["type"]
    data = codec.encode(et, {"flag": True, "other": value.get(kind, value["logical"])})
    event_type, payload = codec.decode_unless(data, frozenset({codec.fingerprint(et)}))
    assert event_type is et and payload is not None


def test_a_type_not_named_unread_is_decoded() -> None:
    codec = AvroCodec.for_catalog(CATALOG)
    data = next(value for topic, _, _, value, _ in sample_records(CATALOG, codec)
                if topic == "ingress.transport.bus_arrival")
    et = codec.decode(data)[0]
    assert codec.decode_unless(data, frozenset({b"\x00" * 8}))[1] == codec.decode(data)[1]
    assert codec.decode_unless(data, frozenset({codec.fingerprint(et)}))[1] is None
    assert codec.decode_unless(bytearray(data), frozenset({codec.fingerprint(et)}))[1] is not None  # bytes only
