"""Where the audit chain is kept: the one-partition `_hbus.audit` topic, and closed segments in the audit bucket.

Reads and writes only; what an entry is and how the chain is checked lives in `hybridbus.runtime.audit`.
"""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import TopicPartition

from hybridbus.adapters import kafka
from hybridbus.adapters.exceptions import DeliveryError
from hybridbus.adapters.secrets import KafkaCredentials
from hybridbus.adapters.topology import AUDIT_TOPIC, DECISIONS_TOPIC, PRIVATE
from hybridbus.runtime.audit import (
    SEGMENT_PREFIX,
    Located,
    archive_batches,
    closed_segments,
    closes_segment,
    last_checkpoint_index,
    manifest_key,
    segment_day,
    segment_name,
    segment_record,
)
from hybridbus.runtime.decisions import DecisionRecord

READ_TIMEOUT = 60.0
ARCHIVE_MAX_ENTRIES = 20_000  # entries in one archived object at most (unless one segment is longer)


def read_chain(creds: KafkaCredentials, topic: str = AUDIT_TOPIC, start: int = 0,
               stop_after: int | None = None) -> list[tuple[int, bytes]]:
    """`(offset, raw entry)` of partition 0 of `topic` from `start` to its end as it is now.

    With `stop_after`, the read ends at the first checkpoint once that many entries are in hand: a caller that
    works through a long backlog holds one bounded piece of it at a time, and every piece ends on a checkpoint.
    """
    consumer = kafka.consumer(PRIVATE, creds, group=f"hbus-audit-reader-{uuid.uuid4().hex[:8]}")
    try:
        tp = TopicPartition(topic, 0)
        low, high = consumer.get_watermark_offsets(tp, timeout=10)
        start = max(start, low)
        if start >= high:
            return []
        consumer.assign([TopicPartition(topic, 0, start)])
        found: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + READ_TIMEOUT
        while (not found or found[-1][0] + 1 < high) and time.monotonic() < deadline:
            for msg in consumer.consume(2000, timeout=1.0):
                if not msg.error() and msg.offset() < high:
                    found.append((msg.offset(), msg.value() or b""))
                    if stop_after is not None and len(found) >= stop_after and closes_segment(found[-1][1]):
                        return found
        if not found or found[-1][0] + 1 < high:
            raise TimeoutError(f"could not read {topic} up to offset {high}")
        return found
    finally:
        consumer.close()


def read_tail(creds: KafkaCredentials, reach: int) -> list[dict[str, Any]]:
    """The chain from its last checkpoint to its end: all a writer needs to go on after a restart.

    Looks `reach` entries back first (checkpoints come at least that often), then reads the whole chain.
    """
    consumer = kafka.consumer(PRIVATE, creds, group=f"hbus-audit-reader-{uuid.uuid4().hex[:8]}")
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(AUDIT_TOPIC, 0), timeout=10)
    finally:
        consumer.close()
    for start in (max(0, high - reach), 0):
        entries = [json.loads(raw) for _, raw in read_chain(creds, AUDIT_TOPIC, start)]
        index = last_checkpoint_index(entries)
        if index is not None:
            return entries[index:]
        if start == 0:
            return entries
    return []


def kafka_located(entries: list[tuple[int, bytes]], topic: str) -> list[Located]:
    return [Located(f"{topic}@{offset}", raw) for offset, raw in entries]


def record_decision(record: DecisionRecord) -> None:
    """Put one decision of a person (rules applied, secret rotated) on `_hbus.decisions` for the audit chain."""
    producer = kafka.producer(PRIVATE, kafka.admin_credentials(PRIVATE))
    errors: list[Any] = []
    producer.produce(DECISIONS_TOPIC, json.dumps([record.__dict__], ensure_ascii=False).encode(),
                     key=record.component.encode(), on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(30)
    if not errors or errors[0] is not None:
        raise DeliveryError(DECISIONS_TOPIC, f"the {record.verdict} decision was not acknowledged: {errors[0] if errors else 'timeout'}")


class AuditArchive:
    """Closed segments of the chain in the private audit bucket, filed by day, each day listed in its manifest."""

    def __init__(self, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
        self.s3 = s3
        self.bucket = bucket

    def days(self) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=SEGMENT_PREFIX, Delimiter="/")
        return sorted(p["Prefix"].removeprefix(SEGMENT_PREFIX).rstrip("/")
                      for page in pages for p in page.get("CommonPrefixes", []))

    def manifest(self, day: str) -> dict[str, Any]:
        try:
            return json.loads(self.s3.get_object(Bucket=self.bucket, Key=manifest_key(day))["Body"].read())
        except self.s3.exceptions.NoSuchKey:
            return {"topic": AUDIT_TOPIC, "day": day, "segments": [], "next_offset": 0}

    def segments(self) -> list[dict[str, Any]]:
        """Every archived segment's manifest line, in chain order."""
        return [segment for day in self.days() for segment in self.manifest(day)["segments"]]

    def catch_up(self, read: Callable[[int], list[tuple[int, bytes]]], max_entries: int = ARCHIVE_MAX_ENTRIES) -> int:
        """Archive every segment closed on the topic since the last day manifest's `next_offset`; returns how many
        objects were written.

        `read(offset)` gives the topic's entries from `offset`, all of them or a piece ending on a checkpoint; it
        is called again only while a piece ends on a checkpoint (one that ends in an open tail reached the end),
        and the manifests are written after each piece, so a long backlog is archived a bounded piece at a time. Closed segments that follow each other are written as one object
        of at most `max_entries` entries (never across a UTC day): under load the bucket gets fewer, larger
        objects and the manifests fewer lines. Each object is written before a manifest names it, so a crash
        between the two rewrites the same object next time.
        """
        days = self.days()
        next_offset = int(self.manifest(days[-1])["next_offset"]) if days else 0
        manifests: dict[str, dict[str, Any]] = {}
        written = 0
        while segments := closed_segments(piece := read(next_offset)):
            changed: set[str] = set()
            for end_offset, items in archive_batches(segments, max_entries):
                entries = [json.loads(raw) for _, raw in items]
                day = segment_day(entries[-1]["at_ms"])
                name = segment_name(day, entries[0]["seq"], entries[-1]["seq"])
                body = b"".join(raw + b"\n" for _, raw in items)
                self.s3.put_object(Bucket=self.bucket, Key=name, Body=body, ContentType="application/x-ndjson")
                manifest = manifests.setdefault(day, self.manifest(day))
                manifest["segments"].append(segment_record(name, body, entries, end_offset))
                manifest["next_offset"] = end_offset
                changed.add(day)
                written += 1
            for day in sorted(changed):
                manifest = manifests[day]
                manifest["updated_at_ms"] = int(time.time() * 1000)
                self.s3.put_object(Bucket=self.bucket, Key=manifest_key(day), ContentType="application/json",
                                   Body=json.dumps(manifest, indent=1, sort_keys=True).encode())
            next_offset = segments[-1][0]
            if next_offset != piece[-1][0] + 1:
                break  # the piece ends in an open tail: it reached the end of the topic
        return written

    def located(self, from_ms: int | None = None, to_ms: int | None = None) -> tuple[list[Located], list[str]]:
        """The archived entries in chain order, and the segments whose bytes differ from their manifest digest.

        With a time window, only the segments closed in it, the one after it, and the one before it (whose
        checkpoint anchors the walk) are read.
        """
        import hashlib

        located: list[Located] = []
        altered: list[str] = []
        segments = self.segments()
        closed = [s["last_at_ms"] for s in segments]
        first = max(0, next((i for i, at in enumerate(closed) if from_ms is None or at >= from_ms), len(closed)) - 1)
        last = next((i for i, at in enumerate(closed) if to_ms is not None and at >= to_ms), len(closed))
        for segment in segments[first:last + 1]:
            body = self.s3.get_object(Bucket=self.bucket, Key=segment["name"])["Body"].read()
            if hashlib.sha256(body).hexdigest() != segment["sha256"]:
                altered.append(segment["name"])
            located += [Located(f"{segment['name']}:{line}", raw)
                        for line, raw in enumerate(body.splitlines(), start=1) if raw]
        return located, altered
