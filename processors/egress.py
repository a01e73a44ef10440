"""Egress (Faust): copies the private `public.*` topics to the public cluster through the boundary guard.

The guard decodes every record itself and lets only `public` out; anything else is quarantined on the
private side. Delivery is effectively once: each public partition is fed by exactly one private partition,
in order, and every record carries its source offset, so a restart resumes after what the public cluster
already holds — no gap, no duplicate — without a transaction spanning two clusters.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

from confluent_kafka import Producer, TopicPartition

from hybridbus.adapters import kafka, metrics
from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.exceptions import DeliveryError
from hybridbus.adapters.loaders import derived_event_types, load_catalog
from hybridbus.adapters.topology import DECISIONS_TOPIC, PRIVATE, PUBLIC, QUARANTINE_TOPIC
from hybridbus.runtime.decisions import decisions_batch
from hybridbus.runtime.faustapp import (
    add_housekeeping,
    exit_on_error,
    kafka_login,
    login,
    make_app,
    quarantine,
    run_worker,
)
from hybridbus.runtime.lag import watch_lag
from hybridbus.runtime.rulestore import RuleFeed
from hybridbus.runtime.steps import BoundaryStep
from routing import headers as H
from routing.boundary import PUBLIC_CLOUD
from routing.grades import Grade

log = logging.getLogger("hbus.egress")

BATCH_SIZE = 1000
BATCH_WITHIN = 0.02
SOURCE_OFFSET = "hbus-source-offset"


DEDUPE_WINDOW = 20_000  # event ids remembered per partition: a router replay repeats at most an uncommitted batch


class PublicSide:
    """The public cluster as egress sees it: an idempotent producer and what each partition already holds.

    Two kinds of repeat are removed: a replay of egress itself (by source offset) and a replay of the router
    upstream, which writes the same event again at a new offset (by event id, within a window per partition).
    """

    def __init__(self, creds) -> None:  # type: ignore[no-untyped-def]
        self.producer: Producer = kafka.producer(PUBLIC, creds, **{
            "message.timeout.ms": 0,  # never give up: when the public cloud is down, wait for it
            "max.in.flight.requests.per.connection": 5, "linger.ms": 5, "batch.num.messages": 2000,
        })
        self._reader = kafka.consumer(PUBLIC, creds, group="hbus-egress-positions")
        self._exported: dict[tuple[str, int], int] = {}
        self._recent: dict[tuple[str, int], OrderedDict[bytes, None]] = {}
        self.errors: list[str] = []

    def exported_up_to(self, topic: str, partition: int) -> int:
        """Highest source offset of (topic, partition) already on the public cluster, or -1."""
        key = (topic, partition)
        if key not in self._exported:
            self._load_tail(topic, partition)
        return self._exported[key]

    def seen(self, topic: str, partition: int, event_id: bytes) -> bool:
        """True when this event id already went out on this partition (remembers it otherwise)."""
        recent = self._recent[(topic, partition)]
        if event_id in recent:
            return True
        recent[event_id] = None
        if len(recent) > DEDUPE_WINDOW:
            recent.popitem(last=False)
        return False

    def _load_tail(self, topic: str, partition: int) -> None:
        """Read the partition's last DEDUPE_WINDOW records: the last source offset and the recent event ids."""
        recent: OrderedDict[bytes, None] = OrderedDict()
        last = -1
        tp = TopicPartition(topic, partition)
        low, high = self._reader.get_watermark_offsets(tp, timeout=30)
        if high > low:
            self._reader.assign([TopicPartition(topic, partition, max(low, high - DEDUPE_WINDOW))])
            try:
                position, deadline = max(low, high - DEDUPE_WINDOW), time.monotonic() + 60
                while position < high:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"could not read the tail of {topic}[{partition}] on the public cluster")
                    for msg in self._reader.consume(1000, timeout=1.0):
                        if msg.error():
                            continue
                        position = msg.offset() + 1
                        headers = dict(msg.headers() or [])
                        last = int(headers.get(SOURCE_OFFSET, b"-1"))
                        if headers.get(H.EVENT_ID):
                            recent[headers[H.EVENT_ID]] = None
            finally:
                self._reader.unassign()
        self._exported[(topic, partition)] = last
        self._recent[(topic, partition)] = recent

    def send(self, topic: str, partition: int, offset: int, key, value: bytes, headers) -> None:  # type: ignore[no-untyped-def]
        out_headers = [(k, v) for k, v in (headers or []) if k != SOURCE_OFFSET] + [(SOURCE_OFFSET, str(offset).encode())]

        def delivered(err, _msg) -> None:  # type: ignore[no-untyped-def]
            if err is not None:
                self.errors.append(str(err))

        while True:
            try:
                self.producer.produce(topic, value, key=key, partition=partition, headers=out_headers,
                                      on_delivery=delivered)
                break
            except BufferError:
                self.producer.poll(0.1)
        self._exported[(topic, partition)] = offset

    def flush(self) -> None:
        """Block until every record handed over is acknowledged by the public cluster."""
        while self.producer.flush(5.0) > 0:
            metrics.PAUSED.labels("egress", "public-kafka").set(1)
        metrics.PAUSED.labels("egress", "public-kafka").set(0)
        if self.errors:
            errors, self.errors = self.errors, []
            raise DeliveryError("(public cluster)", errors[0], len(errors))


def main() -> None:
    cfg, vault = login("egress")
    private_creds, public_creds = kafka_login(vault, "egress", PRIVATE), kafka_login(vault, "egress", PUBLIC)
    catalog = load_catalog(cfg)
    feed = RuleFeed(private_creds)
    guard = BoundaryStep(AvroCodec.for_catalog(catalog))
    for applied in feed.load().values():
        guard.learn(derived_event_types(catalog, applied.ruleset))
    public = PublicSide(public_creds)

    app = make_app("egress", private_creds, cfg)
    sources = sorted({t.graded_topic(Grade.PUBLIC) for t in catalog.latest() if t.record_grade is Grade.PUBLIC}
                     | {t.graded_topic(Grade.PUBLIC) for t in guard.derived_types()})
    app_topic = app.topic(*sources)

    @app.agent(app_topic)
    async def export(stream):  # type: ignore[no-untyped-def]
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(BATCH_SIZE, BATCH_WITHIN):
            with exit_on_error():
                now_ms = int(time.time() * 1000)
                private_pending, decisions = [], []
                # Read what the public cluster holds once per partition (blocking I/O, off the event loop).
                for topic, partition in {(e.message.topic, e.message.partition) for e in events}:
                    await loop.run_in_executor(None, public.exported_up_to, topic, partition)
                for event in events:
                    msg = event.message
                    if msg.offset <= public.exported_up_to(msg.topic, msg.partition):
                        continue  # already on the public cluster before a restart
                    verdict = guard.check(msg.topic, msg.key, msg.value, msg.headers, PUBLIC_CLOUD)
                    dept, key = verdict.dept, verdict.type_key(msg.topic)
                    metrics.EVENTS_IN.labels("egress", dept, key).inc()
                    if verdict.allowed and verdict.event_id and public.seen(msg.topic, msg.partition, verdict.event_id.encode()):
                        continue  # the router wrote this event again after a crash; it is already out
                    if verdict.allowed:
                        public.send(msg.topic, msg.partition, msg.offset, msg.key, msg.value, msg.headers)
                        metrics.EVENTS_OUT.labels("egress", dept, key, Grade.PUBLIC.id, "public_cloud").inc()
                        metrics.observe_latency("exported", msg.headers, now_ms)
                        decision = verdict.decision("egress", PUBLIC_CLOUD, msg.topic, "exported", msg.headers, now_ms)
                    elif verdict.leak:
                        private_pending.append(await quarantine(app, "egress", msg, verdict))
                        decision = verdict.decision("egress", PUBLIC_CLOUD, QUARANTINE_TOPIC, "quarantined", msg.headers, now_ms)
                    else:
                        continue  # public, but no rule exports it
                    decisions.append(decision)
                await loop.run_in_executor(None, public.flush)
                for chunk in decisions_batch(decisions):
                    private_pending.append(await app.producer.send(DECISIONS_TOPIC, b"egress", chunk, None, None, None))
                await asyncio.gather(*private_pending)

    add_housekeeping(app, "egress", vault, feed,
                     lambda updates: [guard.learn(derived_event_types(catalog, a.ruleset)) for a in updates.values()])
    watch_lag(app, "egress", private_creds, sources)
    metrics.serve(cfg.ports.egress_metrics, cfg.host)
    run_worker(app)


if __name__ == "__main__":
    main()
