"""Read whole topics back from the real clusters, for tests that assert on what came out."""
from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition

from hybridbus.adapters import kafka
from hybridbus.adapters.loaders import load_catalog
from producers.publisher import Publisher
from routing import headers as H

TOPIC = "public.market.licence_granted"  # a public event type the shipped rules export and archive


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


def read_topic(cluster: str, topic: str, timeout: float = 10.0, min_records: int = 0) -> list[Record]:
    """Every record now in `topic` (all partitions, from the beginning), read with the admin login.

    Waits until at least `min_records` are there or `timeout` passes, then returns what is there.
    """
    creds = kafka.admin_credentials(cluster)
    consumer: Consumer = kafka.consumer(cluster, creds, group=f"hbus-test-{uuid.uuid4().hex[:8]}",
                                        **{"enable.partition.eof": True})
    try:
        deadline = time.monotonic() + timeout
        while True:
            records = _read_once(consumer, topic, deadline)
            if len(records) >= min_records or time.monotonic() >= deadline:
                return records
            time.sleep(0.5)
    finally:
        consumer.close()


def _read_once(consumer: Consumer, topic: str, deadline: float) -> list[Record]:
    metadata = consumer.list_topics(topic, timeout=10)
    partitions = metadata.topics[topic].partitions
    ends = {}
    for p in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if high > low:
            ends[p] = high
    if not ends:
        return []
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    records: list[Record] = []
    done: set[int] = set()
    while len(done) < len(ends) and time.monotonic() < deadline + 30:
        for msg in consumer.consume(500, timeout=1.0):
            if msg.error():
                continue
            records.append(Record(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                                  {k: v for k, v in (msg.headers() or [])}))
            if msg.offset() + 1 >= ends[msg.partition()]:
                done.add(msg.partition())
    consumer.unassign()
    return records


def list_topics(cluster: str) -> list[str]:
    client = kafka.admin(cluster, kafka.admin_credentials(cluster))
    return sorted(t for t in client.list_topics(timeout=10).topics if not t.startswith("__"))


def end_offsets(cluster: str, topic: str) -> dict[int, int]:
    """The current end offset of every partition of `topic`, to read only what comes after."""
    creds = kafka.admin_credentials(cluster)
    consumer = kafka.consumer(cluster, creds, group=f"hbus-test-{uuid.uuid4().hex[:8]}")
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    finally:
        consumer.close()


def read_after(cluster: str, topic: str, since: dict[int, int], predicate=None, min_records: int = 1,  # type: ignore[no-untyped-def]
               timeout: float = 30.0) -> list[Record]:
    """Records of `topic` written after the `since` offsets (matching `predicate`), waiting for `min_records`."""
    creds = kafka.admin_credentials(cluster)
    consumer = kafka.consumer(cluster, creds, group=f"hbus-test-{uuid.uuid4().hex[:8]}")
    found: list[Record] = []
    try:
        consumer.assign([TopicPartition(topic, p, o) for p, o in since.items()])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(found) < min_records:
            for msg in consumer.consume(1000, timeout=0.5):
                if msg.error():
                    continue
                record = Record(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                                {k: v for k, v in (msg.headers() or [])})
                if predicate is None or predicate(record):
                    found.append(record)
        # Drain briefly so that duplicates arriving just after the minimum are seen too.
        for msg in consumer.consume(1000, timeout=1.0):
            if not msg.error():
                record = Record(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                                {k: v for k, v in (msg.headers() or [])})
                if predicate is None or predicate(record):
                    found.append(record)
        return found
    finally:
        consumer.close()


def publish_burst(count: int, publisher: Publisher | None = None) -> list[str]:
    """Publish `count` business licences (public, exported) as fast as the client goes; returns their ids."""
    catalog = load_catalog()
    publisher = publisher or Publisher.for_department("market", catalog=catalog)
    run = uuid.uuid4().hex[:8]
    ids = []
    for i in range(count):
        event_id = f"{run}-{i:06d}"
        publisher.publish_async("market.licence_granted", {
            "credit_code": f"91310000{i:010d}", "company_name": f"测试企业{run}-{i}", "licence_type": "有限责任公司",
            "district": "浦东新区", "business_scope": "软件开发", "granted_on": "2026-11-25"}, event_id=event_id)
        ids.append(event_id)
    assert publisher.flush(60) == 0
    return ids


def copies(cluster: str, since: dict[int, int], ids: list[str], timeout: float = 90.0) -> Counter[str]:
    """How many copies of each of `ids` are on TOPIC of `cluster` after the `since` offsets."""
    wanted = {i.encode() for i in ids}
    found = read_after(cluster, TOPIC, since, lambda r: r.headers.get(H.EVENT_ID) in wanted,
                       min_records=len(ids), timeout=timeout)
    return Counter(r.headers[H.EVENT_ID].decode() for r in found)


def assert_exactly_once(counts: Counter[str], ids: list[str], where: str) -> None:
    missing = [i for i in ids if counts[i] == 0]
    doubled = [i for i in ids if counts[i] > 1]
    assert not missing, f"{len(missing)} events missing on {where}, e.g. {missing[:3]}"
    assert not doubled, f"{len(doubled)} events duplicated on {where}, e.g. {doubled[:3]}"
