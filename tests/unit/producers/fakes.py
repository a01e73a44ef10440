"""A stand-in for confluent-kafka's Producer: acknowledges, refuses or never answers, as a test asks."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError


@dataclass
class FakeMessage:
    _topic: str
    _partition: int
    _offset: int
    _key: bytes
    _value: bytes
    _headers: list[tuple[str, bytes]]

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers


@dataclass
class FakeProducer:
    """mode: "ack" delivers on poll/flush; "silent" never reports (Kafka unreachable); "refuse" reports every
    event as refused by the broker's ACLs."""

    mode: str = "ack"
    sent: list[FakeMessage] = field(default_factory=list)
    _queued: list[tuple[FakeMessage, Callable[[Any, Any], None]]] = field(default_factory=list)

    def produce(self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]],
                on_delivery: Callable[[Any, Any], None]) -> None:
        msg = FakeMessage(topic, 0, len(self.sent) + len(self._queued), key, value, headers)
        self._queued.append((msg, on_delivery))

    def poll(self, timeout: float = 0.0) -> int:
        if self.mode == "silent":
            return 0
        served = len(self._queued)
        queued, self._queued = self._queued, []
        for msg, callback in queued:
            if self.mode == "refuse":
                callback(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), msg)
                continue
            self.sent.append(msg)
            callback(None, msg)
        return served

    def flush(self, timeout: float = 0.0) -> int:
        self.poll(0)
        return len(self._queued)
