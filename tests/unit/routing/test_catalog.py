"""The catalog's checks of schema files: each problem is reported with its file; compatible versions load."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import routing.headers as headers
from hybridbus.adapters.loaders import check_catalog_dir, load_catalog_dir, load_departments_file
from routing.catalog import Catalog, effective_grade, event_type_from_schema, grade_reasons
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
    return check_catalog_dir(tmp_path / "avro")


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
        load_catalog_dir(tmp_path / "avro")


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


def test_a_field_with_a_default_may_be_removed_and_one_may_be_added_with_a_default(tmp_path: Path) -> None:
    v1 = _base(fields=[{"name": "a", "type": "string", "grade": "public"},
                       {"name": "b", "type": ["null", "string"], "default": None, "grade": "sensitive"}])
    v2 = _base(version=2, fields=[{"name": "a", "type": "string", "grade": "public"},
                                  {"name": "c", "type": "int", "default": 0, "grade": "public"}])
    catalog, errors, _ = _catalog(tmp_path, {"market/thing.v1.avsc": v1, "market/thing.v2.avsc": v2})
    assert errors == [] and catalog is not None
    assert [et.schema_grade for et in catalog.versions("market.thing")] == [Grade.SENSITIVE, Grade.PUBLIC]
    v2_without_a = _base(version=2, fields=[v2["fields"][1]])  # type: ignore[index]
    _, errors, _ = _catalog(tmp_path, {"market/thing.v1.avsc": v1, "market/thing.v2.avsc": v2_without_a})
    assert [e.reason for e in errors] == [
        "field 'a' of v1 is removed in v2 but has no default in v1: readers still on v1 cannot read v2 data"]


def test_an_empty_catalog_and_bad_department_files_are_refused(tmp_path: Path) -> None:
    _, errors, _ = _catalog(tmp_path, {})
    assert [e.reason for e in errors] == ["no .avsc file found under <dept>/ folders"]
    bad = tmp_path / "d.yaml"
    for text, reason in [("departments: [{id: x}]", "misses"), ("departments: [{id: X, name_zh: a, name_en: b, clearance: public}]", "must be lower-case"),
                         ("departments: [{id: x, name_zh: a, name_en: b, clearance: core}]", "department 'x'"),
                         ("departments: []", "no department defined"), ("a: [", "not valid YAML")]:
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(SchemaError, match=reason) as refused:
            load_departments_file(bad)
        assert refused.value.path == str(bad)
    with pytest.raises(SchemaError, match="departments file not found"):
        load_departments_file(tmp_path / "none.yaml")
    catalog, errors, _ = check_catalog_dir(AVRO, tmp_path / "none.yaml")
    assert catalog is None and "not found" in errors[0].reason


def test_the_shipped_catalog_lookups(tmp_path: Path) -> None:
    catalog = load_catalog_dir(AVRO)
    assert len(catalog) == 9 and "transport.bus_arrival" in catalog and "x.y" not in catalog
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


# --- The shipped catalog, the bad-schema fixtures, and the effective grade ------------------------------------------

BAD = ROOT / "tests" / "fixtures" / "bad_schemas"
EXPECTED = {case: spec for case, spec in json.loads((BAD / "expected.json").read_text(encoding="utf-8")).items()
            if not case.startswith("_")}
BAD_CASES = sorted(case for case, spec in EXPECTED.items() if "error" in spec)


def test_every_shipped_schema_loads_without_error_or_warning() -> None:
    catalog, errors, warnings = check_catalog_dir(AVRO)
    assert errors == [] and warnings == [] and catalog is not None
    assert sorted(et.path for et in catalog) == sorted(str(p) for p in AVRO.glob("*/*.avsc"))
    assert all(f.tagged for et in catalog for f in et.fields)


@pytest.mark.parametrize("grade", list(Grade), ids=lambda g: g.id)
def test_every_grade_is_the_upper_bound_of_some_shipped_type(grade: Grade) -> None:
    assert any(et.schema_grade is grade for et in load_catalog_dir(AVRO))


def test_every_fixture_case_is_described() -> None:
    assert sorted(p.name for p in BAD.iterdir() if p.is_dir()) == sorted(EXPECTED)
    assert len(BAD_CASES) >= 10


@pytest.mark.parametrize("case", BAD_CASES)
def test_each_bad_fixture_is_refused_with_its_file_and_reason(case: str) -> None:
    catalog, errors, _ = check_catalog_dir(BAD / case / "avro")
    assert catalog is None
    assert [(e.path, EXPECTED[case]["error"] in e.reason) for e in errors] == [(str(BAD / case / EXPECTED[case]["file"]), True)]
    with pytest.raises(SchemaError) as refused:
        load_catalog_dir(BAD / case / "avro")
    assert refused.value.path == str(BAD / case / EXPECTED[case]["file"])


def test_check_reports_every_error_of_a_catalog_not_only_the_first(tmp_path: Path) -> None:
    # Every case uses its own event names, so all of them fit in one catalog.
    shutil.copy(BAD / "invalid_json" / "departments.yaml", tmp_path / "departments.yaml")
    for case in EXPECTED:
        shutil.copytree(BAD / case / "avro", tmp_path / "avro", dirs_exist_ok=True)
    catalog, errors, warnings = check_catalog_dir(tmp_path / "avro")
    assert catalog is None
    found = sorted((Path(e.path).relative_to(tmp_path).as_posix(), e.reason) for e in errors)  # type: ignore[arg-type]
    assert len(found) == len(BAD_CASES)
    for case in BAD_CASES:
        assert any(path == EXPECTED[case]["file"] and EXPECTED[case]["error"] in reason for path, reason in found), case
    assert [EXPECTED["untagged_field"]["warning"] in w for w in warnings] == [True]


def test_an_untagged_fixture_field_is_highest_with_a_warning_and_raises_the_event() -> None:
    case = BAD / "untagged_field"
    catalog, errors, warnings = check_catalog_dir(case / "avro")
    assert errors == [] and catalog is not None
    assert warnings == [f"{case / EXPECTED['untagged_field']['file']}: {EXPECTED['untagged_field']['warning']}"]
    et = catalog.get("market.stall_inspected")
    assert (et.field("inspector_phone").grade, et.field("inspector_phone").tagged) == (HIGHEST, False)
    assert et.record_grade is Grade.PUBLIC and et.schema_grade is HIGHEST
    assert effective_grade(et, {"stall_id": "S-1", "passed": True}) is Grade.PUBLIC
    assert effective_grade(et, {"stall_id": "S-1", "inspector_phone": "139", "passed": True}) is HIGHEST


@pytest.mark.parametrize("over, reason", [
    ({"fields": [{"name": "a", "type": "string", "grade": "restricted"}, {"name": "a", "type": "string", "grade": "public"}]},
     "field 'a' is defined more than once"),
    ({"fields": None}, "not a valid Avro schema"),
    ({"version": True}, "hbus.version True must be a positive integer"),
])
def test_schemas_fastavro_lets_through_are_refused(tmp_path: Path, over: dict, reason: str) -> None:  # type: ignore[type-arg]
    schema = _base(**{k: v for k, v in over.items() if k != "version"})
    if "version" in over:
        schema["hbus.version"] = over["version"]
    _, errors, _ = _catalog(tmp_path, {"market/thing.v1.avsc": schema})
    assert [reason in e.reason for e in errors] == [True]


def test_a_catalog_without_fields_key_or_with_odd_field_names_is_refused(tmp_path: Path) -> None:
    no_fields = {k: v for k, v in _base().items() if k != "fields"}
    _, errors, _ = _catalog(tmp_path, {"market/thing.v1.avsc": no_fields})
    assert "a record needs a list of fields" in errors[0].reason
    _, errors, _ = _catalog(tmp_path, {"market/thing.v1.avsc": _base(fields=[{"name": ["a"], "type": "string"}])})
    assert "not a valid Avro schema" in errors[0].reason
    bad = tmp_path / "list.yaml"
    bad.write_text("- id: market\n", encoding="utf-8")
    with pytest.raises(SchemaError, match="must be a mapping"):
        load_departments_file(bad)


CF = load_catalog_dir(AVRO).get("govservice.citizen_feedback")  # record sensitive; topic/district/submitted_at public


@pytest.mark.parametrize("payload, grade", [
    ({}, Grade.SENSITIVE),  # the record grade is the floor
    ({"feedback_id": "F-1", "topic": "噪音"}, Grade.SENSITIVE),
    ({"contact": None}, Grade.SENSITIVE),  # a null field is not carried
    ({"mystery": "x"}, HIGHEST),  # a key the schema does not know
    ({"mystery": None}, HIGHEST),  # ... even when null
    ({"topic": "噪音", "mystery": None}, HIGHEST),
    (["topic"], HIGHEST),  # not a mapping
    (None, HIGHEST),
    ("text", HIGHEST),
], ids=repr)
def test_effective_grade_is_the_high_water_mark_and_fails_closed(payload: object, grade: Grade) -> None:
    assert effective_grade(CF, payload) is grade


def test_effective_grade_rises_with_the_fields_carried() -> None:
    ha = load_catalog_dir(AVRO).get("health.hospital_admission")  # record restricted
    pop = load_catalog_dir(AVRO).get("police.population_stats")  # record important
    assert effective_grade(ha, {"hospital": "x", "admitted_at": 1}) is Grade.RESTRICTED
    assert effective_grade(pop, {"district": "x", "households": None}) is Grade.IMPORTANT
    mixed, _ = event_type_from_schema(_base(fields=[
        {"name": "a", "type": "string", "grade": "public"}, {"name": "b", "type": ["null", "string"], "grade": "sensitive"},
        {"name": "c", "type": ["null", "string"], "grade": "restricted"}]), "x.avsc", load_departments_file(ROOT / "schemas" / "departments.yaml"))
    assert mixed.record_grade is Grade.PUBLIC and mixed.schema_grade is Grade.RESTRICTED
    assert effective_grade(mixed, {"a": "x", "b": None, "c": None}) is Grade.PUBLIC
    assert effective_grade(mixed, {"a": "x", "b": "y", "c": None}) is Grade.SENSITIVE
    assert effective_grade(mixed, {"a": "x", "b": "y", "c": "z"}) is Grade.RESTRICTED
    assert grade_reasons(CF, {"text": "t", "topic": "x", "mystery": 1}) == [
        "record govservice.citizen_feedback is sensitive", "field 'mystery' is not in the schema: important"]
    assert grade_reasons(CF, 3) == ["payload is not a record: treated as the highest grade"]


def test_fields_at_or_above_restricted_are_encrypted_and_others_are_not() -> None:
    catalog = load_catalog_dir(AVRO)
    admission = catalog.get("health.hospital_admission")
    assert [f.name for f in admission.encrypted_fields] == ["patient_id_number", "diagnosis_code"]
    assert catalog.get("govservice.citizen_feedback").encrypted_fields == ()
    # Aggregate counts opt out in their schema (numbers cannot carry ciphertext), with their reason in the doc.
    assert catalog.get("police.population_stats").encrypted_fields == ()


@pytest.mark.parametrize("field, encrypted", [
    ({"name": "a", "type": "string", "grade": "restricted"}, True),
    ({"name": "a", "type": ["null", "bytes"], "grade": "important"}, True),
    ({"name": "a", "type": "string", "grade": "sensitive"}, False),
    ({"name": "a", "type": "string", "grade": "sensitive", "encrypt": True}, True),
    ({"name": "a", "type": "long", "grade": "restricted", "encrypt": False}, False),
    ({"name": "a", "type": "string"}, True),  # untagged: the highest grade, encrypted where the type allows
    ({"name": "a", "type": "boolean"}, False),
])
def test_which_fields_are_encrypted_follows_grade_and_the_fields_choice(tmp_path: Path, field: dict, encrypted: bool) -> None:
    catalog, errors, _ = _catalog(tmp_path, {"market/thing.v1.avsc": _base(fields=[field])})
    assert errors == [] and catalog is not None
    assert catalog.get("market.thing").field("a").encrypted is encrypted


@pytest.mark.parametrize("field, reason", [
    ({"name": "a", "type": "long", "grade": "restricted"},
     "field 'a' is restricted and encrypted at the source, but its type \"long\" cannot carry ciphertext"),
    ({"name": "a", "type": ["null", "int"], "grade": "public", "encrypt": True},
     "field 'a' is public and encrypted at the source, but its type [\"null\", \"int\"] cannot carry ciphertext"),
    ({"name": "a", "type": "string", "grade": "restricted", "encrypt": "yes"}, "field 'a': encrypt must be true or false"),
])
def test_an_encrypted_field_that_cannot_carry_ciphertext_is_refused(tmp_path: Path, field: dict, reason: str) -> None:
    catalog, errors, _ = _catalog(tmp_path, {"market/thing.v1.avsc": _base(fields=[field])})
    assert catalog is None
    assert [reason in e.reason for e in errors] == [True], errors
