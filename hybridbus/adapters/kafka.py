"""The one factory for Kafka clients (confluent-kafka): every producer, consumer and admin is built here.

All clients speak SASL/SCRAM-SHA-512 over the listener of the cluster they name; settings stay Kafka's own.
"""
from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from hybridbus.adapters.config import Settings, settings
from hybridbus.adapters.secrets import KafkaCredentials, read_private
from hybridbus.adapters.topology import PRIVATE, PUBLIC


def bootstrap_servers(cluster: str, cfg: Settings | None = None) -> str:
    cfg = cfg or settings()
    if cluster == PRIVATE:
        return cfg.private_bootstrap  # type: ignore[return-value]
    if cluster == PUBLIC:
        return cfg.public_bootstrap  # type: ignore[return-value]
    raise ValueError(f"unknown cluster {cluster!r} (private or public)")


# librdkafka's own log lines go through Python logging, so they land where the process's logs go.
_RDKAFKA_LOG = logging.getLogger("hbus.rdkafka")


def client_config(cluster: str, creds: KafkaCredentials, cfg: Settings | None = None, **overrides: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "logger": _RDKAFKA_LOG,
        "bootstrap.servers": bootstrap_servers(cluster, cfg),
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": creds.username,
        "sasl.password": creds.password,
        # A one-broker cluster restarted leaves partitions without a leader in the client's metadata; a client
        # that waited for the default 5-minute refresh held its records until they timed out (seen in the
        # private-broker-restart drill). Ten seconds costs one small request per client.
        "topic.metadata.refresh.interval.ms": 10_000,
    }
    conf.update(overrides)
    return conf


def producer(cluster: str, creds: KafkaCredentials, **overrides: Any) -> Producer:
    """An idempotent, acks=all producer: nothing is acknowledged before every in-sync replica has it."""
    conf = {"enable.idempotence": True, "acks": "all", "linger.ms": 5, "compression.type": "lz4"}
    conf.update(overrides)
    return Producer(client_config(cluster, creds, **conf))


def consumer(cluster: str, creds: KafkaCredentials, group: str, **overrides: Any) -> Consumer:
    """A consumer that never commits on its own: callers commit after their output is acknowledged."""
    conf = {
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    }
    conf.update(overrides)
    return Consumer(client_config(cluster, creds, **conf))


def end_offset(consumer: Consumer, topic: str, partition: int, timeout: float) -> int:
    """The partition's end offset, waiting within `timeout` for a leader (see `watermarks`)."""
    return watermarks(consumer, topic, partition, timeout)[1]


def watermarks(consumer: Consumer, topic: str, partition: int, timeout: float) -> tuple[int, int]:
    """The partition's first and end offsets, waiting within `timeout` for a leader: a process that starts while
    the partition's leader moves (a broker lost or restarting) meets "not leader" first, and one that asks right
    after a topic was created may meet "unknown partition"; neither must fail it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                       timeout=max(0.5, deadline - time.monotonic()))
            return int(low), int(high)
        except KafkaException:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def read_all(cluster: str, creds: KafkaCredentials, topic: str, group: str, timeout: float = 60.0,
             max_records: int | None = None) -> Iterator[Message]:
    """Every record of `topic` (all partitions, from the earliest kept) up to the end offsets seen at the start,
    for the tools that review a whole topic (`hbus dlq`, `hbus quarantine`); within `timeout` seconds."""
    reader = consumer(cluster, creds, group=f"{group}-{uuid.uuid4().hex[:8]}")
    try:
        partitions = reader.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions}
        todo = {p: high for p, (low, high) in ends.items() if high > low}
        reader.assign([TopicPartition(topic, p, ends[p][0]) for p in todo])
        seen, deadline = 0, time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            for msg in reader.consume(500, timeout=1.0):
                if msg.error():
                    continue
                if msg.offset() + 1 >= todo.get(msg.partition(), 0):
                    todo.pop(msg.partition(), None)
                yield msg
                seen += 1
                if max_records is not None and seen >= max_records:
                    return
    finally:
        reader.close()


def admin(cluster: str, creds: KafkaCredentials, **overrides: Any) -> AdminClient:
    return AdminClient(client_config(cluster, creds, **overrides))


def admin_credentials(cluster: str, cfg: Settings | None = None) -> KafkaCredentials:
    """The local stack's super user of `cluster`, generated at `stack up` and kept under the state dir."""
    cfg = cfg or settings()
    data = read_private(cfg.secrets_dir / f"kafka-{cluster}-admin.json")
    return KafkaCredentials(data["username"], data["password"])
