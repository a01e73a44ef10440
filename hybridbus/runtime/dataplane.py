"""The data plane of a processor: confluent-kafka batches consumed in one thread of the Faust worker, handed to the
processor's batch handler, and committed per partition only after every output of the batch was acknowledged.

Faust stays the runtime (worker, supervision, timers, metrics, control-plane work); its per-message stream path
costs far more CPU than the per-event budget (README, "The data plane"), so the high-volume topics are read here.

How a batch goes, all in the one data-plane thread:

1. run what the control plane queued with `between_batches` (a new rule set, a new catalog, new derived views), so
   a batch is never handled under a mix of two;
2. gather a batch: up to `batch_size` records, taken without blocking once `within` seconds have passed since the
   batch before was taken (at once when that one was full);
3. with a `HoldBack`: leave out, per partition, everything from the first record whose schema fingerprint the
   catalog in force does not know yet (the partition is paused and sought back to it, tried again shortly and at
   once after a catalog switch: nothing after it is handled or committed until it is, so order holds);
4. the handler's `prepare(messages)`: the batch's work without output (decode, route, check);
5. settle the batch before: the handler's `confirm` returns once every output of it is acknowledged (its
   `BatchProducer.confirm()`), then its offsets are committed;
6. the handler's `send(prepared)`: this batch's outputs handed to librdkafka, not waited for.

Steps 4–6 overlap the wait for one batch's acknowledgements with the consuming and preparing of the next, while a
batch's outputs are still sent only after those of the batch before were acknowledged (so records of one key stay
in order). A handler that is a plain function (`Whole`) does all of its batch in `send`, and is settled at once.

Commits are asynchronous and at most every COMMIT_INTERVAL_S, so a failure leaves uncommitted the batches handled
since the last commit and the two in hand: they replay. A commit that failed is noticed in librdkafka's
`on_commit` report and its offsets go into the next one. Rebalances cannot cut into a batch: librdkafka calls the assign/revoke callbacks only from
inside `consume()`, in this thread, so a revoke settles the batch in hand and commits synchronously everything
handled of the partitions it takes away (and gives up partitions that are lost). Nothing is ever committed for a
record whose outputs were not acknowledged. If the handler raises, the process ends at once with exit code 70
and commits nothing more: the next owner of the partitions replays the batches in hand. Heartbeats come from
librdkafka's own thread, so a long batch does not cost the membership (up to MAX_POLL_INTERVAL); a killed
worker's partitions move to another after SESSION_TIMEOUT.

The group is the Faust app's id (`hbus-router`, …): the lag meter, `hbus status`, the bench and the drills read
that group's committed offsets as before. Faust's own consumer is not started at all (see `DataPlane.attach`).
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from faust.app.base import BootStrategy
from mode import Service

from hybridbus.adapters import kafka, metrics
from hybridbus.adapters.secrets import KafkaCredentials
from hybridbus.adapters.topology import PRIVATE
from hybridbus.runtime.holdback import HoldBack

log = logging.getLogger("hbus.dataplane")

BatchHandler = Callable[[list[Message]], None]
AssignHandler = Callable[[list[tuple[str, int]]], None]

SESSION_TIMEOUT_MS = 10_000  # a killed worker's partitions move on after this long (as Faust's broker_session_timeout)
HEARTBEAT_INTERVAL_MS = 2_000
# A batch may wait this long for its outputs (public cluster or S3 down) before the member is taken for dead
# and its partitions given to another (as Faust's broker_max_poll_interval).
MAX_POLL_INTERVAL_MS = 1_000_000
PREFETCH_KBYTES = 16_384  # records fetched ahead of the handler: 16 MB, about 16,000 workload events
# Once the read-ahead is full, librdkafka fetches again only after this long (its default, 1 s, is about a
# whole read-ahead of a backlog's worth of routing: the handler would drain it and then wait).
FETCH_QUEUE_BACKOFF_MS = 10
# One fetch response is held whole while it is parsed: librdkafka's default allows 50 MB, and the router's peak
# memory was its read-ahead plus such responses (237–267 MB peak, 202–212 with 8 MB, at the same rate).
FETCH_MAX_BYTES = 8 * 1024 * 1024
# Offsets are committed at most this often (and at every revoke and stop). Each commit is a write to the broker's
# offsets log: at a steady 2,000 events/s, a commit after every 20 ms batch of router and egress cost the private
# broker 2–6 % of a core (p99 241–290 ms against 250–314), on two busy cores. A crash replays at most this much more
# (the private side may then hold a copy twice, as before; egress and the archiver remove repeats across the boundary).
COMMIT_INTERVAL_S = 1.0
STOP_TIMEOUT = 15.0  # seconds a stopping worker lets the batch in hand finish and commit
EXIT_ON_FAILURE = 70  # the process's exit code when a batch fails: nothing of it was committed
# Topics created later (a new event type, version or view) are seen within this long: a topic `^…` pattern is
# matched against the metadata, refreshed this often (the client factory's default is 10 s).
METADATA_REFRESH_MS = 5_000
# Python's cyclic collector runs a young collection every 700 net allocations of containers. A batch holds
# about 10 per record (each header is a tuple) until it is acknowledged, so they survived collection after
# collection into the oldest generation, and whole-heap collections took a quarter of egress's data-plane thread
# (py-spy). Collected every 50,000, a batch's objects are mostly freed before a collection sees them.
GC_YOUNG_THRESHOLD = 50_000


class Pipelined(Protocol):
    """A batch handler in halves, so the wait for one batch's acknowledgements overlaps the work on the next."""

    def prepare(self, messages: list[Message]) -> Any:
        """The batch's work that sends nothing (decode, route, check); what `send` and `confirm` are given."""

    def send(self, prepared: Any) -> None:
        """Hand the batch's outputs over without waiting (called only once the batch before was confirmed)."""

    def confirm(self, prepared: Any) -> None:
        """Return once every output handed over is acknowledged; raise if any was refused."""


class Whole:
    """A plain batch function as a handler: all of its batch in `send`, which returns once all is acknowledged."""

    overlaps = False

    def __init__(self, handle: BatchHandler) -> None:
        self.handle = handle

    def prepare(self, messages: list[Message]) -> list[Message]:
        return messages

    def send(self, prepared: list[Message]) -> None:
        self.handle(prepared)

    def confirm(self, prepared: list[Message]) -> None:
        pass


class DataPlane(Service):  # type: ignore[misc]
    """One processor's batch consumer, started and stopped with the Faust app it is attached to.

    `handler` is a `Pipelined` one, or a function that gets the batch's messages (confluent_kafka.Message, errors
    removed) and returns only once all outputs of the batch are acknowledged. `on_assign` (optional) gets the
    partitions newly owned by this worker (not held just before the rebalance), so a processor can forget what it
    cached about them. A topic name
    starting with `^` is a regular expression (librdkafka's pattern subscription): topics created while the worker
    runs are consumed from their beginning, with no restart. `holdback` holds records of schema fingerprints not
    yet known (see the module's docstring).
    """

    def __init__(self, app: Any, component: str, creds: KafkaCredentials, topics: Sequence[str],
                 handler: BatchHandler | Pipelined, *, batch_size: int = 1000, within: float = 0.02,
                 on_assign: AssignHandler | None = None, cluster: str = PRIVATE, group: str | None = None,
                 holdback: HoldBack | None = None, **overrides: Any) -> None:
        super().__init__()
        self.component = component
        self.topics = sorted(topics)
        self.group = group or app.conf.id
        self.handler: Pipelined = handler if hasattr(handler, "prepare") else Whole(handler)  # type: ignore[arg-type]
        self._overlaps = getattr(self.handler, "overlaps", True)
        self.batch_size = batch_size
        self.within = within
        self.on_assign = on_assign
        self.holdback = holdback
        self._consumer_settings = {
            "client.id": f"{self.group}-data-plane",
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS,
            "max.poll.interval.ms": MAX_POLL_INTERVAL_MS,
            "queued.max.messages.kbytes": PREFETCH_KBYTES,
            "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
            "fetch.max.bytes": FETCH_MAX_BYTES,
            "topic.metadata.refresh.interval.ms": METADATA_REFRESH_MS,
            "on_commit": self._commit_reported,
            **overrides,
        }
        self._cluster, self._creds = cluster, creds
        self._between: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{component}-data-plane", daemon=True)
        self._uncommitted: dict[tuple[str, int], int] = {}  # next offset per partition, handled but not committed
        self._handled_to: dict[tuple[str, int], int] = {}  # next offset per owned partition, handled (for revokes)
        self._pending: tuple[list[Message], Any] | None = None  # the batch sent, not yet confirmed
        self._assigned: set[tuple[str, int]] = set()
        self._commit_due = 0.0  # monotonic time of the next asynchronous commit (the first batch's at once)
        self._taken_at = 0.0  # monotonic time the last batch was taken
        self._taken_full = False  # the last batch had batch_size records: a backlog, take the next at once
        self.attach(app)

    # --- wiring into the Faust worker ----------------------------------------------------------------------

    def attach(self, app: Any) -> None:
        """Run inside `app`'s worker, and keep Faust's own Kafka consumer and producer from starting.

        Faust's consumer would join this same group (its id is the app's) with no topic: aiokafka refuses a
        subscription to nothing, which crashes the worker, and were it let in, its "faust" assignor shares no
        protocol with librdkafka's, so the group could not form (InconsistentGroupProtocol) or would rebalance
        at every start of either. Every output goes through `BatchProducer`, so Faust's producer has no use
        either. Timers, the web side and supervision are untouched.
        """
        app.boot_strategy = BootStrategy(app, enable_kafka_consumer=False, enable_kafka_producer=False)

        @app.task
        async def start_data_plane() -> None:
            await app.add_runtime_dependency(self)

    def between_batches(self, action: Callable[[], None]) -> None:
        """Run `action` in the data-plane thread before the next batch (thread-safe; call from the Faust loop)."""
        self._between.put(action)

    async def on_start(self) -> None:
        collect_for_batches()
        self._thread.start()

    async def on_stop(self) -> None:
        """Let the batch in hand finish and commit, then leave the group so the partitions move at once."""
        self._stopping.set()
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join, STOP_TIMEOUT)

    @Service.task  # type: ignore[misc]
    async def _supervise(self) -> None:
        """A data-plane thread that ended while the worker runs leaves a process that only looks alive: end it."""
        while not self.should_stop:
            await self.sleep(1.0)
            if not self._thread.is_alive() and not self._stopping.is_set():
                _fail("data-plane thread ended")

    # --- the consume loop (data-plane thread) --------------------------------------------------------------

    def _run(self) -> None:
        try:
            consumer = kafka.consumer(self._cluster, self._creds, self.group, **self._consumer_settings)
            consumer.subscribe(self.topics, on_assign=self._assigned_cb, on_revoke=self._revoked_cb,
                               on_lost=self._lost_cb)
            log.warning("event=data_plane_started component=%s group=%s topics=%d", self.component, self.group,
                        len(self.topics))
            while not self._stopping.is_set():
                self._run_between_batches()
                if self.holdback is not None:
                    self._retry_held(consumer)
                messages = self._records(self._gather(consumer))
                if messages and self.holdback is not None:
                    messages = self._hold_back(consumer, messages)
                prepared = self.handler.prepare(messages) if messages else None
                self._settle()
                if messages:
                    self.handler.send(prepared)
                    self._pending = (messages, prepared)
                    if not self._overlaps:
                        self._settle()
                if self._uncommitted and (now := time.monotonic()) >= self._commit_due:
                    self._commit(consumer)
                    self._commit_due = now + COMMIT_INTERVAL_S
            self._settle()
            self._commit(consumer, [TopicPartition(t, p, o) for (t, p), o in self._handled_to.items()])
            consumer.close()  # leaves the group: no session timeout to wait for
        except BaseException:  # noqa: BLE001 - any failure: end without committing, the batch replays
            _fail("batch failed")

    def _gather(self, consumer: Consumer) -> list[Message]:
        """The next batch: whatever the read-ahead holds, up to batch_size, `within` seconds after the batch before
        was taken (at once after a full one).

        Not `consume(batch_size, timeout=within)`: that call wakes for every record fetched while it waits, and at a
        steady 2,000 events/s that cost the data-plane thread 9.2 µs a record, against 3.4 µs for the same records
        taken without waiting after the same 20 ms. The window runs from the last take, so the time spent handling
        a batch counts towards the next one's gathering."""
        if not self._taken_full:
            wait = self._taken_at + self.within - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        messages = consumer.consume(self.batch_size, 0)
        self._taken_at = time.monotonic()
        self._taken_full = len(messages) >= self.batch_size
        return messages

    def _run_between_batches(self) -> None:
        while True:
            try:
                action = self._between.get_nowait()
            except queue.Empty:
                return
            action()
            if self.holdback is not None:
                self.holdback.retry_now()  # a new catalog may know what is held: try it before the next batch

    def _hold_back(self, consumer: Consumer, messages: list[Message]) -> list[Message]:
        """The batch without what must wait for the catalog; the partitions newly held are paused."""
        assert self.holdback is not None
        kept, newly, first = self.holdback.split(messages)
        for (topic, partition), _offset in newly:
            consumer.pause([TopicPartition(topic, partition)])
        for (topic, partition), offset in first:  # logged once per record, not at every try
            log.warning("event=held_back component=%s topic=%s partition=%d offset=%d reason=unknown_fingerprint",
                        self.component, topic, partition, offset)
        if first:
            metrics.HELD_BACK.labels(self.component).inc(len(first))
        if newly:
            metrics.HELD_BACK_PARTITIONS.labels(self.component).set(len(self.holdback.held))
        return kept

    def _retry_held(self, consumer: Consumer) -> None:
        """Resume each held partition whose turn it is, at the record it is held at."""
        assert self.holdback is not None
        due = self.holdback.due()
        for (topic, partition), offset in due:
            consumer.resume([TopicPartition(topic, partition)])
            try:
                consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                # The hold-back sees the partition come back past the offset and holds it again: nothing skipped.
                log.warning("event=seek_failed component=%s topic=%s partition=%d error=%s", self.component, topic,
                            partition, _error_name(exc))
        if due:
            metrics.HELD_BACK_PARTITIONS.labels(self.component).set(len(self.holdback.held))

    def _records(self, messages: list[Message]) -> list[Message]:
        """The batch without librdkafka's event messages; a fatal consumer error ends the process."""
        records = []
        for msg in messages:
            err = msg.error()
            if err is None:
                records.append(msg)
            elif err.fatal():
                raise KafkaException(err)
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("event=consumer_error component=%s code=%s reason=%r", self.component, err.name(),
                            err.str())
        return records

    def _settle(self) -> None:
        """Wait for the batch in hand to be acknowledged; its offsets are then committable."""
        if self._pending is None:
            return
        messages, prepared = self._pending
        self.handler.confirm(prepared)
        self._pending = None
        uncommitted = self._uncommitted
        for msg in messages:  # in partition order, so the last one of each partition wins
            uncommitted[(msg.topic(), msg.partition())] = msg.offset() + 1
        self._handled_to.update(uncommitted)

    def _commit(self, consumer: Consumer, offsets: list[TopicPartition] | None = None) -> bool:
        """Commit every handled offset, asynchronously; `offsets` given: those, synchronously (a revoke, a stop).
        A failure keeps them for the next try (after the next batch or a revoke)."""
        synchronous = offsets is not None
        if offsets is None:
            offsets = [TopicPartition(t, p, o) for (t, p), o in self._uncommitted.items()]
        if not offsets:
            return True
        try:
            consumer.commit(offsets=offsets, asynchronous=not synchronous)
        except KafkaException as exc:
            self._commit_failed(len(offsets), _error_name(exc))
            return False
        self._uncommitted.clear()
        return True

    def _commit_reported(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's report of an asynchronous commit: a failed one's offsets go into the next commit (unless
        a later offset of the partition is already waiting)."""
        if err is None or err.code() == KafkaError._NO_OFFSET:
            return
        for tp in partitions:
            key = (tp.topic, tp.partition)
            if key in self._handled_to and key not in self._uncommitted and tp.offset >= 0:
                self._uncommitted[key] = tp.offset
        self._commit_failed(len(partitions), err.name())

    def _commit_failed(self, partitions: int, error: str) -> None:
        # Outputs are acknowledged: at worst the next owner replays them (the private side may hold a copy
        # twice; egress and the archiver remove repeats across the boundary).
        log.warning("event=commit_failed component=%s partitions=%d error=%s", self.component, partitions, error)

    def _assigned_cb(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        owned = {(tp.topic, tp.partition) for tp in partitions}
        added = sorted(owned - self._assigned)
        self._assigned = owned
        log.warning("event=partitions_assigned component=%s partitions=%d new=%d", self.component, len(owned),
                    len(added))
        if added and self.on_assign is not None:
            self.on_assign(added)

    def _revoked_cb(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Called from inside consume(): the batch in hand is settled, and everything handled of the partitions
        # taken away is committed before they move (again, synchronously: an asynchronous commit may be in flight).
        self._settle()
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        offsets = {**{key: o for key, o in self._handled_to.items() if key in revoked}, **self._uncommitted}
        self._commit(consumer, [TopicPartition(t, p, o) for (t, p), o in offsets.items()])
        self._uncommitted.clear()  # a commit that failed here is replayed by the next owner
        for key in revoked:
            self._handled_to.pop(key, None)
        self._release(consumer, partitions)  # the next owner starts at the committed offset, before anything held

    def _lost_cb(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The partitions may already be another member's: committing for them is refused, and forgotten. The batch
        # in hand is still waited for, so the next one's outputs follow its own.
        self._settle()
        self._uncommitted.clear()
        self._handled_to.clear()
        self._assigned = set()
        self._release(consumer, partitions)

    def _release(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Forget what was held of partitions this worker gives up."""
        if self.holdback is None:
            return
        paused = [tp for tp in partitions if (tp.topic, tp.partition) in self.holdback.held]
        if paused:
            try:  # a pause can outlive the assignment: if the partition comes back here, it must flow
                consumer.resume(paused)
            except KafkaException:
                pass
        self.holdback.forget([(tp.topic, tp.partition) for tp in partitions])


def collect_for_batches() -> None:
    """Tune the process's cyclic garbage collector for batches (see GC_YOUNG_THRESHOLD): what the worker holds once
    started (modules, the app, the catalog) is set aside for good, and young objects are collected less often."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def _error_name(exc: KafkaException) -> str:
    return exc.args[0].name() if exc.args and hasattr(exc.args[0], "name") else type(exc).__name__


def _fail(what: str) -> None:
    """End the process now, committing nothing: the batch in hand is replayed by the next owner."""
    log.error("event=%s action=exit_without_commit", what.replace(" ", "_"), exc_info=sys.exc_info()[0] is not None)
    logging.shutdown()
    os._exit(EXIT_ON_FAILURE)

