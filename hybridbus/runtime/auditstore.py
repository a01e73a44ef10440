"""Where the audit chain is kept: the one-partition `_hbus.audit` topic, and closed segments in the audit bucket.

Reads and writes only; what an entry is and how the chain is checked lives in `hybridbus.runtime.audit`.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from typing import Any

from confluent_kafka import TopicPartition

from hybridbus.adapters import kafka
from hybridbus.adapters.exceptions import DeliveryError
from hybridbus.adapters.secrets import KafkaCredentials
from hybridbus.adapters.topology import AUDIT_TOPIC, DECISIONS_TOPIC, PRIVATE
from hybridbus.runtime.audit import (
    CHECKPOINT,
    SEGMENT_PREFIX,
    Chain,
    Located,
    archive_batches,
    closed_segments,
    closes_segment,
    manifest_key,
    segment_day,
    segment_name,
    segment_record,
)
from hybridbus.runtime.decisions import DecisionRecord

READ_TIMEOUT = 60.0
ARCHIVE_MAX_ENTRIES = 20_000  # entries in one archived object at most (unless one segment is longer)
# librdkafka fetches ahead up to 64 MB per partition by default: reading back the chain (a few hundred bytes an
# entry) that much ahead only costs memory, and the writer kept most of it after each read.
READ_AHEAD = {"queued.max.messages.kbytes": 4096, "fetch.max.bytes": 4 * 1024 * 1024}


def read_chain(creds: KafkaCredentials, topic: str = AUDIT_TOPIC, start: int = 0,
               stop_after: int | None = None) -> list[tuple[int, bytes]]:
    """`(offset, raw entry)` of partition 0 of `topic` from `start` to its end as it is now.

    With `stop_after`, the read ends at the first checkpoint once that many entries are in hand: a caller that
    works through a long backlog holds one bounded piece of it at a time, and every piece ends on a checkpoint.
    """
    found: list[tuple[int, bytes]] = []
    with closing(stored_entries(creds, topic, start)) as entries:
        for offset, raw in entries:
            found.append((offset, raw))
            if stop_after is not None and len(found) >= stop_after and closes_segment(raw):
                break
    return found


def stored_entries(creds: KafkaCredentials, topic: str = AUDIT_TOPIC, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """`(offset, raw entry)` of partition 0 of `topic` from `start` to its end as it is now, a fetch at a time."""
    consumer = kafka.consumer(PRIVATE, creds, group=f"hbus-audit-reader-{uuid.uuid4().hex[:8]}", **READ_AHEAD)
    try:
        tp = TopicPartition(topic, 0)
        low, high = consumer.get_watermark_offsets(tp, timeout=10)
        start = max(start, low)
        if start >= high:
            return
        consumer.assign([TopicPartition(topic, 0, start)])
        last = start - 1
        deadline = time.monotonic() + READ_TIMEOUT
        while last + 1 < high:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} up to offset {high}")
            for msg in consumer.consume(2000, timeout=1.0):
                if not msg.error() and last < msg.offset() < high:
                    last = msg.offset()
                    deadline = time.monotonic() + READ_TIMEOUT  # a long read is fine while it moves
                    yield last, msg.value() or b""
    finally:
        consumer.close()


def resume_chain(creds: KafkaCredentials, reach: int) -> Chain:
    """The chain's head as stored: all a writer needs to go on after a restart.

    Follows the entries from `reach` entries before the end, and from further back each time no checkpoint was
    among them (a checkpoint carries every position). Holds one entry at a time however long the tail is.
    """
    consumer = kafka.consumer(PRIVATE, creds, group=f"hbus-audit-reader-{uuid.uuid4().hex[:8]}")
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(AUDIT_TOPIC, 0), timeout=10)
    finally:
        consumer.close()
    start = high
    while True:
        start = max(low, start - reach)
        chain, checkpointed = Chain(), False
        for _, raw in stored_entries(creds, AUDIT_TOPIC, start):
            entry = json.loads(raw)  # an unreadable tail stops the writer: it must not guess where the chain is
            chain.follow(entry)
            checkpointed = checkpointed or entry.get("kind") == CHECKPOINT
        if checkpointed or start == low:
            return chain
        reach *= 2


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


class RecentEntries:
    """The entries this writer appended lately, as stored, so that the archive copies them without reading them
    back from Kafka. Holds at most `limit` of them, an unbroken run of offsets; an archive further behind reads
    the topic instead.

    The writer adds and the archive reads from their own threads.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._first = 0  # the offset of _raws[0]
        self._raws: list[bytes] = []
        self._lock = threading.Lock()

    def add(self, first: int, raws: Sequence[bytes]) -> None:
        """Entries Kafka acknowledged at offsets `first`, `first + 1`, …"""
        if not raws:
            return
        with self._lock:
            if first != self._first + len(self._raws):
                self._first, self._raws = first, []  # not where the last ones ended: start over from these
            self._raws.extend(raws)
            if len(self._raws) > self.limit:
                self._first += len(self._raws) - self.limit
                del self._raws[:len(self._raws) - self.limit]

    def forget(self) -> None:
        """Hold nothing: what was written lately is known only to the topic (something else wrote in between)."""
        with self._lock:
            self._first, self._raws = 0, []

    def read(self, start: int, stop_after: int | None = None) -> list[tuple[int, bytes]] | None:
        """What `read_chain` would read from `start`, or None when the entries from `start` on are not all held.

        Entries before `start` are forgotten: the archive never asks for them again.
        """
        with self._lock:
            if not self._raws or not self._first <= start <= self._first + len(self._raws):
                return None
            del self._raws[:start - self._first]
            self._first = start
            end = len(self._raws)
            if stop_after is not None:
                end = next((index + 1 for index in range(stop_after - 1, len(self._raws))
                            if closes_segment(self._raws[index])), end)
            return list(zip(range(start, start + end), self._raws[:end]))


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
                first, closing = json.loads(items[0][1]), json.loads(items[-1][1])
                day = segment_day(closing["at_ms"])
                name = segment_name(day, first["seq"], closing["seq"])
                body = b"\n".join([raw for _, raw in items] + [b""])  # a line each, no copy per entry
                self.s3.put_object(Bucket=self.bucket, Key=name, Body=body, ContentType="application/x-ndjson")
                manifest = manifests.setdefault(day, self.manifest(day))
                manifest["segments"].append(segment_record(name, body, first, closing, len(items), end_offset))
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
