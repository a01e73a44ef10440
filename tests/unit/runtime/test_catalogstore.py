"""The catalog snapshot: what `_hbus.catalog` carries reads back to the same catalog, and nothing else does."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybridbus.adapters.loaders import load_catalog_dir
from hybridbus.runtime.catalogstore import CatalogSnapshot, SnapshotError

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas" / "avro"


def _types(catalog):  # type: ignore[no-untyped-def]
    return sorted((t.key, t.version, t.record_grade.id, tuple(sorted(t.field_grades.items()))) for t in catalog)


def test_snapshot_reads_back_to_the_catalog_on_disk() -> None:
    snapshot = CatalogSnapshot.from_dir(SCHEMAS, applied_by="li.wei", applied_at_ms=1)
    back = CatalogSnapshot.decode(snapshot.encode())
    assert back == snapshot and back.digest == snapshot.digest
    assert _types(back.catalog()) == _types(load_catalog_dir(SCHEMAS))


def test_digest_names_the_files_not_who_applied_them() -> None:
    a = CatalogSnapshot({"departments.yaml": "x"}, "li.wei", 1)
    assert a.digest == CatalogSnapshot({"departments.yaml": "x"}, "zhang.min", 2).digest
    assert a.digest != CatalogSnapshot({"departments.yaml": "y"}).digest


def test_a_record_whose_files_do_not_match_its_digest_is_refused() -> None:
    raw = json.loads(CatalogSnapshot.from_dir(SCHEMAS).encode())
    raw["files"]["departments.yaml"] += "\n# changed after signing\n"
    with pytest.raises(SnapshotError, match="digest"):
        CatalogSnapshot.decode(json.dumps(raw).encode())


@pytest.mark.parametrize("data", [b"not json", b"{}", b'{"format": 2}', b'{"format": 1, "files": 3}'])
def test_records_that_are_not_snapshots_are_refused(data: bytes) -> None:
    with pytest.raises(SnapshotError):
        CatalogSnapshot.decode(data)


def test_a_broken_schema_in_a_snapshot_is_named() -> None:
    files = dict(CatalogSnapshot.from_dir(SCHEMAS).files)
    files["market/licence_granted.v9.avsc"] = "{ not avro"
    _, errors, _ = CatalogSnapshot(files).check()
    assert any("licence_granted.v9" in str(e) for e in errors)
