"""Following `_hbus.catalog`: the newest snapshot that decodes and checks is followed; anything else is refused,
counted, and the catalog in force stays."""
from __future__ import annotations

import json

from prometheus_client import REGISTRY

from hybridbus.runtime.catalogfeed import TOPIC, CatalogFollower, CatalogInForce
from hybridbus.runtime.catalogstore import CatalogSnapshot
from tests.catalog_change import NEW_TYPE, NEW_VERSION, SCHEMAS, changed_snapshot


def refused(component: str, reason: str) -> float:
    return REGISTRY.get_sample_value("hbus_catalog_refused_total", {"component": component, "reason": reason}) or 0.0


def in_force_digest(component: str) -> list[str]:
    return [s.labels["digest"] for m in REGISTRY.collect() if m.name == "hbus_catalog_info" for s in m.samples
            if s.labels.get("component") == component and s.value == 1]


def shipped() -> CatalogInForce:
    snapshot = CatalogSnapshot.from_dir(SCHEMAS)
    return CatalogInForce(snapshot.catalog(), snapshot.digest, "files")


def test_the_newest_valid_snapshot_is_followed_with_its_new_type_and_version() -> None:
    follower = CatalogFollower("unit-follow")
    follower.take(shipped())
    changed = changed_snapshot()
    switched = follower.follow([CatalogSnapshot.from_dir(SCHEMAS, applied_by="older").encode(), changed.encode()])
    assert switched is not None and switched.digest == changed.digest and switched.source == TOPIC
    assert switched.catalog.get(NEW_TYPE).version == 1
    assert switched.catalog.get(NEW_VERSION[0], NEW_VERSION[1]).version == 2
    assert in_force_digest("unit-follow") == [changed.digest]
    assert follower.follow([changed.encode()]) is None  # the same catalog again: nothing to switch


def test_a_snapshot_that_does_not_decode_or_check_is_refused_and_the_catalog_in_force_stays() -> None:
    follower = CatalogFollower("unit-refuse")
    start = follower.take(shipped())
    broken_files = {**changed_snapshot().files, "market/licence_granted.v3.avsc": "{ not avro"}
    tampered = json.loads(changed_snapshot().encode())
    tampered["files"]["departments.yaml"] += "\n# edited after the digest\n"
    assert follower.follow([b"not a snapshot"]) is None
    assert follower.follow([json.dumps(tampered).encode()]) is None
    assert follower.follow([CatalogSnapshot(broken_files).encode()]) is None
    assert follower.in_force is start
    assert in_force_digest("unit-refuse") == [start.digest]
    assert refused("unit-refuse", "undecodable") == 2 and refused("unit-refuse", "invalid") == 1


def test_an_older_valid_snapshot_is_followed_when_the_newest_is_refused() -> None:
    follower = CatalogFollower("unit-older")
    changed = changed_snapshot()
    switched = follower.follow([changed.encode(), b"{garbage"])  # a start: nothing in force yet
    assert switched is not None and switched.digest == changed.digest
    assert refused("unit-older", "undecodable") == 1


def test_a_tombstone_puts_the_schema_files_back_in_force() -> None:
    follower = CatalogFollower("unit-tombstone", files=shipped)
    changed = changed_snapshot()
    assert follower.follow([changed.encode()]) is not None
    back = follower.follow([None])
    assert back is not None and back.source == "files" and back.digest == shipped().digest
    assert follower.follow([None]) is None  # already on the files
