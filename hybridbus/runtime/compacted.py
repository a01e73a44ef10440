"""Reading a one-partition compacted topic the way processors follow one (`_hbus.rules`, `_hbus.catalog`): everything
on it at start, up to the end offset seen then, and afterwards whatever arrives, in topic order; and writing one
record to such a topic, acknowledged.

One reader, so the feeds share how a start waits out a moving leader and what counts as "read to the end".
"""
from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Message, TopicPartition

from hybridbus.adapters import kafka
from hybridbus.adapters.producer import BatchProducer
from hybridbus.adapters.secrets import KafkaCredentials
from hybridbus.adapters.topology import PRIVATE


class CompactedReader:
    """Follows partition 0 of `topic` from its beginning; `load()` once at start, then `poll()`."""

    def __init__(self, consumer: Consumer, topic: str) -> None:
        self.topic = topic
        self._consumer = consumer

    @classmethod
    def connect(cls, creds: KafkaCredentials, topic: str, group_prefix: str) -> CompactedReader:
        """A reader of its own (a group named once per process: it never commits, it always starts at 0)."""
        consumer = kafka.consumer(PRIVATE, creds, group=f"{group_prefix}-{uuid.uuid4().hex[:8]}",
                                  **{"enable.partition.eof": False})
        consumer.assign([TopicPartition(topic, 0, 0)])
        return cls(consumer, topic)

    def load(self, timeout: float = 60.0, to_end: bool = False) -> list[Message]:
        """Every record on the topic now (values None included): read up to the end offset seen at call time.

        A processor starting while the partition's leader moves (a broker lost or restarting) waits for the new
        leader, within `timeout`, rather than exit on the first "not leader". Reading stops at `timeout` too,
        unless `to_end`: then it goes on until the end is reached, however long that takes.
        """
        deadline = time.monotonic() + timeout
        high = kafka.end_offset(self._consumer, self.topic, 0, timeout)
        records: list[Message] = []
        position = 0
        while position < high and (to_end or time.monotonic() < deadline):
            for msg in self._consumer.consume(100, timeout=0.5):
                if msg.error():
                    continue
                position = msg.offset() + 1
                records.append(msg)
        return records

    def poll(self, timeout: float = 0) -> list[Message]:
        """The records that arrived since the last call (none waited for beyond `timeout`)."""
        return [msg for msg in self._consumer.consume(100, timeout=timeout) if not msg.error()]

    def close(self) -> None:
        self._consumer.close()


def write_record(creds: KafkaCredentials, topic: str, key: bytes, value: bytes, component: str) -> None:
    """Put one record on a private control topic and wait for it: refused or not acknowledged within 30 s,
    DeliveryError naming the topic and the broker's reason."""
    outputs = BatchProducer.connect(PRIVATE, creds, component, **{"message.timeout.ms": 30_000})
    outputs.send(topic, key, value)
    outputs.confirm()
