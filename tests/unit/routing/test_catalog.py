"""The catalog's checks of schema files: each problem is reported with its file; compatible versions load."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import routing.headers as headers
from routing.catalog import Catalog, load_departments
from routing.exceptions import SchemaError
from routing.grades import HIGHEST, Grade

ROOT = Path(__file__).resolve().parents[3]
AVRO = ROOT / "schemas" / "avro"


def _base(event: str = "thing", version: int = 1, **over: object) -> dict:
    schema = {"type": "record", "namespace": "hybridbus.market", "name": "Thing", "hbus.dept": "market", "hbus.event": event,
              "hbus.version": version, "grade": "public", "fields": [{"name": "a", "type": "string", "grade": "public"}]}
    schema.update(over)
    return schema


def _catalog(tmp_path: Path, files: dict[str, object]) -> tuple[Catalog | None, list[SchemaError], list[str]]:
    (tmp_path / "departments.yaml").write_text((ROOT / "schemas" / "departments.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    for name, content in files.items():
        path = tmp_path / "avro" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return Catalog.check(tmp_path / "avro")


@pytest.mark.parametrize("name, content, reason", [
    ("market/Thing.v1.avsc", _base(), "file name must be"),
    ("market/thing.v1.avsc", "{not json", "not valid JSON"),
    ("market/thing.v1.avsc", {"type": "enum"}, "must be an Avro record"),
    ("market/thing.v1.avsc", _base(fields=[{"name": "a", "type": "nope"}]), "not a valid Avro schema"),
    ("market/thing.v1.avsc", _base(**{"hbus.dept": "customs"}), "hbus.dept 'customs' is not a known department"),
    ("market/thing.v1.avsc", _base(event="Thing"), "hbus.event 'Thing' must be"),
    ("market/thing.v1.avsc", _base(version=0), "hbus.version 0 must be a positive integer"),
    ("market/thing.v2.avsc", _base(), "schema says market/thing.v1 but the file is market/thing.v2"),
    ("market/thing.v1.avsc", {k: v for k, v in _base().items() if k != "grade"}, "the record has no grade"),
    ("market/thing.v1.avsc", _base(grade="core"), "record grade: grade 'core' is above"),
    ("market/thing.v1.avsc", _base(fields=[{"name": "a", "type": "string", "grade": "x"}]), "field 'a': unknown grade 'x'"),
])
def test_bad_schema_files_are_reported_with_their_path(tmp_path: Path, name: str, content: object, reason: str) -> None:
    catalog, errors, _ = _catalog(tmp_path, {name: content})
    assert catalog is None
    assert [reason in e.reason for e in errors] == [True]
    assert errors[0].path == str(tmp_path / "avro" / name)
    with pytest.raises(SchemaError, match=reason.split("'")[0]):
        Catalog.load(tmp_path / "avro")


def test_an_untagged_field_is_highest_with_a_warning(tmp_path: Path) -> None:
    catalog, errors, warnings = _catalog(tmp_path, {"market/thing.v1.avsc": _base(fields=[{"name": "a", "type": ["null", "string"]}])})
    assert errors == [] and catalog is not None
    spec = catalog.get("market.thing").field("a")
    assert (spec.grade, spec.tagged, spec.nullable) == (HIGHEST, False, True)
    assert warnings == [f"{tmp_path / 'avro' / 'market' / 'thing.v1.avsc'}: field 'a' has no grade: treated as important"]
    assert catalog.warnings == tuple(warnings)


def test_incompatible_versions_are_reported(tmp_path: Path) -> None:
    v2 = _base(version=2, name="Other", fields=[{"name": "a", "type": "long", "grade": "public"},
                                                 {"name": "b", "type": "string", "grade": "public"}])
    _, errors, _ = _catalog(tmp_path, {"market/thing.v1.avsc": _base(), "market/thing.v2.avsc": v2})
    assert sorted(e.reason for e in errors) == [
        "field 'a' changed type between v1 and v2",
        "field 'b' is new in v2 and has no default: v1 data cannot be read",
        "record name changed from hybridbus.market.Thing to hybridbus.market.Other"]


def test_an_empty_catalog_and_bad_department_files_are_refused(tmp_path: Path) -> None:
    _, errors, _ = _catalog(tmp_path, {})
    assert [e.reason for e in errors] == ["no .avsc file found under <dept>/ folders"]
    bad = tmp_path / "d.yaml"
    for text, reason in [("departments: [{id: x}]", "misses"), ("departments: [{id: X, name_zh: a, name_en: b, clearance: public}]", "must be lower-case"),
                         ("departments: [{id: x, name_zh: a, name_en: b, clearance: core}]", "department 'x'"),
                         ("departments: []", "no department defined"), ("a: [", "not valid YAML")]:
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(SchemaError, match=reason) as refused:
            load_departments(bad)
        assert refused.value.path == str(bad)
    with pytest.raises(SchemaError, match="departments file not found"):
        load_departments(tmp_path / "none.yaml")
    catalog, errors, _ = Catalog.check(AVRO, tmp_path / "none.yaml")
    assert catalog is None and "not found" in errors[0].reason


def test_the_shipped_catalog_lookups(tmp_path: Path) -> None:
    catalog = Catalog.load(AVRO)
    assert len(catalog) == 8 and "transport.bus_arrival" in catalog and "x.y" not in catalog
    assert [et.version for et in catalog.versions("transport.bus_arrival")] == [1, 2]
    assert catalog.get("transport.bus_arrival").version == 2
    assert [et.key for et in catalog.latest()].count("transport.bus_arrival") == 1
    with pytest.raises(SchemaError, match="has no version 7"):
        catalog.get("transport.bus_arrival", 7)
    with pytest.raises(SchemaError, match="unknown event type"):
        catalog.get("nope.nope")
    et = catalog.get("govservice.citizen_feedback")
    assert et.ingress_topic == "ingress.govservice.citizen_feedback" and et.schema_grade is Grade.SENSITIVE
    with pytest.raises(KeyError):
        et.field("nope")
    assert catalog.departments["police"].clearance is Grade.IMPORTANT
    assert str(SchemaError("why")) == "why" and str(SchemaError("why", "f")) == "f: why"
    assert headers.CLAIMED_GRADE == "hbus-claimed-grade" and headers.GRADE == "hbus-grade"
