"""Read whole topics back from the real clusters, for tests that assert on what came out."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition

from hybridbus import kafka


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
