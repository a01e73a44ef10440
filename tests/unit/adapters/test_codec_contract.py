"""The Avro single-object codec: what we write, any Avro library reads; what we refuse, we refuse with a typed error.

Cross-checked with the Apache `avro` library, and no error message ever carries the value it refused.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
import pytest

from hybridbus.adapters.codec import HEADER_SIZE, MARKER, AvroCodec, schema_fingerprint
from hybridbus.adapters.exceptions import CodecError, DecodeError, EncodeError, UnknownSchemaError
from hybridbus.adapters.loaders import load_catalog_dir
from routing.catalog import EventType

ROOT = Path(__file__).resolve().parents[3]
CATALOG = load_catalog_dir(ROOT / "schemas" / "avro")
CODEC = AvroCodec.for_catalog(CATALOG)
TYPES = list(CATALOG)


def _id(et: EventType) -> str:
    return f"{et.key}.v{et.version}"


def _sample(et: EventType) -> dict[str, Any]:
    return json.loads((ROOT / "schemas" / "samples" / f"{et.key}.v{et.version}.json").read_text(encoding="utf-8"))


def _apache(et: EventType) -> avro.schema.Schema:
    return avro.schema.parse(json.dumps(et.schema))


def test_every_shipped_type_has_a_sample() -> None:
    assert sorted(p.stem for p in (ROOT / "schemas" / "samples").glob("*.json")) == sorted(_id(et) for et in TYPES)


@pytest.mark.parametrize("et", TYPES, ids=_id)
def test_every_sample_round_trips(et: EventType) -> None:
    payload = _sample(et)
    data = CODEC.encode(et, payload)
    assert data[:HEADER_SIZE] == MARKER + CODEC.fingerprint(et)
    decoded_type, decoded = CODEC.decode(data)
    assert decoded_type is et and decoded == payload
    assert CODEC.decode(bytearray(data))[1] == payload and CODEC.decode(memoryview(data))[1] == payload


@pytest.mark.parametrize("et", TYPES, ids=_id)
def test_the_apache_avro_library_decodes_our_bytes(et: EventType) -> None:
    payload = _sample(et)
    data = CODEC.encode(et, payload)
    body = io.BytesIO(data[HEADER_SIZE:])
    decoded = avro.io.DatumReader(_apache(et)).read(avro.io.BinaryDecoder(body))
    assert decoded == payload
    assert body.tell() == len(data) - HEADER_SIZE  # the body is exactly one record


@pytest.mark.parametrize("et", TYPES, ids=_id)
def test_our_fingerprint_is_the_crc64_avro_fingerprint_little_endian(et: EventType) -> None:
    apache = _apache(et).fingerprint("CRC-64-AVRO")  # big-endian bytes
    assert len(apache) == 8
    assert CODEC.fingerprint(et) == schema_fingerprint(et.schema) == bytes(reversed(apache))


def test_the_apache_avro_library_writes_what_we_read() -> None:
    et = CATALOG.get("govservice.citizen_feedback")
    payload = {**_sample(et), "contact": None}
    out = io.BytesIO()
    avro.io.DatumWriter(_apache(et)).write(payload, avro.io.BinaryEncoder(out))
    data = MARKER + bytes(reversed(_apache(et).fingerprint("CRC-64-AVRO"))) + out.getvalue()
    assert CODEC.decode(data) == (et, payload)


def test_fingerprints_tell_the_versions_apart() -> None:
    v1, v2 = CATALOG.get("transport.bus_arrival", 1), CATALOG.get("transport.bus_arrival", 2)
    assert CODEC.fingerprint(v1) != CODEC.fingerprint(v2)
    assert CODEC.decode(CODEC.encode(v1, _sample(v1)))[0] is v1
    assert len({CODEC.fingerprint(et) for et in TYPES}) == len(TYPES)


def test_a_v2_reader_of_the_apache_library_reads_our_v1_bytes() -> None:
    # The catalog's compatibility check, confirmed by another implementation's schema resolution.
    v1, v2 = CATALOG.get("transport.bus_arrival", 1), CATALOG.get("transport.bus_arrival", 2)
    body = io.BytesIO(CODEC.encode(v1, _sample(v1))[HEADER_SIZE:])
    decoded = avro.io.DatumReader(_apache(v1), _apache(v2)).read(avro.io.BinaryDecoder(body))
    assert decoded == {**_sample(v1), "occupancy": "unknown"}


def test_a_missing_field_with_a_default_is_written_with_the_default() -> None:
    v2 = CATALOG.get("transport.bus_arrival", 2)
    payload = {k: v for k, v in _sample(v2).items() if k != "occupancy"}
    assert CODEC.decode(CODEC.encode(v2, payload))[1] == {**payload, "occupancy": "unknown"}


HOSPITAL = CATALOG.get("health.hospital_admission")
GOOD = CODEC.encode(HOSPITAL, _sample(HOSPITAL))


@pytest.mark.parametrize("data, error, reason", [
    (b"", DecodeError, "shorter than the 10-byte"),
    (GOOD[:9], DecodeError, "shorter than the 10-byte"),
    (GOOD[:HEADER_SIZE], DecodeError, "body does not decode"),
    (GOOD[:-3], DecodeError, "body does not decode"),
    (GOOD + b"\x00", DecodeError, "1 trailing bytes after the record"),
    (GOOD + b"\x02abc", DecodeError, "4 trailing bytes"),
    (b"\xc3\x02" + GOOD[2:], DecodeError, "no Avro single-object marker"),
    (b"\x00\x01" + GOOD[2:], DecodeError, "no Avro single-object marker"),
    (b"garbage that is not avro at all", DecodeError, "no Avro single-object marker"),
    (GOOD[:2] + b"\x00" * 8 + GOOD[HEADER_SIZE:], UnknownSchemaError, "unknown schema fingerprint 0000000000000000"),
    (GOOD[:HEADER_SIZE] + b"\xff" * 40, DecodeError, "health.hospital_admission: body does not decode"),
    (GOOD[:HEADER_SIZE] + b"\x01", DecodeError, "body does not decode"),  # negative string length
    ("C3 01 text is not bytes", DecodeError, "expected bytes, got str"),
], ids=["empty", "short_header", "no_body", "truncated", "one_trailing", "four_trailing", "wrong_marker_version",
        "wrong_marker", "garbage", "unknown_fingerprint", "garbage_body", "negative_length", "not_bytes"])
def test_bad_bytes_are_typed_errors(data: bytes, error: type[CodecError], reason: str) -> None:
    with pytest.raises(error) as refused:
        CODEC.decode(data)
    assert type(refused.value) is error and reason in refused.value.reason


def test_a_record_truncated_inside_its_last_string_is_refused() -> None:
    et = CATALOG.get("market.licence_granted")  # ends with a string: a short read must not pass for a shorter string
    data = CODEC.encode(et, _sample(et))
    for cut in range(1, len(data) - HEADER_SIZE):
        with pytest.raises(DecodeError):
            CODEC.decode(data[:-cut])


def test_a_codec_without_the_type_refuses_it() -> None:
    empty = AvroCodec()
    with pytest.raises(UnknownSchemaError, match="not known to this codec"):
        empty.encode(HOSPITAL, _sample(HOSPITAL))
    with pytest.raises(UnknownSchemaError):
        empty.decode(GOOD)
    empty.add(HOSPITAL)
    assert empty.decode(GOOD) == (HOSPITAL, _sample(HOSPITAL))


# Distinctive values: none of them may appear in an error message.
@pytest.mark.parametrize("et_key, change, field, reason", [
    ("health.hospital_admission", {"patient_id_number": None}, "patient_id_number", "expected string, got NoneType"),
    ("health.hospital_admission", {"patient_id_number": 310101199001019999}, "patient_id_number", "expected string, got int"),
    ("health.hospital_admission", {"admitted_at": "1795567440777"}, "admitted_at", "expected long, got str"),
    ("health.hospital_admission", {"admitted_at": True}, "admitted_at", "expected long, got a boolean"),
    ("transport.bus_arrival", {"delay_seconds": False}, "delay_seconds", "expected int, got a boolean"),
    ("transport.bus_arrival", {"delay_seconds": 98765432109}, "delay_seconds", "out of range for int"),
    ("transport.bus_arrival", {"delay_seconds": 45.678}, "delay_seconds", "expected int, got float"),
    ("health.hospital_admission", {"blood_type_zz": "AB-rare-9917"}, "blood_type_zz", "not a field of this event type"),
    ("health.hospital_admission", {"patient_name": "李\ud800秘密华"}, "patient_name", "not valid UTF-8 text"),
    ("govservice.citizen_feedback", {"contact": "139\udcff00007777"}, "contact", "not valid UTF-8 text"),
    ("govservice.citizen_feedback", {"contact": 13900007777}, "contact", "expected null or string, got int"),
    ("govservice.citizen_feedback", {"text": b"secret-bytes-4242"}, "text", "expected string, got bytes"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_a_bad_payload_names_the_field_and_never_the_value(et_key: str, change: dict, field: str, reason: str) -> None:  # type: ignore[type-arg]
    et = CATALOG.get(et_key)
    with pytest.raises(EncodeError) as refused:
        CODEC.encode(et, {**_sample(et), **change})
    message = str(refused.value)
    assert refused.value.field == field and reason in message and et.key in message
    value = next(iter(change.values()))
    if value is not None and not isinstance(value, bool):
        assert str(value) not in message and repr(value) not in message
        for token in ("秘密", "7777", "9999", "9917", "4242", "45.678", "98765432109"):
            assert token not in message


def test_a_missing_field_is_an_encode_error() -> None:
    payload = {k: v for k, v in _sample(HOSPITAL).items() if k != "patient_id_number"}
    with pytest.raises(EncodeError) as refused:
        CODEC.encode(HOSPITAL, payload)
    assert refused.value.field == "patient_id_number" and "missing" in str(refused.value)
    assert "310101199001011234" not in str(refused.value)


@pytest.mark.parametrize("payload", [None, [1, 2], "310101199001015555", 42], ids=repr)
def test_a_payload_that_is_not_a_record_is_an_encode_error(payload: object) -> None:
    with pytest.raises(EncodeError) as refused:
        CODEC.encode(HOSPITAL, payload)  # type: ignore[arg-type]
    assert refused.value.field == "" and "must be a JSON object" in str(refused.value)
    assert "5555" not in str(refused.value)


def test_validate_returns_every_problem() -> None:
    payload = {**_sample(HOSPITAL), "ward": 12, "admitted_at": True, "patient_name": "a\ud800", "extra_a": 1, "extra_b": 2}
    del payload["hospital"]
    problems = {p.field: p.reason for p in CODEC.validate(HOSPITAL, payload)}
    assert problems == {
        "extra_a": "not a field of this event type",
        "extra_b": "not a field of this event type",
        "hospital": "missing",
        "ward": "expected string, got int",
        "admitted_at": "expected long, got a boolean",
        "patient_name": "not valid UTF-8 text",
    }
    assert CODEC.validate(HOSPITAL, _sample(HOSPITAL)) == []
    assert [p.field for p in CODEC.validate(HOSPITAL, [])] == [""]
    with pytest.raises(EncodeError) as refused:
        CODEC.encode(HOSPITAL, payload)
    assert refused.value.field in problems
