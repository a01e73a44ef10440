"""The leak scan: read every record of every topic on the public cluster and every object in the open-data
bucket (or only what came after a mark), and count the canaries found. Non-public canaries found must be zero;
public ones must not be.
"""
from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from confluent_kafka import TopicPartition
from fastavro import reader

from hybridbus.adapters import kafka
from hybridbus.adapters.config import Settings
from hybridbus.adapters.secrets import KafkaCredentials
from hybridbus.adapters.topology import PUBLIC
from hybridbus.ops.samples import OPEN_CANARY, SECRET_CANARY
from hybridbus.ops.stack.bootstrap import s3_admin_client

_SECRET = SECRET_CANARY.encode()
_OPEN = OPEN_CANARY.encode()


@dataclass
class ScanReport:
    records: int = 0
    objects: int = 0
    leaked: int = 0
    open_found: int = 0
    leaked_where: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:  # type: ignore[type-arg]
        return {"records_scanned": self.records, "objects_scanned": self.objects, "leaked": self.leaked,
                "public_canaries_found": self.open_found, "leaked_where": self.leaked_where[:20]}


@dataclass(frozen=True)
class Mark:
    """Where the public side stood at one moment: each partition's end offset and the bucket's keys. A scan from a
    mark reads everything written after it, by anyone, to any topic or object (new topics included)."""

    offsets: Mapping[tuple[str, int], int]
    keys: frozenset[str]


def mark(creds: KafkaCredentials, s3, bucket: str) -> Mark:  # type: ignore[no-untyped-def]
    consumer = kafka.consumer("public", creds, group=f"hbus-leakscan-{uuid.uuid4().hex[:8]}")
    try:
        offsets = {place: high for place, (_low, high) in _watermarks(consumer)}
    finally:
        consumer.close()
    return Mark(offsets, frozenset(bucket_keys(s3, bucket)))


def scan_since(mark: Mark, creds: KafkaCredentials, s3, bucket: str) -> ScanReport:  # type: ignore[no-untyped-def]
    """Everything written to the public side after `mark`."""
    report = scan_public_cluster(creds, since=mark.offsets)
    return scan_bucket(s3, bucket, report, skip=mark.keys)


def scan_public_cluster(creds: KafkaCredentials, report: ScanReport | None = None, timeout: float = 60.0,
                        since: Mapping[tuple[str, int], int] | None = None) -> ScanReport:
    """Every record (value, key and headers) of every topic on the public cluster (after `since`, when given)."""
    report = report or ScanReport()
    since = since or {}
    consumer = kafka.consumer("public", creds, group=f"hbus-leakscan-{uuid.uuid4().hex[:8]}")
    try:
        for (topic, p), (low, high) in _watermarks(consumer):
            low = max(low, since.get((topic, p), 0))
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, p, low)])
            position, deadline = low, time.monotonic() + timeout
            while position < high and time.monotonic() < deadline:
                for msg in consumer.consume(1000, timeout=1.0):
                    if msg.error():
                        continue
                    position = msg.offset() + 1
                    scan_record(report, msg)
            consumer.unassign()
    finally:
        consumer.close()
    return report


def _watermarks(consumer) -> Iterator[tuple[tuple[str, int], tuple[int, int]]]:  # type: ignore[no-untyped-def]
    """((topic, partition), (low, high)) of every partition of every topic on the cluster but Kafka's own."""
    for topic, meta in consumer.list_topics(timeout=10).topics.items():
        if not topic.startswith("__"):
            for p in meta.partitions:
                yield (topic, p), consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)


def scan_record(report: ScanReport, msg) -> None:  # type: ignore[no-untyped-def]
    """One Kafka record: value, key and headers."""
    blob = b"".join([msg.value() or b"", msg.key() or b""] + [v or b"" for _, v in (msg.headers() or [])])
    count_canaries(report, blob, f"kafka:{msg.topic()}[{msg.partition()}]@{msg.offset()}")
    report.records += 1


def scan_bucket(s3, bucket: str, report: ScanReport | None = None,  # type: ignore[no-untyped-def]
                skip: frozenset[str] = frozenset()) -> ScanReport:
    """Every object in the bucket (but those in `skip`), raw and — for Avro container files — decoded (their
    blocks are compressed)."""
    report = report or ScanReport()
    for key in bucket_keys(s3, bucket):
        if key not in skip:
            scan_object(report, bucket, key, s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    return report


def bucket_keys(s3, bucket: str) -> Iterator[str]:  # type: ignore[no-untyped-def]
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        yield from (obj["Key"] for obj in page.get("Contents", []))


def scan_object(report: ScanReport, bucket: str, key: str, body: bytes) -> None:
    """One object, raw and — for an Avro container file — decoded (its blocks are compressed)."""
    report.objects += 1
    text = body
    if key.endswith(".avro"):
        records = list(reader(io.BytesIO(body)))
        report.records += len(records)
        text = json.dumps(records, ensure_ascii=False).encode()
    count_canaries(report, text, f"s3://{bucket}/{key}")


def count_canaries(report: ScanReport, blob: bytes, where: str) -> None:
    """Count the canaries in one record or object; scans that read the public side themselves call it too."""
    leaks = blob.count(_SECRET)
    if leaks:
        report.leaked += leaks
        report.leaked_where.append(where)
    report.open_found += blob.count(_OPEN)


def scan_public_side(cfg: Settings) -> ScanReport:
    """All the public side holds on the local stack: every record of the public cluster, every object of the bucket."""
    report = scan_public_cluster(kafka.admin_credentials(PUBLIC, cfg))
    return scan_bucket(s3_admin_client(cfg), cfg.open_data_bucket, report)
