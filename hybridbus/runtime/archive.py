"""The open-data archive on S3: Avro object container files with deterministic names, a daily manifest, and the
schema of every type that reaches the public side under `_schemas/<fingerprint>.avsc`.

A batch covers one partition's offsets `first..last`; its object name says so, so a retry rewrites the same
object and a restart can tell what is already archived.
"""
from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from fastavro import parse_schema, writer

from hybridbus.adapters.codec import schema_fingerprint
from routing.catalog import EventType

OFFSET_WIDTH = 12
SCHEMAS_PREFIX = "_schemas/"


@dataclass(frozen=True)
class ArchivedRecord:
    offset: int
    event_id: str
    payload: Mapping[str, Any]


def folder(event_type: EventType, day: str) -> str:
    return f"{event_type.dept}/{event_type.event}/v{event_type.version}/dt={day}"


def object_name(event_type: EventType, day: str, partition: int, first: int, last: int) -> str:
    return f"{folder(event_type, day)}/{partition}-{first:0{OFFSET_WIDTH}d}-{last:0{OFFSET_WIDTH}d}.avro"


def object_prefix(event_type: EventType, day: str, partition: int, first: int) -> str:
    return f"{folder(event_type, day)}/{partition}-{first:0{OFFSET_WIDTH}d}-"


def last_offset_of(key: str) -> int:
    return int(key.rsplit("-", 1)[1].removesuffix(".avro"))


def schema_key(event_type: EventType) -> str:
    """Where a public consumer finds the writer schema of a record: by the 8 fingerprint bytes its single-object
    header carries (bytes 2 to 10, CRC-64-AVRO little-endian), in hex as they stand on the wire."""
    return f"{SCHEMAS_PREFIX}{schema_fingerprint(event_type.schema).hex()}.avsc"


def schema_document(event_type: EventType) -> bytes:
    """The schema file as the catalog (or the rule, for a derived view) writes it, grades included."""
    return json.dumps(event_type.schema, ensure_ascii=False, indent=1).encode("utf-8")


def day_of(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


def container_bytes(event_type: EventType, records: Sequence[ArchivedRecord]) -> bytes:
    """An Avro object container file readable by any Avro tool; event ids ride in the file metadata.

    The sync marker is derived from the content so that a retry writes byte-identical objects.
    """
    out = io.BytesIO()
    ids = [r.event_id for r in records]
    sync = hashlib.sha256(json.dumps([event_type.key, event_type.version, records[0].offset, ids]).encode()).digest()[:16]
    writer(out, parse_schema(dict(event_type.schema), _write_hint=False), [dict(r.payload) for r in records],
           codec="deflate", sync_marker=sync,
           metadata={"hbus.event_type": event_type.key, "hbus.version": str(event_type.version),
                     "hbus.first_offset": str(records[0].offset), "hbus.last_offset": str(records[-1].offset),
                     "hbus.event_ids": json.dumps(ids)})
    return out.getvalue()


class Archive:
    """Writes batches and keeps the day's manifest beside them (objects, record counts, sha256)."""

    def __init__(self, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
        self.s3 = s3
        self.bucket = bucket
        self._shelved: set[str] | None = None  # the `_schemas/` keys known to be there: listed once, then kept
        self._schema_keys: dict[int, tuple[EventType, str]] = {}  # by id: a fingerprint is computed once per type

    def ensure_schemas(self, event_types: Iterable[EventType]) -> list[str]:
        """Put the schema of each type that `_schemas/` does not hold yet; the keys written.

        The prefix is listed on the first call only; after that a call for types already there sends no request.
        Writing the same key twice (two workers) writes the same bytes.
        """
        wanted: dict[str, EventType] = {}
        for event_type in event_types:
            known = self._schema_keys.get(id(event_type))
            if known is None or known[0] is not event_type:
                known = self._schema_keys[id(event_type)] = (event_type, schema_key(event_type))
            wanted.setdefault(known[1], event_type)
        if self._shelved is None:
            self._shelved = self._listed(SCHEMAS_PREFIX)
        written = []
        for key, event_type in wanted.items():
            if key not in self._shelved:
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=schema_document(event_type),
                                   ContentType="application/json")
                self._shelved.add(key)
                written.append(key)
        return written

    def _listed(self, prefix: str) -> set[str]:
        """Every key under `prefix`, page after page."""
        keys: set[str] = set()
        more: dict[str, str] = {}
        while True:
            page = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix, **more)
            keys.update(o["Key"] for o in page.get("Contents", []))
            if not page.get("IsTruncated"):
                return keys
            more = {"ContinuationToken": page["NextContinuationToken"]}

    def existing_last(self, event_type: EventType, day: str, partition: int, first: int) -> int | None:
        """If a batch starting at `first` is already archived, its last offset."""
        listing = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=object_prefix(event_type, day, partition, first))
        keys = [o["Key"] for o in listing.get("Contents", [])]
        return max((last_offset_of(k) for k in keys), default=None)

    def unarchived(self, event_type: EventType, day: str, partition: int,
                   records: Sequence[ArchivedRecord]) -> list[ArchivedRecord]:
        """The records of a batch that no object holds yet.

        A batch replayed after a crash may cover several objects the crashed run wrote, cut at other places:
        they are followed one after the other, each starting at the first record after the one before.
        """
        todo = list(records)
        while todo:
            done = self.existing_last(event_type, day, partition, todo[0].offset)
            if done is None:
                break
            todo = [r for r in todo if r.offset > done]
        return todo

    def put_batch(self, event_type: EventType, day: str, partition: int, records: Sequence[ArchivedRecord]) -> tuple[str, int]:
        self.ensure_schemas([event_type])  # the schema is there before the first record of its type
        body = container_bytes(event_type, records)
        key = object_name(event_type, day, partition, records[0].offset, records[-1].offset)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/avro")
        self._update_manifest(event_type, day, key, len(records), hashlib.sha256(body).hexdigest(), len(body))
        return key, len(body)

    def _update_manifest(self, event_type: EventType, day: str, key: str, count: int, sha256: str, size: int) -> None:
        manifest_key = f"{folder(event_type, day)}/_manifest.json"
        try:
            manifest = json.loads(self.s3.get_object(Bucket=self.bucket, Key=manifest_key)["Body"].read())
        except self.s3.exceptions.NoSuchKey:
            manifest = {"event_type": event_type.key, "version": event_type.version, "day": day, "objects": {}}
        manifest["objects"][key] = {"records": count, "sha256": sha256, "bytes": size}
        manifest["records"] = sum(o["records"] for o in manifest["objects"].values())
        manifest["updated_at_ms"] = int(time.time() * 1000)
        self.s3.put_object(Bucket=self.bucket, Key=manifest_key, Body=json.dumps(manifest, indent=1, sort_keys=True).encode(),
                           ContentType="application/json")
