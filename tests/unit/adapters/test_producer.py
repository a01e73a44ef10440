"""The one producer adapter without a broker: back-off on a full queue, refusals raised as one DeliveryError per
batch, the paused gauge while a confirm waits, and the settings it gives librdkafka."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
from confluent_kafka import KafkaError

from hybridbus.adapters import metrics, producer
from hybridbus.adapters.exceptions import DeliveryError
from hybridbus.adapters.producer import BatchProducer, Refusals


class FakeMessage:
    def __init__(self, topic: str) -> None:
        self._topic = topic

    def topic(self) -> str:
        return self._topic


class FakeProducer:
    """Holds produced records; `flush` delivers them, refusing those whose topic is in `refuse`."""

    def __init__(self, refusals: Refusals, full_times: int = 0, refuse: frozenset[str] = frozenset(),
                 slow_flushes: int = 0) -> None:
        self.refusals = refusals
        self.full_times = full_times  # produce calls that find the queue full first
        self.refuse = refuse
        self.slow_flushes = slow_flushes  # flush calls that return with records still in flight
        self.queued: list[tuple[Any, ...]] = []
        self.produced: list[tuple[Any, ...]] = []
        self.polls: list[float] = []
        self.gauge_while_flushing: list[float] = []

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, partition: int = -1,
                **kwargs: Any) -> None:
        if self.full_times:
            self.full_times -= 1
            raise BufferError("Local: Queue full")
        self.queued.append((topic, value, key, partition, kwargs.get("headers")))

    def poll(self, timeout: float = 0) -> int:
        self.polls.append(timeout)
        return 0

    def flush(self, timeout: float = -1) -> int:
        self.gauge_while_flushing.append(metrics.PAUSED.labels("test", "fake-kafka")._value.get())
        if self.slow_flushes:
            self.slow_flushes -= 1
            return len(self.queued)
        for record in self.queued:
            if record[0] in self.refuse:
                self.refusals.delivered(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "Broker: Topic authorization failed"),
                                        FakeMessage(record[0]))
            else:
                self.produced.append(record)
        self.queued = []
        return 0


def adapter(**fake: Any) -> tuple[BatchProducer, FakeProducer]:
    refusals = Refusals()
    fake_producer = FakeProducer(refusals, **fake)
    return BatchProducer(fake_producer, refusals, "test", "fake-kafka"), fake_producer


def test_a_full_queue_is_waited_out_and_nothing_is_dropped() -> None:
    outputs, fake = adapter(full_times=3)
    outputs.send("graded.a", b"k", b"v", None, [("h", b"1")])
    outputs.send("graded.a", b"k2", b"v2", 4)
    outputs.confirm()
    assert fake.polls == [producer.BACKOFF] * 3
    assert fake.produced == [("graded.a", b"v", b"k", -1, [("h", b"1")]), ("graded.a", b"v2", b"k2", 4, None)]


def test_send_all_hands_over_batch_records_in_order_with_their_partition_and_headers() -> None:
    outputs, fake = adapter(full_times=1)
    outputs.send_all([("graded.a", b"k1", b"v1", 2, [("h", b"1")]), ("_hbus.dlq", None, b"v2", None, None)])
    assert fake.queued == [("graded.a", b"v1", b"k1", 2, [("h", b"1")]), ("_hbus.dlq", b"v2", None, -1, None)]


def test_refused_records_raise_one_delivery_error_naming_topic_reason_and_count() -> None:
    outputs, fake = adapter(refuse=frozenset({"public.x", "public.y"}))
    for topic in ("graded.a", "public.x", "public.y", "public.x"):
        outputs.send(topic, None, b"v")
    with pytest.raises(DeliveryError) as caught:
        outputs.confirm()
    assert caught.value.topic == "public.x,public.y"
    assert caught.value.count == 3
    assert "authorization" in caught.value.reason
    assert [r[0] for r in fake.produced] == ["graded.a"]
    # The refusals belong to the batch that was confirmed: the next batch starts clean.
    outputs.send("graded.a", None, b"v")
    outputs.confirm()


def test_a_fatal_producer_error_fails_every_confirm_after_it() -> None:
    outputs, _fake = adapter()
    outputs.refusals.client_error(KafkaError(KafkaError._FATAL, "idempotence broken", fatal=True))
    for _ in range(2):
        with pytest.raises(DeliveryError, match="fatal"):
            outputs.confirm()


def test_a_transient_client_error_is_only_logged() -> None:
    outputs, _fake = adapter()
    outputs.refusals.client_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "all brokers down"))
    outputs.confirm()


def test_the_paused_gauge_is_one_only_while_a_confirm_waits_long(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(producer, "PAUSED_AFTER", 0.0)
    outputs, fake = adapter(slow_flushes=3)
    gauge = metrics.PAUSED.labels("test", "fake-kafka")
    assert gauge._value.get() == 0  # exported from the start
    outputs.send("graded.a", None, b"v")
    outputs.confirm()
    assert fake.gauge_while_flushing == [0, 1, 1, 1]
    assert gauge._value.get() == 0


def test_a_quick_confirm_never_sets_the_gauge() -> None:
    outputs, fake = adapter(slow_flushes=2)
    outputs.send("graded.a", None, b"v")
    outputs.confirm()
    assert fake.gauge_while_flushing == [0, 0, 0]


def test_confirm_async_confirms_in_a_thread() -> None:
    outputs, fake = adapter(refuse=frozenset({"public.x"}))
    outputs.send("public.x", None, b"v")
    with pytest.raises(DeliveryError):
        asyncio.run(outputs.confirm_async())
    assert fake.queued == []


def test_connect_asks_for_error_reports_only_and_lets_callers_override(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_factory(cluster: str, creds: Any, **conf: Any) -> FakeProducer:
        seen.update(conf, cluster=cluster)
        return FakeProducer(Refusals())

    monkeypatch.setattr(producer.kafka, "producer", fake_factory)
    outputs = BatchProducer.connect("public", object(), "egress", **{"message.timeout.ms": 0,  # type: ignore[arg-type]
                                                                     "max.in.flight.requests.per.connection": 5})
    assert seen["delivery.report.only.error"] is True
    assert seen["on_delivery"] == outputs.refusals.delivered
    assert seen["error_cb"] == outputs.refusals.client_error
    assert seen["message.timeout.ms"] == 0 and seen["max.in.flight.requests.per.connection"] == 5
    assert seen["linger.ms"] == producer.BATCH_DEFAULTS["linger.ms"]
    assert (outputs.component, outputs.dependency) == ("egress", "public-kafka")


def test_lanes_keep_each_topic_on_one_producer_and_a_confirm_waits_for_all_of_them() -> None:
    refusals = Refusals()
    lanes = [FakeProducer(refusals), FakeProducer(refusals, slow_flushes=2), FakeProducer(refusals)]
    outputs = BatchProducer(lanes[0], refusals, "test", "fake-kafka", lanes[1:])
    for topic in ("a", "b", "c", "d", "a", "b", "a"):
        outputs.send(topic, b"k", topic.encode(), None)
    outputs.confirm()
    # Topics are dealt out in the order first written; every record of a topic went through its one lane, in order.
    assert [[r[0] for r in lane.produced] for lane in lanes] == [["a", "d", "a", "a"], ["b", "b"], ["c"]]
    assert all(not lane.queued for lane in lanes)  # the slow lane was flushed until it had nothing in flight
    lanes[2].refuse = frozenset({"c"})
    outputs.send("c", b"k", b"v", None)
    with pytest.raises(DeliveryError):
        outputs.confirm()
