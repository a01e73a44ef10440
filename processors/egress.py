"""Egress (Faust worker, confluent-kafka data plane): copies the private `public.*` topics to the public cluster through the boundary guard.

The guard decodes every record itself and lets only `public` out; anything else is quarantined on the
private side. Delivery is effectively once: each public partition is fed by exactly one private partition,
in order, and every record carries its source offset, so a restart resumes after what the public cluster
already holds — no gap, no duplicate — without a transaction spanning two clusters.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from confluent_kafka import KafkaException, Message, TopicPartition

from hybridbus.adapters import kafka
from hybridbus.adapters.producer import BatchProducer
from hybridbus.adapters.topology import DECISIONS_TOPIC, PRIVATE, PUBLIC
from hybridbus.runtime.dataplane import FETCH_MAX_BYTES, FETCH_QUEUE_BACKOFF_MS, PREFETCH_KBYTES, DataPlane
from hybridbus.runtime.emergency import BoundaryGate
from hybridbus.runtime.faustapp import kafka_login, login, make_app, serve
from hybridbus.runtime.following import follow
from hybridbus.runtime.guard_step import DEDUPE_WINDOW, DedupeWindow, GuardBatch, Passed
from hybridbus.runtime.guarded import PUBLIC_PATTERN, FollowedGuard
from hybridbus.runtime.heap import Heap
from hybridbus.runtime.holdback import HoldBack
from hybridbus.runtime.records import event_id_of, header_map
from routing.boundary import PUBLIC_CLOUD

log = logging.getLogger("hbus.egress")

BATCH_SIZE = 1000
BATCH_WITHIN = 0.02
SOURCE_OFFSET = "hbus-source-offset"
TAIL_STALL_S = 60.0  # reading back the public partitions' tails fails after this long without a record
# A record can come before its public topic is known to the reader (a catalog change creates it on both clusters):
# its partition's offsets are asked for again within this long before the batch fails.
TAIL_WAIT_S = 30.0


class PublicSide:
    """The public cluster as egress sees it: an idempotent producer and what each partition already holds.

    Two kinds of repeat are removed: a replay of egress itself (by source offset) and a replay of the router
    upstream, which writes the same event again at a new offset (by event id, within a window per partition: the
    guard's `recent`, loaded here from what the public partition already holds).
    """

    def __init__(self, creds, recent: DedupeWindow, heap: Heap) -> None:  # type: ignore[no-untyped-def]
        # Idempotent with at most 5 requests in flight: records of a partition reach the public cluster in order.
        self.outputs = BatchProducer.connect(PUBLIC, creds, "egress", "public-kafka", **{
            "message.timeout.ms": 0,  # never give up: when the public cloud is down, wait for it
            "max.in.flight.requests.per.connection": 5, "linger.ms": 5, "batch.num.messages": 2000,
        })
        # Reads back the tails of many partitions at once: a bounded read-ahead, fetched again soon once it has room.
        self._reader = kafka.consumer(PUBLIC, creds, group="hbus-egress-positions", **{
            "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS, "queued.max.messages.kbytes": PREFETCH_KBYTES,
            "fetch.max.bytes": FETCH_MAX_BYTES})
        self._exported: dict[tuple[str, int], int] = {}
        self._recent = recent
        self._heap = heap

    def forget(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Drop what is known of partitions this worker did not own just before: another may have exported
        from them meanwhile, so their positions are read again from the public cluster."""
        for key in partitions:
            self._exported.pop(key, None)
            self._recent.forget(key)

    def take_over(self, partitions: list[tuple[str, int]]) -> None:
        """Partitions this worker was just given: forget what was known of them and read their tails back now,
        all at once, rather than one batch at a time as their records come. Should that fail (a public topic not
        there yet), each is read when its first record comes, as `resume` does for any partition not known."""
        self.forget(partitions)
        try:
            self._load_tails(partitions, wait=0.0)  # in the rebalance: one try, no wait for a topic to appear
        except (KafkaException, RuntimeError) as exc:  # nothing was kept of them: `resume` reads them later
            log.warning("event=tails_deferred partitions=%d reason=%r", len(partitions), str(exc))

    def resume(self, messages: list[Message]) -> dict[tuple[str, int], int]:
        """The guard's resume positions: for each partition of the batch, the last source offset already out
        (-1 for none). Partitions not seen before are read back from the public cluster first, all at once."""
        keys = {(msg.topic(), msg.partition()) for msg in messages}
        unknown = [key for key in keys if key not in self._exported]
        if unknown:
            self._load_tails(unknown, wait=TAIL_WAIT_S)
        return {key: self._exported[key] for key in keys}

    def _load_tails(self, keys: list[tuple[str, int]], wait: float) -> None:
        """Read the last DEDUPE_WINDOW records of each partition, side by side: its last source offset and its
        recent event ids (read one partition after the other, a cold start over 36 partitions took 10-25 s).
        A partition's offsets are asked for within `wait` seconds (a public topic just created, a leader moving)."""
        last = dict.fromkeys(keys, -1)
        recent: dict[tuple[str, int], list[str]] = {key: [] for key in keys}
        starts, ends = {}, {}
        for topic, partition in keys:
            low, high = kafka.watermarks(self._reader, topic, partition, timeout=wait)
            if high > low:
                starts[(topic, partition)], ends[(topic, partition)] = max(low, high - DEDUPE_WINDOW), high
        if starts:
            self._reader.assign([TopicPartition(t, p, offset) for (t, p), offset in starts.items()])
            try:
                positions, progressed = dict(starts), time.monotonic()
                while any(positions[key] < ends[key] for key in ends):
                    if time.monotonic() - progressed > TAIL_STALL_S:
                        behind = sorted(f"{t}[{p}]" for (t, p) in ends if positions[(t, p)] < ends[(t, p)])
                        raise RuntimeError(f"could not read the tail of {', '.join(behind)} on the public cluster")
                    for msg in self._reader.consume(1000, timeout=1.0):
                        if msg.error():
                            continue
                        key, progressed = (msg.topic(), msg.partition()), time.monotonic()
                        positions[key] = msg.offset() + 1
                        headers = header_map(msg.headers())
                        last[key] = int(headers.get(SOURCE_OFFSET, b"-1"))
                        # The id as the guard reads it (header, else key), so a router replay is recognised.
                        recent[key].append(event_id_of(headers, msg.key()))
            finally:
                self._reader.unassign()
        for key in keys:
            self._exported[key] = last[key]
            self._recent.load(key, recent[key])
        # The fetches of up to DEDUPE_WINDOW records a partition are freed now: without this, a restart over 36
        # partitions kept ~130 MB of them in the process (RSS 300 MB after the read, 173 MB trimmed).
        self._heap.trim()

    def send_all(self, passed: list[Passed]) -> None:
        """Private partition p to public partition p, in offset order, each record stamped with its source offset
        (the guard left out any such header a record brought along)."""
        self.outputs.send_all([(out.topic, out.key, out.value, out.partition,
                                [*(out.headers or ()), (SOURCE_OFFSET, str(out.offset).encode())]) for out in passed])
        self._exported.update({(out.topic, out.partition): out.offset for out in passed})

    def flush(self) -> None:
        """Block until every record handed over is acknowledged by the public cluster."""
        self.outputs.confirm()


def main() -> None:
    cfg, vault = login("egress")
    private_creds, public_creds = kafka_login(vault, "egress", PRIVATE), kafka_login(vault, "egress", PUBLIC)
    catalogs, catalog, check, feed = follow(cfg, vault, private_creds, "egress")
    heap = Heap()  # before the first thread starts
    recent = DedupeWindow()
    followed = FollowedGuard(catalog, feed.load(), PUBLIC_CLOUD, recent, stamped=frozenset({SOURCE_OFFSET}))
    guard = followed.guard
    public = PublicSide(public_creds, recent, heap)
    boundary = BoundaryGate(private_creds, vault, "egress")

    app = make_app("egress", private_creds, cfg)
    private = BatchProducer.connect(PRIVATE, private_creds, "egress")
    # A record of a version or view the catalog in force does not know yet waits for it, within the bound.
    holdback = HoldBack(lambda fingerprint: guard.codec.knows(fingerprint), cfg.unknown_schema_hold_s)

    class Export:
        """Egress's batch in halves: checked while the batch before is acknowledged, then sent."""

        @staticmethod
        def prepare(messages: list[Message]) -> tuple[GuardBatch, list[Passed]]:
            boundary.hold()  # emergency stop: while closed this batch waits here, unchecked, unsent, uncommitted
            # Records at or below a partition's resume position are already on the public cluster (before a restart).
            batch = guard.begin(int(time.time() * 1000), public.resume(messages))
            passed = []
            for msg in messages:
                out = guard.check_into(batch, msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                                       msg.headers())
                if out is not None:
                    passed.append(out)
            return batch, passed

        @staticmethod
        def send(prepared: tuple[GuardBatch, list[Passed]]) -> None:
            batch, passed = prepared
            public.send_all(passed)
            private.send_all(batch.quarantined)
            for chunk in batch.decision_records():
                private.send(DECISIONS_TOPIC, b"egress", chunk)

        @staticmethod
        def confirm(prepared: tuple[GuardBatch, list[Passed]]) -> None:
            public.flush()
            private.confirm()
            prepared[0].publish_metrics()

    plane = DataPlane(app, "egress", private_creds, [PUBLIC_PATTERN], Export(), batch_size=BATCH_SIZE,
                      within=BATCH_WITHIN, holdback=holdback, on_assign=public.take_over)

    serve(app, "egress", vault, feed, followed.on_rules(plane), private_creds, [PUBLIC_PATTERN],
          cfg.ports.egress_metrics, cfg.host, catalogs, followed.on_catalog(plane, check))


if __name__ == "__main__":
    main()
