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

from confluent_kafka import Message, TopicPartition

from hybridbus.adapters import kafka, metrics
from hybridbus.adapters.loaders import load_catalog
from hybridbus.adapters.producer import BatchProducer
from hybridbus.adapters.topology import DECISIONS_TOPIC, PRIVATE, PUBLIC, QUARANTINE_TOPIC
from hybridbus.runtime.dataplane import DataPlane, quarantine
from hybridbus.runtime.decisions import decisions_batch
from hybridbus.runtime.emergency import BoundaryGate
from hybridbus.runtime.faustapp import kafka_login, login, make_app, serve
from hybridbus.runtime.guarded import DEDUPE_WINDOW, DedupeWindow, guard_for, public_sources, view_follower
from hybridbus.runtime.rulesigning import RuleCheck
from hybridbus.runtime.rulestore import RuleFeed
from routing import headers as H
from routing.boundary import PUBLIC_CLOUD
from routing.grades import Grade

log = logging.getLogger("hbus.egress")

BATCH_SIZE = 1000
BATCH_WITHIN = 0.02
SOURCE_OFFSET = "hbus-source-offset"



class PublicSide:
    """The public cluster as egress sees it: an idempotent producer and what each partition already holds.

    Two kinds of repeat are removed: a replay of egress itself (by source offset) and a replay of the router
    upstream, which writes the same event again at a new offset (by event id, within a window per partition).
    """

    def __init__(self, creds) -> None:  # type: ignore[no-untyped-def]
        # Idempotent with at most 5 requests in flight: records of a partition reach the public cluster in order.
        self.outputs = BatchProducer.connect(PUBLIC, creds, "egress", "public-kafka", **{
            "message.timeout.ms": 0,  # never give up: when the public cloud is down, wait for it
            "max.in.flight.requests.per.connection": 5, "linger.ms": 5, "batch.num.messages": 2000,
        })
        self._reader = kafka.consumer(PUBLIC, creds, group="hbus-egress-positions")
        self._exported: dict[tuple[str, int], int] = {}
        self._recent = DedupeWindow()

    def forget(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Drop what is known of partitions this worker did not own just before: another may have exported
        from them meanwhile, so their positions are read again from the public cluster."""
        for key in partitions:
            self._exported.pop(key, None)
            self._recent.forget(key)

    def exported_up_to(self, topic: str, partition: int) -> int:
        """Highest source offset of (topic, partition) already on the public cluster, or -1."""
        key = (topic, partition)
        if key not in self._exported:
            self._load_tail(topic, partition)
        return self._exported[key]

    def seen(self, topic: str, partition: int, event_id: bytes) -> bool:
        """True when this event id already went out on this partition (remembers it otherwise)."""
        return self._recent.seen((topic, partition), event_id)

    def _load_tail(self, topic: str, partition: int) -> None:
        """Read the partition's last DEDUPE_WINDOW records: the last source offset and the recent event ids."""
        recent: list[bytes] = []
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
                            recent.append(headers[H.EVENT_ID])
            finally:
                self._reader.unassign()
        self._exported[(topic, partition)] = last
        self._recent.load((topic, partition), recent)

    def send(self, topic: str, partition: int, offset: int, key, value: bytes, headers) -> None:  # type: ignore[no-untyped-def]
        out_headers = [(k, v) for k, v in (headers or []) if k != SOURCE_OFFSET] + [(SOURCE_OFFSET, str(offset).encode())]
        self.outputs.send(topic, key, value, partition, out_headers)
        self._exported[(topic, partition)] = offset

    def flush(self) -> None:
        """Block until every record handed over is acknowledged by the public cluster."""
        self.outputs.confirm()


def main() -> None:
    cfg, vault = login("egress")
    private_creds, public_creds = kafka_login(vault, "egress", PRIVATE), kafka_login(vault, "egress", PUBLIC)
    catalog = load_catalog(cfg)
    feed = RuleFeed(private_creds, RuleCheck(vault, "egress", catalog))
    guard = guard_for(catalog, feed)
    public = PublicSide(public_creds)
    boundary = BoundaryGate(private_creds, vault, "egress")

    app = make_app("egress", private_creds, cfg)
    private = BatchProducer.connect(PRIVATE, private_creds, "egress")
    sources = public_sources(catalog, guard)

    def export(messages: list[Message]) -> None:
        boundary.hold()  # emergency stop: while closed this batch waits here, unsent and uncommitted
        now_ms = int(time.time() * 1000)
        decisions = []
        for msg in messages:
            topic, partition, offset, headers = msg.topic(), msg.partition(), msg.offset(), msg.headers()
            if offset <= public.exported_up_to(topic, partition):
                continue  # already on the public cluster before a restart
            verdict = guard.check(topic, msg.key(), msg.value(), headers, PUBLIC_CLOUD)
            dept, key = verdict.dept, verdict.type_key(topic)
            metrics.EVENTS_IN.labels("egress", dept, key).inc()
            if verdict.allowed and verdict.event_id and public.seen(topic, partition, verdict.event_id.encode()):
                continue  # the router wrote this event again after a crash; it is already out
            if verdict.allowed:
                # Private partition p to public partition p, in offset order.
                public.send(topic, partition, offset, msg.key(), msg.value(), headers)
                metrics.EVENTS_OUT.labels("egress", dept, key, Grade.PUBLIC.id, "public_cloud").inc()
                metrics.observe_latency("exported", headers, now_ms)
                decision = verdict.decision("egress", PUBLIC_CLOUD, topic, "exported", headers, now_ms)
            elif verdict.leak:
                quarantine(private, "egress", msg, verdict)
                decision = verdict.decision("egress", PUBLIC_CLOUD, QUARANTINE_TOPIC, "quarantined", headers, now_ms)
            else:
                continue  # public, but no rule exports it
            decisions.append(decision)
        public.flush()
        for chunk in decisions_batch(decisions):
            private.send(DECISIONS_TOPIC, b"egress", chunk)
        private.confirm()

    plane = DataPlane(app, "egress", private_creds, sources, export, batch_size=BATCH_SIZE, within=BATCH_WITHIN,
                      on_assign=public.forget)
    serve(app, "egress", vault, feed, view_follower(plane, guard, catalog), private_creds, sources,
          cfg.ports.egress_metrics, cfg.host)


if __name__ == "__main__":
    main()
