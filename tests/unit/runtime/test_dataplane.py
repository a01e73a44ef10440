"""The data plane's loop without a broker: a batch is committed per partition only after its handler returned,
control-plane changes land between batches, rebalances see nothing half done, and a failed batch commits nothing."""
from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faust
import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from hybridbus.adapters.codec import MARKER
from hybridbus.adapters.secrets import KafkaCredentials
from hybridbus.runtime import dataplane
from hybridbus.runtime.dataplane import DataPlane
from hybridbus.runtime.holdback import HoldBack
from tests.unit.producers.fakes import FakeMessage

CREDS = KafkaCredentials("svc-test", "secret")


@dataclass
class ConsumedMessage(FakeMessage):
    _error: KafkaError | None = None

    def error(self) -> KafkaError | None:
        return self._error


def message(topic: str, partition: int, offset: int, error: KafkaError | None = None) -> ConsumedMessage:
    return ConsumedMessage(topic, partition, offset, b"key", b"value", [], error)


Step = list[ConsumedMessage] | Callable[["FakeConsumer"], None]


class FakeConsumer:
    """Plays `steps` one per consume(): a list is a batch, a callable acts (e.g. a rebalance) and returns none."""

    def __init__(self, steps: list[Step], stop: threading.Event, events: list[tuple[Any, ...]],
                 failing_commits: int = 0, on_commit: Callable[..., None] | None = None) -> None:
        self.steps, self.stop, self.events = list(steps), stop, events
        self.failing_commits = failing_commits
        self.on_commit = on_commit
        self.reports: list[list[TopicPartition]] = []  # failed asynchronous commits, reported at the next consume
        self.callbacks: dict[str, Any] = {}
        self.closed = False
        self.takes: list[tuple[float, float]] = []  # (timeout, monotonic time) of each consume()

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks

    def consume(self, num_messages: int, timeout: float) -> list[ConsumedMessage]:
        self.takes.append((timeout, time.monotonic()))
        while self.reports:  # as librdkafka serves its callbacks inside consume()
            assert self.on_commit is not None
            self.on_commit(KafkaError(KafkaError.REBALANCE_IN_PROGRESS), self.reports.pop(0))
        if not self.steps:
            self.stop.set()
            return []
        step = self.steps.pop(0)
        if callable(step):
            step(self)
            return []
        return step

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = True) -> None:
        if self.failing_commits:
            self.failing_commits -= 1
            if asynchronous:
                self.reports.append(offsets)
                return
            raise KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
        kind = "commit" if asynchronous else "commit-sync"
        self.events.append((kind, sorted((tp.topic, tp.partition, tp.offset) for tp in offsets)))

    def close(self) -> None:
        self.closed = True

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.events.append(("pause", [(tp.topic, tp.partition) for tp in partitions]))

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.events.append(("resume", [(tp.topic, tp.partition) for tp in partitions]))

    def seek(self, partition: TopicPartition) -> None:
        self.events.append(("seek", (partition.topic, partition.partition, partition.offset)))

    def rebalance(self, kind: str, partitions: list[tuple[str, int]]) -> None:
        self.callbacks[kind](self, [TopicPartition(t, p) for t, p in partitions])


def run_plane(monkeypatch: pytest.MonkeyPatch, steps: list[Step], handler: Callable[[list[Any]], None] | None = None,
              failing_commits: int = 0, events: list[tuple[Any, ...]] | None = None, commit_every: float = 0.0,
              **options: Any) -> tuple[DataPlane, FakeConsumer, list[tuple[Any, ...]]]:
    """Run the plane's consume loop in this thread over `steps`; returns what happened, in order (by default a
    commit after every batch: `commit_every` seconds at most, as the running plane does)."""
    events = [] if events is None else events
    holder: dict[str, FakeConsumer] = {}

    def make_consumer(cluster: str, creds: KafkaCredentials, group: str, **conf: Any) -> FakeConsumer:
        events.append(("consumer", group, conf["session.timeout.ms"]))
        holder["consumer"] = FakeConsumer(steps, plane._stopping, events, failing_commits, conf["on_commit"])
        return holder["consumer"]

    def record(messages: list[Any]) -> None:
        events.append(("handle", [(m.topic(), m.partition(), m.offset()) for m in messages]))

    monkeypatch.setattr(dataplane.kafka, "consumer", make_consumer)
    monkeypatch.setattr(dataplane, "COMMIT_INTERVAL_S", commit_every)
    plane = DataPlane(faust.App("hbus-test"), "test", CREDS, ["t"], handler or record, **options)
    plane._run()
    return plane, holder["consumer"], events


def test_a_batch_is_committed_per_partition_after_its_handler_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    batch = [message("t", 0, 5), message("t", 1, 7), message("t", 0, 6), message("u", 0, 1)]
    _plane, consumer, events = run_plane(monkeypatch, [batch])
    assert events == [
        ("consumer", "hbus-test", dataplane.SESSION_TIMEOUT_MS),  # the Faust app's id is the group
        ("handle", [("t", 0, 5), ("t", 1, 7), ("t", 0, 6), ("u", 0, 1)]),
        ("commit", [("t", 0, 7), ("t", 1, 8), ("u", 0, 2)]),
        # A stopping worker commits what it handled once more, and waits for it, before it leaves the group.
        ("commit-sync", [("t", 0, 7), ("t", 1, 8), ("u", 0, 2)]),
    ]
    assert consumer.closed


def test_a_batch_is_taken_without_blocking_a_window_after_the_one_before_or_at_once_after_a_full_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A consume() that blocks wakes for every record fetched meanwhile: the plane waits itself, then takes.
    steps: list[Step] = [[message("t", 0, 0), message("t", 0, 1)], [message("t", 0, 2)], [message("t", 0, 3)], []]
    _plane, consumer, events = run_plane(monkeypatch, steps, batch_size=2, within=0.05)
    assert [e[1] for e in events if e[0] == "handle"] == [[("t", 0, 0), ("t", 0, 1)], [("t", 0, 2)], [("t", 0, 3)]]
    assert {timeout for timeout, _ in consumer.takes} == {0}
    gaps = [later - earlier for (_, earlier), (_, later) in zip(consumer.takes, consumer.takes[1:])]
    assert gaps[0] < 0.05  # the first batch was full: a backlog, the next is taken at once
    assert all(gap >= 0.05 for gap in gaps[1:])  # after a partial one, the window passes first


def test_batches_between_two_commits_are_committed_together_and_the_stop_commits_the_rest(
        monkeypatch: pytest.MonkeyPatch) -> None:
    steps = [[message("t", 0, 0)], [message("t", 0, 1), message("t", 1, 4)], [message("t", 1, 5)]]
    _plane, _consumer, events = run_plane(monkeypatch, steps, commit_every=3600.0)
    assert [e for e in events if e[0].startswith("commit")] == [
        ("commit", [("t", 0, 1)]),  # the first batch: nothing was committed before
        ("commit-sync", [("t", 0, 2), ("t", 1, 6)]),  # the stop: everything handled since, at once
    ]


def test_consumer_events_are_not_records_and_an_empty_poll_commits_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    eof = message("t", 0, 9, KafkaError(KafkaError._PARTITION_EOF))
    transport = message("t", 0, -1, KafkaError(KafkaError._TRANSPORT))
    _plane, _consumer, events = run_plane(monkeypatch, [[], [eof, transport], [message("t", 0, 3), eof]])
    assert events[1:] == [("handle", [("t", 0, 3)]), ("commit", [("t", 0, 4)]), ("commit-sync", [("t", 0, 4)])]


def test_control_plane_changes_run_in_the_data_plane_thread_between_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    plane_ref: dict[str, DataPlane] = {}

    def handler(messages: list[Any]) -> None:
        seen.append(("batch", messages[0].offset()))
        if messages[0].offset() == 0:  # a rule change arrives while the first batch is being handled
            plane_ref["plane"].between_batches(lambda: seen.append(("rules", threading.current_thread().name)))

    original = DataPlane.__init__

    def init(self: DataPlane, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        plane_ref["plane"] = self

    monkeypatch.setattr(DataPlane, "__init__", init)
    run_plane(monkeypatch, [[message("t", 0, 0)], [message("t", 0, 1)]], handler)
    assert seen == [("batch", 0), ("rules", threading.current_thread().name), ("batch", 1)]


def test_a_failed_commit_is_retried_with_the_next_offsets(monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[Step] = [[message("t", 0, 0)], [message("t", 1, 4)]]
    _plane, _consumer, events = run_plane(monkeypatch, steps, failing_commits=1)
    assert [e for e in events if e[0] == "commit"] == [("commit", [("t", 0, 1), ("t", 1, 5)])]


def test_a_revoke_commits_what_a_failed_commit_left_and_new_partitions_are_announced(
        monkeypatch: pytest.MonkeyPatch) -> None:
    announced: list[list[tuple[str, int]]] = []
    steps: list[Step] = [
        lambda c: c.rebalance("on_assign", [("t", 0), ("t", 1)]),
        [message("t", 0, 0)],  # its commit fails
        lambda c: (c.events.append(("revoke",)), c.rebalance("on_revoke", [("t", 0), ("t", 1)])),
        lambda c: c.rebalance("on_assign", [("t", 1), ("t", 2)]),
    ]
    _plane, _consumer, events = run_plane(monkeypatch, steps, failing_commits=1, on_assign=announced.append)
    assert events[1:] == [("handle", [("t", 0, 0)]), ("revoke",), ("commit-sync", [("t", 0, 1)])]
    # Only partitions not held just before are new: a cache about them may be stale.
    assert announced == [[("t", 0), ("t", 1)], [("t", 2)]]


def test_lost_partitions_are_never_committed_and_count_as_new_when_they_come_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    announced: list[list[tuple[str, int]]] = []
    steps: list[Step] = [
        lambda c: c.rebalance("on_assign", [("t", 0)]),
        [message("t", 0, 0)],  # its commit fails
        lambda c: c.rebalance("on_lost", [("t", 0)]),
        lambda c: c.rebalance("on_assign", [("t", 0)]),
    ]
    _plane, _consumer, events = run_plane(monkeypatch, steps, failing_commits=1, on_assign=announced.append)
    assert [e for e in events if e[0] == "commit"] == []
    assert announced == [[("t", 0)], [("t", 0)]]


class Exited(Exception):
    pass


@pytest.fixture()
def exits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        raise Exited

    monkeypatch.setattr(dataplane.os, "_exit", fake_exit)
    monkeypatch.setattr(dataplane.logging, "shutdown", lambda: None)
    return codes


def test_a_failing_handler_ends_the_process_and_commits_nothing(monkeypatch: pytest.MonkeyPatch,
                                                                exits: list[int]) -> None:
    def handler(messages: list[Any]) -> None:
        raise ValueError("boom")

    events: list[Any] = []
    with pytest.raises(Exited):
        run_plane(monkeypatch, [[message("t", 0, 0)], [message("t", 0, 1)]], handler, events=events)
    assert exits == [dataplane.EXIT_ON_FAILURE]
    assert [e[0] for e in events] == ["consumer"]  # no commit, and no batch after the failed one


def test_a_fatal_consumer_error_ends_the_process(monkeypatch: pytest.MonkeyPatch, exits: list[int]) -> None:
    fatal = message("t", 0, -1, KafkaError(KafkaError._FATAL, "fenced", fatal=True))
    with pytest.raises(Exited):
        run_plane(monkeypatch, [[fatal]])
    assert exits == [dataplane.EXIT_ON_FAILURE]


def test_attaching_keeps_fausts_own_consumer_and_producer_from_starting() -> None:
    app = faust.App("hbus-test-attach")
    assert app.boot_strategy._should_enable_kafka_consumer()
    DataPlane(app, "test", CREDS, ["t"], lambda messages: None)
    assert not app.boot_strategy._should_enable_kafka_consumer()
    assert not app.boot_strategy._should_enable_kafka_producer()
    assert list(app.boot_strategy.kafka_consumer()) == [] and list(app.boot_strategy.kafka_conductor()) == []
    assert len(app._app_tasks) == 1  # the task that starts the data plane with the worker


def fingerprinted(topic: str, partition: int, offset: int, fingerprint: bytes) -> ConsumedMessage:
    return ConsumedMessage(topic, partition, offset, b"key", MARKER + fingerprint + b"\x02", [], None)


def test_a_record_of_an_unknown_fingerprint_holds_its_partition_until_the_catalog_knows_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    known = {b"K" * 8}
    holdback = HoldBack(lambda fp: fp in known, bound_s=120)
    plane_ref: dict[str, DataPlane] = {}

    def catalog_arrives(consumer: FakeConsumer) -> None:  # the catalog feed hands a switch to the data plane
        plane_ref["plane"].between_batches(lambda: known.add(b"N" * 8))

    steps: list[Step] = [
        [fingerprinted("t", 0, 4, b"K" * 8), fingerprinted("t", 0, 5, b"N" * 8), fingerprinted("t", 0, 6, b"K" * 8),
         fingerprinted("t", 1, 9, b"K" * 8)],
        catalog_arrives,
        [fingerprinted("t", 0, 5, b"N" * 8), fingerprinted("t", 0, 6, b"K" * 8)],
    ]
    original = DataPlane.__init__

    def init(self: DataPlane, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        plane_ref["plane"] = self

    monkeypatch.setattr(DataPlane, "__init__", init)
    _plane, _consumer, events = run_plane(monkeypatch, steps, holdback=holdback)
    assert events[1:] == [
        ("pause", [("t", 0)]),
        ("handle", [("t", 0, 4), ("t", 1, 9)]),
        ("commit", [("t", 0, 5), ("t", 1, 10)]),  # never past the held record
        ("resume", [("t", 0)]), ("seek", ("t", 0, 5)),  # tried again at once after the switch
        ("handle", [("t", 0, 5), ("t", 0, 6)]),
        ("commit", [("t", 0, 7)]),
        ("commit-sync", [("t", 0, 7), ("t", 1, 10)]),
    ]


class Halves:
    """A pipelined handler that records when each half of each batch runs."""

    def __init__(self, events: list[tuple[Any, ...]], refuse: int | None = None) -> None:
        self.events, self.refuse = events, refuse

    def prepare(self, messages: list[Any]) -> int:
        self.events.append(("prepare", messages[0].offset()))
        return int(messages[0].offset())

    def send(self, first: int) -> None:
        self.events.append(("send", first))

    def confirm(self, first: int) -> None:
        if first == self.refuse:
            raise ValueError("refused")
        self.events.append(("confirm", first))


def test_a_batch_is_prepared_while_the_one_before_is_acknowledged_and_sent_only_after_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[Any] = []
    steps: list[Step] = [[message("t", 0, 0)], [message("t", 0, 1)], [message("t", 0, 2)]]
    run_plane(monkeypatch, steps, Halves(events), events=events)  # type: ignore[arg-type]
    assert events[1:] == [
        ("prepare", 0), ("send", 0),
        ("prepare", 1), ("confirm", 0), ("send", 1), ("commit", [("t", 0, 1)]),
        ("prepare", 2), ("confirm", 1), ("send", 2), ("commit", [("t", 0, 2)]),
        ("confirm", 2), ("commit", [("t", 0, 3)]),  # an empty poll settles the batch in hand
        ("commit-sync", [("t", 0, 3)]),
    ]


def test_a_revoke_settles_the_batch_in_hand_and_commits_it_before_the_partitions_move(
        monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[Any] = []
    steps: list[Step] = [
        lambda c: c.rebalance("on_assign", [("t", 0), ("t", 1)]),
        [message("t", 0, 0), message("t", 1, 5)],
        lambda c: c.rebalance("on_revoke", [("t", 1)]),
    ]
    run_plane(monkeypatch, steps, Halves(events), events=events)  # type: ignore[arg-type]
    assert events[1:] == [
        ("prepare", 0), ("send", 0),
        ("confirm", 0), ("commit-sync", [("t", 0, 1), ("t", 1, 6)]),  # inside consume(), before the move
        ("commit-sync", [("t", 0, 1)]),  # the stop: only what is still owned
    ]


def test_a_refused_output_ends_the_process_before_the_next_batch_is_sent(monkeypatch: pytest.MonkeyPatch,
                                                                         exits: list[int]) -> None:
    events: list[Any] = []
    with pytest.raises(Exited):
        steps: list[Step] = [[message("t", 0, 0)], [message("t", 0, 1)]]
        run_plane(monkeypatch, steps, Halves(events, refuse=0), events=events)  # type: ignore[arg-type]
    assert exits == [dataplane.EXIT_ON_FAILURE]
    assert events[1:] == [("prepare", 0), ("send", 0), ("prepare", 1)]  # nothing committed, batch 1 not sent


def test_the_collector_is_set_for_batches_and_start_up_objects_are_set_aside() -> None:
    before = gc.get_threshold()
    try:
        dataplane.collect_for_batches()
        assert gc.get_threshold() == (dataplane.GC_YOUNG_THRESHOLD, before[1], before[2])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_a_fetch_response_is_bounded_below_librdkafkas_default() -> None:
    plane = DataPlane(faust.App("hbus-test-fetch"), "router", CREDS, ["t"], lambda messages: None)
    assert plane._consumer_settings["fetch.max.bytes"] == dataplane.FETCH_MAX_BYTES < 50 * 1024 * 1024
