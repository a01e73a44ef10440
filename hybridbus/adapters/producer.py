"""The one producer adapter every output of every processor goes through: hand records over, confirm the batch.

librdkafka batches, compresses and waits for acknowledgements in its own threads; Python hears only of refusals.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from hybridbus.adapters import kafka, metrics
from hybridbus.adapters.exceptions import DeliveryError
from hybridbus.adapters.secrets import KafkaCredentials

log = logging.getLogger("hbus.producer")

PAUSED_AFTER = 3.0  # seconds a confirm may wait before the paused gauge says the processor waits for Kafka
FLUSH_STEP = 0.5  # seconds per flush call while confirming, so the wait is noticed and the gauge set on time
BACKOFF = 0.05  # seconds to let librdkafka deliver when its local queue is full

# Settings for a processor's batch writer; callers' overrides win (egress: message.timeout.ms=0; the audit
# writer: max.in.flight 5, message.timeout.ms=0). Idempotence and acks=all come from `kafka.producer`.
# Producers of a writer to many topics (the router's graded topics): see `BatchProducer`.
WIDE_LANES = 4
BATCH_DEFAULTS: dict[str, Any] = {"linger.ms": 5, "batch.num.messages": 10_000, "queue.buffering.max.messages": 200_000}


class ProducerLike(Protocol):
    """What the adapter uses of confluent_kafka.Producer (a fake one serves the unit tests)."""

    def produce(self, topic: str, value: bytes | None = ..., key: bytes | None = ..., partition: int = ...,
                **kwargs: Any) -> None: ...

    def poll(self, timeout: float = ...) -> int: ...

    def flush(self, timeout: float = ...) -> int: ...


class Refusals:
    """The delivery failures of a producer since the last confirm, collected by its one producer-level callback.

    With `delivery.report.only.error` the callback runs only for a refused record; a delivered one costs no
    Python call at all.
    """

    def __init__(self) -> None:
        self._refused: list[tuple[str, str]] = []  # (topic, reason)
        self._fatal: str | None = None

    def delivered(self, err: Any, msg: Any) -> None:
        """librdkafka's delivery report (`on_delivery`); only ever called for a failure here."""
        if err is not None:
            topic = msg.topic() if msg is not None else None
            self._refused.append((topic or "?", err.str()))

    def client_error(self, err: Any) -> None:
        """librdkafka's error callback: connection trouble is retried by librdkafka; a fatal error is not."""
        log.warning("event=kafka_client_error code=%s fatal=%s reason=%r", err.name(), err.fatal(), err.str())
        if err.fatal():
            self._fatal = err.str()

    def take(self) -> DeliveryError | None:
        """The error to raise for the batch just confirmed (and forget it), or None when all was delivered."""
        if self._fatal is not None:
            return DeliveryError("(producer)", f"fatal producer error: {self._fatal}", max(len(self._refused), 1))
        if not self._refused:
            return None
        refused, self._refused = self._refused, []
        topics = sorted({topic for topic, _ in refused})
        return DeliveryError(",".join(topics), refused[0][1], len(refused))


class BatchProducer:
    """A processor's writer to one cluster, a batch at a time.

    `send` hands a record over without waiting; `confirm` blocks until Kafka acknowledged every record handed over
    since the last confirm and raises `DeliveryError` (topic, reason, count) if any was refused, so a processor
    commits a batch's offsets only after all of its outputs. While a confirm waits longer than PAUSED_AFTER
    seconds, `hbus_paused{component, dependency}` is 1.

    `lanes`: more librdkafka producers, each with its own connections, the topics dealt out among them in the order
    they are first written (all partitions of a topic on one lane, so each stays in order). librdkafka sends one
    request per partition and a broker answers one connection's requests one at a time: a batch that touches a
    hundred partitions waits for a hundred round trips on one connection, a quarter of that on four.
    """

    def __init__(self, producer: ProducerLike, refusals: Refusals, component: str, dependency: str,
                 lanes: Sequence[ProducerLike] = ()) -> None:
        self.producer = producer
        self.lanes = [producer, *lanes]
        self._lane_of: dict[str, ProducerLike] = {}
        self.refusals = refusals
        self.component = component
        self.dependency = dependency
        self._paused = metrics.PAUSED.labels(component, dependency)
        self._paused.set(0)  # the series exists from the start, so a dashboard shows "not paused", not "no data"

    @classmethod
    def connect(cls, cluster: str, creds: KafkaCredentials, component: str, dependency: str | None = None,
                lanes: int = 1, **overrides: Any) -> BatchProducer:
        """A batch writer to `cluster` (private or public) over `lanes` producers; `overrides` are librdkafka
        settings."""
        refusals = Refusals()
        conf = {**BATCH_DEFAULTS, **overrides,
                # One producer-level callback, reached only for failures; success is counted by flush alone.
                "delivery.report.only.error": True, "on_delivery": refusals.delivered,
                "error_cb": refusals.client_error}
        producers = [kafka.producer(cluster, creds, **conf) for _ in range(lanes)]
        return cls(producers[0], refusals, component, dependency or f"{cluster}-kafka", producers[1:])

    def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
             headers: list[tuple[str, bytes]] | None = None) -> None:
        """Hand one record over; when librdkafka's queue is full, let it deliver some first (never drop)."""
        lane = self._lane_of.get(topic) or self._new_lane(topic)
        while True:
            try:
                lane.produce(topic, value, key, -1 if partition is None else partition, headers=headers)
                return
            except BufferError:
                lane.poll(BACKOFF)

    def _new_lane(self, topic: str) -> ProducerLike:
        lane = self._lane_of[topic] = self.lanes[len(self._lane_of) % len(self.lanes)]
        return lane

    def send_all(self, records: Iterable[tuple[str, bytes | None, bytes | None, int | None,
                                               list[tuple[str, bytes]] | None]]) -> None:
        """Hand over (topic, key, value, partition, headers) records, as the steps' batches hold them."""
        lane_of = self._lane_of
        for topic, key, value, partition, headers in records:
            lane = lane_of.get(topic) or self._new_lane(topic)
            try:  # `send`, without a call per record
                lane.produce(topic, value, key, -1 if partition is None else partition, headers=headers)
            except BufferError:
                self.send(topic, key, value, partition, headers)

    def confirm(self) -> None:
        """Block until every record handed over is acknowledged; raise `DeliveryError` if any was refused."""
        started = time.monotonic()
        paused = False
        while sum(lane.flush(FLUSH_STEP) for lane in self.lanes) > 0:
            if not paused and time.monotonic() - started >= PAUSED_AFTER:
                paused = True
                self._paused.set(1)
                log.warning("event=output_waiting component=%s dependency=%s", self.component, self.dependency)
        if paused:
            self._paused.set(0)
            log.warning("event=output_resumed component=%s dependency=%s waited_s=%.1f", self.component,
                        self.dependency, time.monotonic() - started)
        error = self.refusals.take()
        if error is not None:
            raise error

    async def confirm_async(self) -> None:
        """`confirm` for code on an event loop: the wait runs in a thread, the loop goes on."""
        await asyncio.get_running_loop().run_in_executor(None, self.confirm)
