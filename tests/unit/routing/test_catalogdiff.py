"""The checks of a catalog change against the catalog in force: what it adds, and each way it is refused, with
the file and the reason."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hybridbus.adapters.codec import schema_fingerprint
from hybridbus.adapters.loaders import load_ruleset_dir
from hybridbus.runtime.catalogstore import CatalogSnapshot
from routing.catalog import Catalog
from routing.catalogdiff import RECORD, RaisedGrade, catalog_change, change_errors, check_change
from routing.grades import Grade

ROOT = Path(__file__).resolve().parents[3]
BASE = dict(CatalogSnapshot.from_dir(ROOT / "schemas" / "avro").files)
RULES = load_ruleset_dir(ROOT / "routing" / "rules")
DEPARTMENTS = "departments.yaml"

NEW_DEPT = "\n".join(["  - id: ecology", "    name_zh: 生态环境局", "    name_en: Ecology and Environment",
                      "    clearance: internal", ""])


def catalog(files: dict[str, str]) -> Catalog:
    found, errors, _ = CatalogSnapshot(files).check("change")
    assert not errors, errors
    assert found is not None
    return found


def edited(path: str, edit: Callable[[dict[str, Any]], None], files: dict[str, str] | None = None,
           to: str | None = None) -> dict[str, str]:
    """`files` with the schema at `path` edited (and written to `to`, a new version, when given)."""
    files = dict(files or BASE)
    schema = json.loads(files[path])
    edit(schema)
    files[to or path] = json.dumps(schema, ensure_ascii=False)
    return files


def next_version(version: int, **grades: str) -> Callable[[dict[str, Any]], None]:
    """A new version with the same fields, one nullable field added, and the grades given changed."""
    def edit(schema: dict[str, Any]) -> None:
        schema["hbus.version"] = version
        schema["fields"].append({"name": f"note_v{version}", "type": ["null", "string"], "default": None,
                                 "grade": "public"})
        for spec in schema["fields"]:
            if spec["name"] in grades:
                if grades[spec["name"]]:
                    spec["grade"] = grades[spec["name"]]
                else:
                    del spec["grade"]
    return edit


def refused(files: dict[str, str]) -> list[str]:
    _, errors = check_change(catalog(BASE), catalog(files), RULES, schema_fingerprint, "change", DEPARTMENTS)
    return [str(e) for e in errors]


def with_department(files: dict[str, str], entry: str = NEW_DEPT) -> dict[str, str]:
    return {**files, DEPARTMENTS: files[DEPARTMENTS].rstrip("\n") + "\n" + entry}


def new_type(files: dict[str, str]) -> dict[str, str]:
    schema = {"type": "record", "namespace": "hybridbus.ecology", "name": "AirQuality", "hbus.dept": "ecology",
              "hbus.event": "air_quality", "hbus.version": 1, "grade": "public",
              "fields": [{"name": "station", "type": "string", "grade": "public"},
                         {"name": "pm25", "type": "int", "grade": "public"}]}
    return {**files, "ecology/air_quality.v1.avsc": json.dumps(schema)}


# --- what a change adds ---------------------------------------------------------------------------------------

def test_the_catalog_in_force_against_itself_is_no_change_and_no_error() -> None:
    change, errors = check_change(catalog(BASE), catalog(BASE), RULES, schema_fingerprint)
    assert errors == [] and change.empty


def test_a_new_department_type_and_version_are_what_the_change_adds() -> None:
    files = edited("transport/road_closure.v1.avsc", next_version(2), new_type(with_department(BASE)),
                   to="transport/road_closure.v2.avsc")
    change, errors = check_change(catalog(BASE), catalog(files), RULES, schema_fingerprint)
    assert errors == []
    assert change.new_departments == ("ecology",)
    assert change.new_types == ("ecology.air_quality",)
    assert change.new_versions == (("ecology.air_quality", 1), ("transport.road_closure", 2))
    assert change.raised == () and not change.empty


# --- grades ---------------------------------------------------------------------------------------------------

def test_a_new_version_that_lowers_a_field_grade_is_refused_with_its_file() -> None:
    files = edited("health/hospital_admission.v1.avsc", next_version(2, diagnosis_code="sensitive"),
                   to="health/hospital_admission.v2.avsc")
    errors = refused(files)
    assert len(errors) == 1
    assert errors[0].startswith("change/health/hospital_admission.v2.avsc: ")
    assert "field 'diagnosis_code' is sensitive in v2, lower than restricted before" in errors[0]


def test_a_new_version_that_lowers_the_record_grade_is_refused() -> None:
    def lower(schema: dict[str, Any]) -> None:
        next_version(2)(schema)
        schema["grade"] = "public"
    errors = refused(edited("transport/road_closure.v1.avsc", lower, to="transport/road_closure.v2.avsc"))
    assert any("road_closure.v2.avsc" in e and "the record is public in v2, lower than internal" in e for e in errors)


def test_a_lowered_grade_is_refused_against_every_version_before_not_only_the_last() -> None:
    v2 = edited("transport/road_closure.v1.avsc", next_version(2, reason="sensitive"), to="transport/road_closure.v2.avsc")
    in_force = catalog(v2)
    files = edited("transport/road_closure.v2.avsc", next_version(3, reason="internal"), v2,
                   to="transport/road_closure.v3.avsc")
    errors = change_errors(in_force, catalog(files), schema_fingerprint)
    assert [e.path for e in errors] == ["change/transport/road_closure.v3.avsc"]
    assert "lower than sensitive" in str(errors[0])


def test_a_new_version_that_drops_a_grade_is_refused() -> None:
    errors = refused(edited("transport/road_closure.v1.avsc", next_version(2, reason=""),
                            to="transport/road_closure.v2.avsc"))
    assert len(errors) == 1
    assert "road_closure.v2.avsc" in errors[0] and "field 'reason' has no grade in v2 but was internal" in errors[0]


def test_a_raised_grade_whose_rules_still_validate_is_accepted_and_reported() -> None:
    files = edited("transport/road_closure.v1.avsc", next_version(2, reason="sensitive"),
                   to="transport/road_closure.v2.avsc")
    change, errors = check_change(catalog(BASE), catalog(files), RULES, schema_fingerprint)
    assert errors == []
    assert change.raised == (RaisedGrade("transport.road_closure", 2, "reason", Grade.INTERNAL, Grade.SENSITIVE,
                                         "change/transport/road_closure.v2.avsc"),)


def test_a_raised_grade_whose_rules_no_longer_validate_is_refused_with_the_rule() -> None:
    # The rule keeps `district` in a public view: restricted data may only be dropped.
    files = edited("govservice/permit_application.v1.avsc", next_version(2, district="restricted"),
                   to="govservice/permit_application.v2.avsc")
    errors = refused(files)
    assert errors and all(e.startswith("change/govservice/permit_application.v2.avsc: the rules in force") for e in errors)
    assert "permit_application v2: field 'district' public -> restricted" in errors[0]
    assert any("permit-applications-statistic" in e and "field 'district' is restricted" in e
               and "may only be dropped" in e for e in errors)


def test_a_raised_record_grade_is_reported() -> None:
    def raise_record(schema: dict[str, Any]) -> None:
        next_version(2)(schema)
        schema["grade"] = "sensitive"
    files = edited("transport/road_closure.v1.avsc", raise_record, to="transport/road_closure.v2.avsc")
    change = catalog_change(catalog(BASE), catalog(files))
    assert [(r.field, r.before, r.after) for r in change.raised] == [(RECORD, Grade.INTERNAL, Grade.SENSITIVE)]


def test_a_grade_raised_in_place_is_a_raise_and_lowered_in_place_is_refused() -> None:
    raised = edited("transport/road_closure.v1.avsc", lambda s: s["fields"][5].update(grade="sensitive"))
    change, errors = check_change(catalog(BASE), catalog(raised), RULES, schema_fingerprint)
    assert errors == [] and [str(r) for r in change.raised] == ["transport.road_closure v1: field 'reason' internal -> sensitive"]
    lowered = edited("transport/road_closure.v1.avsc", lambda s: s["fields"][5].update(grade="public"))
    assert any("field 'reason' is public in v1, lower than internal" in e for e in refused(lowered))


# --- departments ----------------------------------------------------------------------------------------------

def test_a_dropped_department_is_refused_naming_the_departments_file() -> None:
    files = {k: v for k, v in BASE.items() if not k.startswith("police/")}
    files[DEPARTMENTS] = files[DEPARTMENTS].split("  - id: police")[0]
    errors = refused(files)
    assert any(e.startswith("departments.yaml: department 'police' is dropped") for e in errors)


def test_a_renamed_department_is_refused_as_renamed() -> None:
    files = {k.replace("police/", "publicsecurity/"): v.replace('"hbus.dept": "police"', '"hbus.dept": "publicsecurity"')
             for k, v in BASE.items()}
    files[DEPARTMENTS] = files[DEPARTMENTS].replace("id: police", "id: publicsecurity")
    errors = refused(files)
    assert any("department 'police' is renamed to 'publicsecurity'" in e and "may not be renamed" in e for e in errors)
    assert any("police.population_stats v1 is in force and missing here" in e for e in errors)


def test_a_changed_clearance_is_refused() -> None:
    files = {**BASE, DEPARTMENTS: BASE[DEPARTMENTS].replace(
        "id: market\n    name_zh: 市场监管局\n    name_en: Market Regulation\n    clearance: internal",
        "id: market\n    name_zh: 市场监管局\n    name_en: Market Regulation\n    clearance: restricted")}
    assert files != BASE
    assert any("department 'market': clearance internal -> restricted" in e for e in refused(files))


# --- versions in force and fingerprints -----------------------------------------------------------------------

def test_a_version_in_force_may_not_be_removed() -> None:
    files = {k: v for k, v in BASE.items() if k != "transport/bus_arrival.v2.avsc"}
    errors = refused(files)
    assert errors == ["change/transport/bus_arrival.v2.avsc: transport.bus_arrival v2 is in force and missing here: "
                      "a version is never removed (records on the topics name it)"]


def test_a_version_in_force_may_not_be_rewritten() -> None:
    files = edited("transport/road_closure.v1.avsc",
                   lambda s: s["fields"].append({"name": "lane", "type": ["null", "string"], "default": None,
                                                 "grade": "internal"}))
    errors = refused(files)
    assert len(errors) == 1 and "road_closure v1 is in force and its fields or names change here" in errors[0]
    assert "add v2 instead" in errors[0]


def test_a_new_type_with_the_fingerprint_of_one_in_force_is_refused() -> None:
    # The same record as market.licence_granted under another department: hbus.* and grades are not part of the
    # Avro canonical form, so both have one fingerprint.
    copy = json.loads(BASE["market/licence_granted.v1.avsc"])
    copy.update({"hbus.dept": "ecology", "hbus.event": "licence_copy"})
    files = {**with_department(BASE), "ecology/licence_copy.v1.avsc": json.dumps(copy)}
    errors = refused(files)
    assert len(errors) == 1
    assert errors[0].startswith("change/ecology/licence_copy.v1.avsc: ecology.licence_copy v1 has the fingerprint")
    assert "of market.licence_granted v1" in errors[0]


def test_distinct_schemas_whose_fingerprints_collide_are_refused() -> None:
    files = new_type(with_department(BASE))

    def colliding(schema: Any) -> bytes:
        name = schema.get("name")
        return b"same-fp!" if name in ("AirQuality", "LicenceGranted") else schema_fingerprint(schema)

    errors = change_errors(catalog(BASE), catalog(files), colliding)
    assert [str(e) for e in errors] == [
        "change/ecology/air_quality.v1.avsc: ecology.air_quality v1 has the fingerprint "
        f"{b'same-fp!'.hex()} of market.licence_granted v1: a record names its schema by it alone; give the record "
        "another name, namespace or fields"]


def test_a_new_type_with_the_fingerprint_of_a_derived_view_is_refused() -> None:
    from hybridbus.adapters.loaders import derived_event_types

    view = next(t for t in derived_event_types(catalog(BASE), RULES) if t.event == "citizen_feedback_stats")
    copy = {**dict(view.schema), "hbus.dept": "ecology", "hbus.event": "feedback_stats", "hbus.version": 1,
            "grade": "public"}
    files = {**with_department(BASE), "ecology/feedback_stats.v1.avsc": json.dumps(copy)}
    new = catalog(files)
    _, errors = check_change(catalog(BASE), new, RULES, schema_fingerprint, "change", DEPARTMENTS,
                             derived_event_types(new, RULES))
    assert [e.path for e in errors] == ["change/ecology/feedback_stats.v1.avsc"]
    assert "of govservice.citizen_feedback_stats v1" in str(errors[0])
