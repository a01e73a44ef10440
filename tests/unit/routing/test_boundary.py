"""The boundary guard lets out only what it recomputes as public, whatever the headers say."""
from __future__ import annotations

from pathlib import Path

import pytest

from hybridbus.adapters.loaders import load_catalog_dir
from routing.boundary import ARCHIVE, PUBLIC_CLOUD, check_export
from routing.catalog import Catalog
from routing.grades import Grade

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas" / "avro"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog_dir(SCHEMAS)


LICENCE = {"credit_code": "9131", "company_name": "c", "licence_type": "t", "district": "d",
           "business_scope": "s", "granted_on": "2026-11-20"}


def test_public_event_on_its_topic_with_a_rule_leaves(catalog: Catalog) -> None:
    et = catalog.get("market.licence_granted")
    verdict = check_export(et, LICENCE, "public.market.licence_granted", "public_cloud,archive", PUBLIC_CLOUD)
    assert verdict.allowed and verdict.grade is Grade.PUBLIC


def test_public_event_without_a_rule_for_the_destination_stays_but_is_no_leak(catalog: Catalog) -> None:
    et = catalog.get("market.licence_granted")
    verdict = check_export(et, LICENCE, "public.market.licence_granted", "archive", PUBLIC_CLOUD)
    assert not verdict.allowed and not verdict.leak


def test_sensitive_event_is_a_leak_whatever_the_destinations_header_says(catalog: Catalog) -> None:
    et = catalog.get("govservice.citizen_feedback")
    payload = {"feedback_id": "f", "topic": "t", "district": "d", "text": "x", "contact": None, "submitted_at": 1}
    verdict = check_export(et, payload, "public.govservice.citizen_feedback", "public_cloud", PUBLIC_CLOUD)
    assert not verdict.allowed and verdict.leak and verdict.grade is Grade.SENSITIVE


def test_public_record_on_the_wrong_topic_is_a_leak(catalog: Catalog) -> None:
    et = catalog.get("market.licence_granted")
    verdict = check_export(et, LICENCE, "public.transport.bus_arrival", "public_cloud", ARCHIVE)
    assert not verdict.allowed and verdict.leak


def test_unknown_field_makes_the_record_the_highest_grade(catalog: Catalog) -> None:
    et = catalog.get("market.licence_granted")
    verdict = check_export(et, {**LICENCE, "id_number": "x"}, "public.market.licence_granted", "public_cloud", PUBLIC_CLOUD)
    assert not verdict.allowed and verdict.grade is Grade.IMPORTANT


INSPECTION = {"inspection_id": "i", "credit_code": "9131", "business_name": "b", "district": "d", "inspection_type": "t",
              "result": "合格", "inspected_on": "2026-11-24", "complainant_phone": None, "inspector_id_number": None}


@pytest.mark.parametrize("field, grade", [(None, Grade.PUBLIC), ("complainant_phone", Grade.SENSITIVE),
                                          ("inspector_id_number", Grade.RESTRICTED)])
def test_a_public_type_leaves_by_the_fields_it_carries_not_by_the_fields_it_could(catalog: Catalog, field: str | None,
                                                                                   grade: Grade) -> None:
    et = catalog.get("market.inspection_result")
    payload = {**INSPECTION, **({field: "set"} if field else {})}
    verdict = check_export(et, payload, "public.market.inspection_result", "public_cloud,archive", ARCHIVE)
    assert verdict.allowed is (grade is Grade.PUBLIC) and verdict.leak is (grade is not Grade.PUBLIC)
    if grade is not Grade.PUBLIC:  # a refused record is quarantined as the highest grade its type can carry
        assert verdict.reason == f"market.inspection_result is {grade.id}: only public events leave"
        assert verdict.grade is Grade.RESTRICTED
