"""Where a known set of events arrived: copies per event id on the private and public clusters and in the
open-data bucket, counted from where the count began, against where the live rules send each event.

The demo and the drills publish events whose ids share a prefix, keep the `Expectation` of each, and poll a
`Tally` until every required copy is found; `await_arrivals` does that within a bound, reporting progress.
"""
from __future__ import annotations

import io
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from confluent_kafka import KafkaException, TopicPartition
from fastavro import reader

from hybridbus.adapters import kafka
from hybridbus.adapters.config import REPO_ROOT, Settings
from hybridbus.adapters.topology import PRIVATE, PUBLIC
from hybridbus.ops.leakscan import ScanReport, bucket_keys, scan_object, scan_record
from hybridbus.ops.samples import sample_events
from hybridbus.ops.stack.bootstrap import s3_admin_client
from routing import headers as H
from routing.boundary import ARCHIVE, PUBLIC_CLOUD
from routing.catalog import Catalog, EventType
from routing.engine import GRADED, route
from routing.rules import RuleSet

# The three places a count is kept, in the order a record reaches them.
PRIVATE_CLUSTER, PUBLIC_CLUSTER, BUCKET = "private cluster", "public cluster", "open-data bucket"
PLACES = (PRIVATE_CLUSTER, PUBLIC_CLUSTER, BUCKET)


@dataclass(frozen=True)
class Expectation:
    """Where one event's copies must land under the live rule set."""

    private: frozenset[str]  # graded and derived-view topics on the private cluster
    public: frozenset[str]  # topics on the public cluster
    archive: frozenset[str]  # `<dept>/<event>/` folders of the open-data bucket

    def at(self, place: str) -> frozenset[str]:
        return {PRIVATE_CLUSTER: self.private, PUBLIC_CLUSTER: self.public, BUCKET: self.archive}[place]


def expectation(event_type: EventType, payload: Mapping[str, Any], ruleset: RuleSet) -> Expectation:
    """Where the routing engine sends this event under `ruleset` (the one decision the router makes, too).

    Pseudonyms are computed inside Vault by the router; only the topics matter here, so any value will do.
    """
    result = route(event_type, payload, ruleset, pseudonymise=lambda _data: "expected")
    exported = [d for d in result.decisions if d.destination != GRADED]
    return Expectation(frozenset(d.topic for d in result.decisions),
                       frozenset(d.topic for d in exported if d.destination == PUBLIC_CLOUD),
                       frozenset(f"{d.event_type.dept}/{d.event_type.event}/" for d in exported
                                 if d.destination == ARCHIVE))


class TopicCounter:
    """Copies of the counted events on some topics of one cluster, read on from where the count began."""

    def __init__(self, cluster: str, topics: Iterable[str], id_prefix: str, cfg: Settings,
                 scan: ScanReport | None = None) -> None:
        self.cluster, self.id_prefix, self.cfg, self.scan = cluster, id_prefix.encode(), cfg, scan
        self.counts: Counter[tuple[str, str]] = Counter()
        self.rules_versions: Counter[str] = Counter()
        self.positions: dict[tuple[str, int], int] = {}
        consumer = self._consumer()
        try:
            for topic in sorted(set(topics)):
                for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                    self.positions[(topic, p)] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        finally:
            consumer.close()

    def watch(self, topics: Iterable[str]) -> None:
        """Count `topics` too, from their beginning: topics made after the count began (a catalog change)."""
        consumer = self._consumer()
        try:
            for topic in sorted(set(topics)):
                for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                    self.positions.setdefault((topic, p), 0)
        finally:
            consumer.close()

    def poll(self, timeout: float = 60.0) -> bool:
        """Read everything written since the last poll; False when the cluster cannot be read now."""
        consumer = self._consumer()
        try:
            ends = {tp: consumer.get_watermark_offsets(TopicPartition(*tp), timeout=5)[1] for tp in self.positions}
            todo = {tp for tp, end in ends.items() if end > self.positions[tp]}
            if not todo:
                return True
            consumer.assign([TopicPartition(t, p, self.positions[(t, p)]) for t, p in todo])
            deadline = time.monotonic() + timeout
            while todo and time.monotonic() < deadline:
                for msg in consumer.consume(2000, timeout=0.5):
                    if msg.error():
                        continue
                    tp = (msg.topic(), msg.partition())
                    self.positions[tp] = msg.offset() + 1
                    if self.positions[tp] >= ends[tp]:
                        todo.discard(tp)
                    self._count(msg)
            return not todo
        except KafkaException:
            return False
        finally:
            consumer.close()

    def _count(self, msg) -> None:  # type: ignore[no-untyped-def]
        if self.scan is not None:
            scan_record(self.scan, msg)
        headers = dict(msg.headers() or [])
        event_id = headers.get(H.EVENT_ID) or b""
        if event_id.startswith(self.id_prefix):
            self.counts[(msg.topic(), event_id.decode())] += 1
            self.rules_versions[(headers.get(H.RULES_VERSION) or b"").decode()] += 1

    def _consumer(self):  # type: ignore[no-untyped-def]
        return kafka.consumer(self.cluster, kafka.admin_credentials(self.cluster, self.cfg),
                              group=f"hbus-count-{uuid.uuid4().hex[:8]}")


class BucketCounter:
    """Copies of the counted events in the open-data bucket, from the event ids each new object lists.

    Every new object of the bucket is read and scanned for canaries, wherever it was written.
    """

    def __init__(self, cfg: Settings, id_prefix: str, scan: ScanReport) -> None:
        self.s3, self.bucket, self.id_prefix, self.scan = s3_admin_client(cfg), cfg.open_data_bucket, id_prefix, scan
        self.counts: Counter[tuple[str, str]] = Counter()
        self.seen: set[str] = set(bucket_keys(self.s3, self.bucket))

    def poll(self) -> bool:
        try:
            for key in list(bucket_keys(self.s3, self.bucket)):
                if key in self.seen:
                    continue
                body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                scan_object(self.scan, self.bucket, key, body)
                if key.endswith(".avro"):
                    ids = json.loads(reader(io.BytesIO(body)).metadata.get("hbus.event_ids", "[]"))
                    folder = "/".join(key.split("/")[:2]) + "/"
                    self.counts.update((folder, i) for i in ids if i.startswith(self.id_prefix))
                self.seen.add(key)
            return True
        except (ClientError, BotoCoreError):
            return False  # a server that has just restarted may refuse for a moment: look again later


class Tally:
    """Every place the counted events must reach, counted incrementally while the bus catches up.

    Build it before the events are published: it counts only what is written after.
    """

    def __init__(self, cfg: Settings, catalog: Catalog, ruleset: RuleSet, id_prefix: str) -> None:
        samples = REPO_ROOT / "schemas" / "samples"
        decisions = [d for s in sample_events(catalog, samples, 1, canaries=False)
                     for d in route(s.event_type, s.payload, ruleset, pseudonymise=lambda _data: "expected").decisions]
        self.scan = ScanReport()  # the leak scan of everything written to the public side since the count began
        self.private = TopicCounter(PRIVATE, {d.topic for d in decisions}, id_prefix, cfg)
        # Every topic of the public cluster is read, so that a copy where the rules send none is seen too.
        public_topics = kafka.admin(PUBLIC, kafka.admin_credentials(PUBLIC, cfg)).list_topics(timeout=10).topics
        self.public = TopicCounter(PUBLIC, [t for t in public_topics if not t.startswith("__")], id_prefix, cfg,
                                   self.scan)
        self.bucket = BucketCounter(cfg, id_prefix, self.scan)

    def watch(self, private: Iterable[str], public: Iterable[str]) -> None:
        """Count topics made after the count began (a catalog change mid-stream) on each cluster."""
        self.private.watch(private)
        self.public.watch(public)

    def poll(self) -> bool:
        return all([self.private.poll(), self.public.poll(), self.bucket.poll()])

    def copies(self, place: str) -> Counter[tuple[str, str]]:
        """Copies per (topic or folder, event id) found at `place`."""
        return {PRIVATE_CLUSTER: self.private.counts, PUBLIC_CLUSTER: self.public.counts,
                BUCKET: self.bucket.counts}[place]

    def missing(self, event_id: str, where: Expectation) -> int:
        """Required copies of one event not found yet."""
        return sum(self.copies(place)[(at, event_id)] == 0 for place in PLACES for at in where.at(place))

    def outside(self) -> Iterable[tuple[str, str, int]]:
        """(place, event id, copies) of every counted event found on the public cluster or in the bucket."""
        yield from ((t, i, n) for (t, i), n in self.public.counts.items())
        yield from ((f, i, n) for (f, i), n in self.bucket.counts.items())


@dataclass(frozen=True)
class Arrival:
    """One place's count: the records the rules require there and those found, per topic or folder."""

    place: str
    expected: Mapping[str, int]
    found: Mapping[str, int]
    extra_copies: int = 0  # copies beyond the first of a required record, or where the rules send none

    @property
    def expected_total(self) -> int:
        return sum(self.expected.values())

    @property
    def found_total(self) -> int:
        return sum(self.found.values())

    @property
    def missing(self) -> dict[str, int]:
        """Required records not found yet, per topic or folder (only those with any missing)."""
        return {at: n - self.found.get(at, 0) for at, n in sorted(self.expected.items()) if n > self.found.get(at, 0)}

    @property
    def complete(self) -> bool:
        return self.found_total >= self.expected_total


def arrivals(tally: Tally, expected: Mapping[str, Expectation]) -> tuple[Arrival, ...]:
    """Per place, how many of the records that `expected` requires the tally has found."""
    result = []
    for place in PLACES:
        copies = tally.copies(place)
        wanted: Counter[str] = Counter()
        found: Counter[str] = Counter()
        required: set[tuple[str, str]] = set()
        for event_id, where in expected.items():
            for at in where.at(place):
                wanted[at] += 1
                required.add((at, event_id))
                found[at] += copies[(at, event_id)] > 0
        extra = sum(n - 1 if key in required else n for key, n in copies.items() if key[1] in expected)
        # The private side may hold an event twice (a router replay); only copies outside count as extra.
        result.append(Arrival(place, dict(wanted), {at: n for at, n in found.items() if n},
                              0 if place == PRIVATE_CLUSTER else extra))
    return tuple(result)


Progress = Callable[[Sequence[Arrival], float], None]


def await_arrivals(tally: Tally, expected: Mapping[str, Expectation], within: float,
                   progress: Progress | None = None, interval: float = 1.0) -> tuple[Arrival, ...]:
    """Poll until every record `expected` requires is found, or `within` seconds pass; the last count.

    `progress` is told the count and the seconds waited after every poll.
    """
    started = time.monotonic()
    while True:
        tally.poll()
        counted = arrivals(tally, expected)
        waited = time.monotonic() - started
        if progress is not None:
            progress(counted, waited)
        if all(a.complete for a in counted) or waited >= within:
            return counted
        time.sleep(min(interval, max(0.0, within - waited)))
