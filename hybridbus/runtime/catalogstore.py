"""The catalog as one record: every schema file and the departments file, as `hbus catalog apply` publishes it
on the compacted `_hbus.catalog` topic and processors read it back.

A snapshot is the files' text, not a parsed catalog, so every reader checks it with the same `routing.catalog`
code that checks the files on disk, and its digest names exactly what was applied.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hybridbus.adapters.secrets import KafkaCredentials
from hybridbus.adapters.topology import CATALOG_TOPIC
from hybridbus.runtime.compacted import CompactedReader, write_record
from routing.catalog import Catalog
from routing.exceptions import SchemaError
from routing.sources import SourceFile

CATALOG_KEY = b"catalog"  # one record in force: the newest under this key
FORMAT = 1
DEPARTMENTS_FILE = "departments.yaml"

log = logging.getLogger("hbus.catalog")


class SnapshotError(SchemaError):
    """A catalog record that is not a snapshot this version of hybridbus can read."""


@dataclass(frozen=True)
class CatalogSnapshot:
    """`files`: `departments.yaml` and `<dept>/<event>.v<N>.avsc` (paths relative to the schemas directory)."""

    files: Mapping[str, str]
    applied_by: str = ""
    applied_at_ms: int = 0
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        canonical = json.dumps(dict(self.files), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        object.__setattr__(self, "digest", "sha256:" + hashlib.sha256(canonical.encode()).hexdigest())

    @classmethod
    def from_dir(cls, schemas_dir: Path | str, departments_file: Path | str | None = None,
                 applied_by: str = "", applied_at_ms: int = 0) -> CatalogSnapshot:
        """The snapshot of a catalog on disk (`schemas_dir/<dept>/*.avsc`, departments beside it by default)."""
        schemas_dir = Path(schemas_dir)
        departments = Path(departments_file or schemas_dir.parent / DEPARTMENTS_FILE)
        files = {DEPARTMENTS_FILE: departments.read_text(encoding="utf-8")}
        for path in sorted(schemas_dir.glob("*/*.avsc")):
            files[path.relative_to(schemas_dir).as_posix()] = path.read_text(encoding="utf-8")
        return cls(files, applied_by, applied_at_ms)

    def check(self, where: str = "_hbus.catalog") -> tuple[Catalog | None, list[SchemaError], list[str]]:
        """The catalog these files make, with every problem, as `Catalog.check` reports it for files on disk."""
        schemas = [SourceFile(f"{where}/{path}", text.encode()) for path, text in sorted(self.files.items())
                   if path != DEPARTMENTS_FILE]
        departments = SourceFile(f"{where}/{DEPARTMENTS_FILE}",
                                 self.files[DEPARTMENTS_FILE].encode() if DEPARTMENTS_FILE in self.files else None)
        return Catalog.check(schemas, departments, where)

    def catalog(self) -> Catalog:
        """The catalog; the first SchemaError when the files have any."""
        catalog, errors, _ = self.check()
        if errors:
            raise errors[0]
        assert catalog is not None
        return catalog

    def encode(self) -> bytes:
        return json.dumps({"format": FORMAT, "digest": self.digest, "files": dict(self.files),
                           "applied_by": self.applied_by, "applied_at_ms": self.applied_at_ms},
                          sort_keys=True, ensure_ascii=False).encode()

    @classmethod
    def decode(cls, data: bytes) -> CatalogSnapshot:
        """A snapshot read back; refuses another format or files that do not match the digest they came with."""
        try:
            raw = json.loads(data)
            if raw.get("format") != FORMAT:
                raise SnapshotError(f"catalog record of format {raw.get('format')!r}, expected {FORMAT}")
            snapshot = cls(dict(raw["files"]), str(raw.get("applied_by", "")), int(raw.get("applied_at_ms", 0)))
        except SnapshotError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SnapshotError(f"catalog record does not decode: {type(exc).__name__}") from None
        if snapshot.digest != raw.get("digest"):
            raise SnapshotError("catalog record's files do not match its digest")
        return snapshot


def latest_snapshot(creds: KafkaCredentials, timeout: float = 30.0) -> CatalogSnapshot | None:
    """The catalog in force on `_hbus.catalog`, as processors take it: the newest record that reads back; None when
    there is none, or when the newest is a tombstone (the schema files are in force then)."""
    reader = CompactedReader.connect(creds, CATALOG_TOPIC, "hbus-catalog-read")
    try:
        values = [msg.value() for msg in reader.load(timeout, to_end=True) if msg.key() == CATALOG_KEY]
    finally:
        reader.close()
    for value in reversed(values):
        if value is None:
            return None
        try:
            return CatalogSnapshot.decode(value)
        except SnapshotError as exc:  # never a catalog anyone could follow: the one before it is in force
            log.warning("event=catalog_record_skipped reason=%s", exc)
    return None


def publish_snapshot(snapshot: CatalogSnapshot, creds: KafkaCredentials) -> None:
    """Put `snapshot` on `_hbus.catalog` under `CATALOG_KEY`; processors check it and follow it between batches.
    Refused or not acknowledged within 30 s: DeliveryError naming the topic and the broker's reason."""
    write_record(creds, CATALOG_TOPIC, CATALOG_KEY, snapshot.encode(), "catalog")
