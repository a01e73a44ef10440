"""The catalog's checks and the Avro single-object codec, cross-checked with the Apache `avro` library."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import avro.io
import avro.schema
import pytest
from typer.testing import CliRunner

from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.exceptions import DecodeError, EncodeError, UnknownSchemaError
from hybridbus.adapters.loaders import check_catalog_dir, load_catalog_dir
from hybridbus.cli.schemas import app as schemas_app
from routing.grades import Grade

ROOT = Path(__file__).resolve().parents[3]
SCHEMAS = ROOT / "schemas" / "avro"
SAMPLES = ROOT / "schemas" / "samples"
CATALOG = load_catalog_dir(SCHEMAS)
CODEC = AvroCodec.for_catalog(CATALOG)


def _sample(et):  # type: ignore[no-untyped-def]
    return json.loads((SAMPLES / f"{et.key}.v{et.version}.json").read_text(encoding="utf-8"))


def test_the_catalog_covers_every_grade_and_five_departments() -> None:
    assert {et.schema_grade for et in CATALOG} == set(Grade)
    assert len({et.dept for et in CATALOG}) >= 5 and len(CATALOG.latest()) >= 6
    assert CATALOG.get("transport.bus_arrival").version == 2


@pytest.mark.parametrize("event_type", list(CATALOG), ids=lambda et: f"{et.key}.v{et.version}")
def test_our_bytes_decode_with_the_apache_avro_library(event_type) -> None:  # type: ignore[no-untyped-def]
    payload = _sample(event_type)
    data = CODEC.encode(event_type, payload)
    assert data[:2] == b"\xc3\x01"
    schema = avro.schema.parse(json.dumps(event_type.schema))
    assert data[2:10] == schema.fingerprint("CRC-64-AVRO")[::-1]  # the spec puts it little-endian on the wire
    decoded = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(data[10:])))
    assert decoded == payload
    assert CODEC.decode(data) == (event_type, payload)


def test_version_two_reads_version_one_data_with_the_default() -> None:
    v1, v2 = CATALOG.get("transport.bus_arrival", 1), CATALOG.get("transport.bus_arrival", 2)
    data = CODEC.encode(v1, _sample(v1))
    writer, reader = avro.schema.parse(json.dumps(v1.schema)), avro.schema.parse(json.dumps(v2.schema))
    record = avro.io.DatumReader(writer, reader).read(avro.io.BinaryDecoder(io.BytesIO(data[10:])))
    assert record["occupancy"] == "unknown"


@pytest.mark.parametrize("data, error, reason", [
    (b"short", DecodeError, "10-byte"),
    (b"\x00\x01" + b"\x00" * 20, DecodeError, "marker"),
    (b"\xc3\x01" + b"\xff" * 8 + b"\x00", UnknownSchemaError, "unknown schema fingerprint"),
])
def test_bad_bytes_are_typed_errors(data: bytes, error: type, reason: str) -> None:
    with pytest.raises(error, match=reason):
        CODEC.decode(data)


def test_truncated_and_padded_bodies_are_refused() -> None:
    et = CATALOG.get("health.hospital_admission")
    data = CODEC.encode(et, _sample(et))
    with pytest.raises(DecodeError, match="does not decode"):
        CODEC.decode(data[:-5])
    with pytest.raises(DecodeError, match="trailing bytes"):
        CODEC.decode(data + b"\x00\x00")


@pytest.mark.parametrize("change, field, reason", [
    ({"patient_id_number": 310101199001011234}, "patient_id_number", "expected string"),
    ({"admitted_at": True}, "admitted_at", "boolean"),
    ({"patient_name": "李\ud800华"}, "patient_name", "UTF-8"),
    ({"blood_type": "AB"}, "blood_type", "not a field"),
])
def test_a_bad_payload_names_the_field_and_never_the_value(change: dict, field: str, reason: str) -> None:  # type: ignore[type-arg]
    et = CATALOG.get("health.hospital_admission")
    with pytest.raises(EncodeError) as refused:
        CODEC.encode(et, {**_sample(et), **change})
    assert refused.value.field == field and reason in str(refused.value)
    assert str(next(iter(change.values()))) not in str(refused.value)


def test_a_missing_field_is_reported_with_every_other_problem() -> None:
    et = CATALOG.get("market.licence_granted")
    payload = {k: v for k, v in _sample(et).items() if k != "district"}
    problems = CODEC.validate(et, {**payload, "granted_on": 20261120})
    assert {(p.field, p.reason.split(",")[0]) for p in problems} >= {("district", "missing"), ("granted_on", "expected string")}


def _catalog_copy(tmp_path: Path) -> Path:
    target = tmp_path / "schemas"
    shutil.copytree(ROOT / "schemas", target)
    return target


@pytest.mark.parametrize("edit, reason", [
    (lambda d: (d / "avro/market/licence_granted.v1.avsc").write_text("{not json"), "not valid JSON"),
    (lambda d: _edit(d / "avro/market/licence_granted.v1.avsc", '"grade": "public",\n  "fields"', '"grade": "core",\n  "fields"'), "never carried"),
    (lambda d: _edit(d / "avro/market/licence_granted.v1.avsc", '"grade": "public",\n  "fields"', '"grade": "open",\n  "fields"'), "unknown grade"),
    (lambda d: _edit(d / "avro/transport/bus_arrival.v2.avsc", '"default": "unknown", ', ""), "has no default"),
    (lambda d: _edit(d / "avro/transport/bus_arrival.v2.avsc", '"name": "delay_seconds", "type": "int"', '"name": "delay_seconds", "type": "string"'), "changed type"),
    (lambda d: _edit(d / "avro/market/licence_granted.v1.avsc", '"hbus.dept": "market"', '"hbus.dept": "tax"'), "not a known department"),
    (lambda d: _edit(d / "avro/market/licence_granted.v1.avsc", '"type": "string", "grade": "public", "doc": "Registered', '"type": "strin", "grade": "public", "doc": "Registered'), "not a valid Avro schema"),
])
def test_bad_schemas_are_refused_with_file_and_reason(tmp_path: Path, edit, reason: str) -> None:  # type: ignore[no-untyped-def]
    root = _catalog_copy(tmp_path)
    edit(root)
    catalog, errors, _ = check_catalog_dir(root / "avro")
    assert catalog is None and any(reason in str(e) and e.path and e.path.endswith(".avsc") for e in errors), errors
    result = CliRunner().invoke(schemas_app, ["check", str(root / "avro")])
    assert result.exit_code == 1 and reason in result.output


def test_an_untagged_field_is_treated_as_the_highest_grade_and_reported(tmp_path: Path) -> None:
    root = _catalog_copy(tmp_path)
    _edit(root / "avro/market/licence_granted.v1.avsc", '"type": "string", "grade": "public", "doc": "Registered', '"type": "string", "doc": "Registered')
    catalog, errors, warnings = check_catalog_dir(root / "avro")
    assert not errors and catalog is not None
    assert catalog.get("market.licence_granted").field("company_name").grade is Grade.IMPORTANT
    assert any("company_name" in w and "no grade" in w for w in warnings)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_schemas_cli_lists_and_shows_every_field_grade() -> None:
    listing = CliRunner().invoke(schemas_app, ["list", "--json"])
    assert listing.exit_code == 0 and len(json.loads(listing.output)) == len(CATALOG)
    shown = CliRunner().invoke(schemas_app, ["show", "health.hospital_admission", "--json"])
    fields = {f["field"]: f["grade"] for f in json.loads(shown.output)["fields"]}
    assert fields["patient_id_number"] == "restricted" and fields["hospital"] == "public"
    assert CliRunner().invoke(schemas_app, ["show", "health.unknown"]).exit_code == 1
