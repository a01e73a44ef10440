"""Quarantine review without a broker: a copy read back from `_hbus.quarantine` is the original record, egress's and
the archiver's copies are one record, nothing printed carries a field value, and the real guard's second look
allows a release only when the record is public now and the catalog or the rules changed since."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.loaders import derived_event_types, load_catalog_dir
from hybridbus.ops.people import NotAllowed
from hybridbus.ops.quarantine import Entry, Review, assess, copy_from, find, group, review_state, with_reviews
from hybridbus.runtime.guard_step import GuardStep
from hybridbus.runtime.rulesigning import Signature
from routing import governance as G
from routing import headers as H
from routing.boundary import ARCHIVE, PUBLIC_CLOUD
from routing.catalog import Catalog
from tests.unit.runtime.inputs import CATALOG, NOW_MS, ROOT, SHIPPED, publisher_headers, sample_records

LICENCE_TOPIC = "public.market.licence_granted"
CANARY = "CANARY-not-for-print"

LICENCE_V2 = {
    "type": "record", "namespace": "hybridbus.market", "name": "LicenceGranted",
    "doc": "A business licence was granted, v2: with the licence's public register link.",
    "hbus.dept": "market", "hbus.event": "licence_granted", "hbus.version": 2, "grade": "public",
    "fields": [
        {"name": "credit_code", "type": "string", "grade": "public"},
        {"name": "company_name", "type": "string", "grade": "public"},
        {"name": "licence_type", "type": "string", "grade": "public"},
        {"name": "district", "type": "string", "grade": "public"},
        {"name": "business_scope", "type": "string", "grade": "public"},
        {"name": "granted_on", "type": "string", "grade": "public"},
        {"name": "register_url", "type": ["null", "string"], "default": None, "grade": "public"},
    ],
}


def catalog_with_licence_v2(where: Path) -> Path:
    """A copy of the shipped catalog plus licence_granted v2 (all public): the catalog change that makes a v2
    licence, quarantined as undecodable before, public. Returns the schemas directory."""
    schemas = where / "schemas" / "avro"
    shutil.copytree(ROOT / "schemas" / "avro", schemas)
    shutil.copy(ROOT / "schemas" / "departments.yaml", where / "schemas" / "departments.yaml")
    (schemas / "market" / "licence_granted.v2.avsc").write_text(json.dumps(LICENCE_V2, ensure_ascii=False, indent=1))
    return schemas


def licence_v2(catalog: Catalog, event_id: str, version: int = 2) -> tuple[bytes, list[tuple[str, bytes]]]:
    payload = {"credit_code": "91310000MA1K00000X", "company_name": f"{CANARY} Ltd", "licence_type": "LLC",
               "district": "黄浦区", "business_scope": "software", "granted_on": "2026-11-30",
               "register_url": "https://example.gov/r/1"}
    value = AvroCodec.for_catalog(catalog).encode(catalog.get("market.licence_granted", version), payload)
    headers = publisher_headers(catalog.get("market.licence_granted", version), event_id) + [
        (H.DESTINATIONS, b"public_cloud,archive")]
    return value, headers


def guard(catalog: Catalog, destination: str = PUBLIC_CLOUD) -> GuardStep:
    return GuardStep(AvroCodec.for_catalog(catalog), destination, derived_event_types(catalog, SHIPPED),
                     catalog_digest=catalog.digest)


def quarantined_by_both(catalog: Catalog, topic: str, partition: int, key: bytes, value: bytes,
                        headers: list[tuple[str, bytes]], at_ms: int = NOW_MS) -> list:
    """What egress's and the archiver's guards put on `_hbus.quarantine`, read back."""
    copies = []
    for n, destination in enumerate((PUBLIC_CLOUD, ARCHIVE)):
        step = guard(catalog, destination)
        batch = step.begin(at_ms)
        assert step.check_into(batch, topic, partition, 42, key, value, headers) is None
        (_, q_key, q_value, _, q_headers), = batch.quarantined
        copies.append(copy_from(q_key, q_value, q_headers, at_ms + n))
    return copies


@pytest.fixture(scope="module")
def v2_catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    return load_catalog_dir(catalog_with_licence_v2(tmp_path_factory.mktemp("catalog")))


def test_a_copy_read_back_is_the_original_record_and_both_guards_copies_are_one(v2_catalog: Catalog) -> None:
    value, headers = licence_v2(v2_catalog, "q-1")
    egress, archiver = quarantined_by_both(CATALOG, LICENCE_TOPIC, 4, b"q-1", value, headers)
    assert (egress.source_topic, egress.source_partition, egress.key, egress.value) == (LICENCE_TOPIC, 4, b"q-1", value)
    assert list(egress.headers) == headers  # what goes back is what came: the quarantine's additions are gone
    assert (egress.by, archiver.by) == ("egress", "archiver")
    assert egress.catalog_digest == CATALOG.digest and egress.grade == "important"  # undecodable: fail closed
    assert "does not decode" in egress.reason and egress.event_id == "q-1"
    entry, = group([archiver, egress])
    assert entry.copies == (egress, archiver) and entry.quarantined_at_ms == NOW_MS + 1
    other = quarantined_by_both(CATALOG, LICENCE_TOPIC, 4, b"q-1", value + b"x", headers)
    assert len(group([egress, archiver, *other])) == 2  # other bytes under the same id: another record


def test_a_record_is_named_by_its_event_id_or_its_digest_and_never_ambiguously(v2_catalog: Catalog) -> None:
    value, headers = licence_v2(v2_catalog, "q-2")
    entries = group(quarantined_by_both(CATALOG, LICENCE_TOPIC, 0, b"q-2", value, headers)
                    + quarantined_by_both(CATALOG, LICENCE_TOPIC, 0, b"q-3", value, licence_v2(v2_catalog, "q-3")[1]))
    assert find(entries, "q-2").event_id == "q-2"
    assert find(entries, entries[1].digest[:8]).event_id == "q-3"
    with pytest.raises(NotAllowed):
        find(entries, entries[1].digest[:6])  # too short to name a record
    twice = group(quarantined_by_both(CATALOG, LICENCE_TOPIC, 0, b"q-2", value + b"!", headers)) + entries
    with pytest.raises(NotAllowed, match="2 found"):
        find(twice, "q-2")


def test_what_list_and_show_print_carries_no_field_value(v2_catalog: Catalog) -> None:
    value, headers = licence_v2(v2_catalog, "q-4")
    entry, = group(quarantined_by_both(CATALOG, LICENCE_TOPIC, 1, b"q-4", value, headers))
    review = Review(entry.digest, "q-4", "wang.fang", NOW_MS, "vault:v1:x")
    row, = with_reviews([entry], {entry.digest: review})
    assert CANARY not in json.dumps(row, ensure_ascii=False)
    assert row["event_id"] == "q-4" and row["bytes"] == len(value) and row["by"] == ["archiver", "egress"]
    assert row["state"] == "proposed by wang.fang" and row["event_type"] == "market.licence_granted"
    look = assess(entry, guard(v2_catalog), None)
    assert CANARY not in json.dumps(look.as_dict(), ensure_ascii=False)


def test_the_guard_releases_nothing_before_the_catalog_change_and_the_v2_licence_after(v2_catalog: Catalog) -> None:
    value, headers = licence_v2(v2_catalog, "q-5")
    entry, = group(quarantined_by_both(CATALOG, LICENCE_TOPIC, 2, b"q-5", value, headers))
    before = assess(entry, guard(CATALOG), None)
    assert (before.public_now, before.refusal) == (False, G.STILL_NOT_PUBLIC)
    after = assess(entry, guard(v2_catalog), None)
    assert (after.public_now, after.grade_now, after.refusal) == (True, "public", None)
    assert after.event_type == "market.licence_granted"
    # Had the guards judged it under today's catalog already, with no rules since, nothing changed: it stays ...
    stamped_now = Entry(tuple(replace(c, catalog_digest=v2_catalog.digest) for c in entry.copies))
    assert assess(stamped_now, guard(v2_catalog), None).refusal == G.NO_CHANGE_SINCE
    # ... and a rules change after it was quarantined counts as a change.
    assert assess(entry, guard(v2_catalog), entry.quarantined_at_ms + 1).refusal is None


def test_a_record_that_is_still_not_public_stays_whatever_changed(v2_catalog: Catalog) -> None:
    record = next(r for r in sample_records(CATALOG, AvroCodec.for_catalog(CATALOG), per_type=1)
                  if r[0] == "ingress.govservice.citizen_feedback")
    _, _, key, value, headers = record
    assert value is not None and key is not None
    entry, = group(quarantined_by_both(CATALOG, "public.govservice.citizen_feedback_stats", 0, key, value,
                                       (headers or []) + [(H.DESTINATIONS, b"public_cloud,archive")]))
    look = assess(entry, guard(v2_catalog), entry.quarantined_at_ms + 1)
    assert (look.public_now, look.refusal) == (False, G.STILL_NOT_PUBLIC) and look.grade_now == "sensitive"


def test_a_review_round_trips_and_names_its_state() -> None:
    review = Review("d" * 64, "e1", "wang.fang", 5, "vault:v1:p", Signature(G.APPROVER, "zhang.min", "vault:v1:a"), 9)
    assert Review.from_bytes(review.to_bytes()) == review and review.released
    waiting = Review("d" * 64, "e1", "wang.fang", 5, "vault:v1:p")
    assert Review.from_bytes(waiting.to_bytes()) == waiting and not waiting.released
    assert [review_state(r) for r in (None, waiting, review)] == ["quarantined", "proposed by wang.fang", "released"]
    assert waiting.statement() == G.release_statement("d" * 64, "e1", 5, "wang.fang")
