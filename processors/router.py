"""The router (Faust worker, confluent-kafka data plane): consumes `ingress.*`, grades every event by its schema
and applies the live rule set.

Outputs are produced without awaiting each one; a batch's offsets are committed only after every output of the
batch is acknowledged by Kafka, so a crash replays and never skips.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from confluent_kafka import Message

from hybridbus.adapters import metrics
from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.loaders import load_catalog
from hybridbus.adapters.producer import BatchProducer
from hybridbus.adapters.topology import DECISIONS_TOPIC, PRIVATE
from hybridbus.runtime.dataplane import DataPlane
from hybridbus.runtime.decisions import decisions_batch
from hybridbus.runtime.faustapp import kafka_login, login, make_app, serve
from hybridbus.runtime.rulesigning import RuleCheck
from hybridbus.runtime.rulestore import LIVE, SHADOW, RuleFeed
from hybridbus.runtime.steps import Outcome, RouterStep
from routing import headers as H
from routing.rules import RuleSet

log = logging.getLogger("hbus.router")

BATCH_SIZE = 1000
BATCH_WITHIN = 0.02  # seconds: bounds the latency a quiet stream adds


@dataclass
class RulesInForce:
    """The live and shadow sets; swapped only between batches (by the data-plane thread, before a batch), so no
    record is routed under a mix."""

    live: RuleSet
    shadow: RuleSet | None = None

    def apply(self, updates: dict) -> None:  # type: ignore[type-arg]
        if LIVE in updates and updates[LIVE].ruleset is not None:
            self.live = updates[LIVE].ruleset
            log.warning("event=rules_switched role=live version=%s", self.live.version)
        if SHADOW in updates:
            self.shadow = updates[SHADOW].ruleset
            log.warning("event=rules_switched role=shadow version=%s",
                        self.shadow.version if self.shadow else "none")
        metrics.RULES_VERSION.clear()
        metrics.RULES_VERSION.labels("router", LIVE, self.live.version).set(1)
        if self.shadow is not None:
            metrics.RULES_VERSION.labels("router", SHADOW, self.shadow.version).set(1)


def main() -> None:
    cfg, vault = login("router")
    creds = kafka_login(vault, "router", PRIVATE)
    catalog = load_catalog(cfg)
    feed = RuleFeed(creds, RuleCheck(vault, "router", catalog))
    applied = feed.load()
    rules = RulesInForce(RuleSet.empty())
    rules.apply(applied)
    step = RouterStep(catalog, AvroCodec.for_catalog(catalog), pseudonymiser=lambda data: vault.hmac(data).encode())

    app = make_app("router", creds, cfg)
    outputs = BatchProducer.connect(PRIVATE, creds, "router")
    ingress = sorted({t.ingress_topic for t in catalog.latest()})

    def route_batch(messages: list[Message]) -> None:
        live, shadow = rules.live, rules.shadow  # one snapshot for the whole batch
        now_ms = int(time.time() * 1000)
        decisions = []
        for msg in messages:
            headers = msg.headers()
            outcome = step.route(msg.topic(), msg.partition(), msg.key(), msg.value(), headers, live, shadow, now_ms)
            for out in outcome.outputs:
                outputs.send(out.topic, out.key, out.value, out.partition, out.headers)
            decisions.extend(outcome.decisions)
            _count(outcome, headers, now_ms)
        for chunk in decisions_batch(decisions):
            outputs.send(DECISIONS_TOPIC, b"router", chunk)
        # Every output acknowledged before the batch's offsets are committed.
        outputs.confirm()

    plane = DataPlane(app, "router", creds, ingress, route_batch, batch_size=BATCH_SIZE, within=BATCH_WITHIN)
    # Every DLQ reason's series exists from the start, so an alert's increase() sees the first bad record too.
    for reason in ("empty", "unknown_schema", "decode_error", "wrong_topic", "wrong_department", "routing_error"):
        metrics.DLQ.labels("router", reason)
    serve(app, "router", vault, feed, lambda updates: plane.between_batches(lambda: rules.apply(updates)), creds,
          ingress, cfg.ports.router_metrics, cfg.host)


def _count(outcome: Outcome, headers, now_ms: int) -> None:  # type: ignore[no-untyped-def]
    et = outcome.event_type
    if et is None:
        metrics.DLQ.labels("router", outcome.dlq_reason or "unknown").inc()
        return
    metrics.EVENTS_IN.labels("router", et.dept, et.key).inc()
    for out in outcome.outputs:
        grade = next((v.decode() for k, v in out.headers if k == H.GRADE), "")
        metrics.EVENTS_OUT.labels("router", et.dept, et.key, grade, out.topic.split(".", 1)[0]).inc()
    if outcome.forged:
        metrics.FORGED_HEADERS.labels(et.dept, et.key).inc()
    if outcome.blocked:
        metrics.BOUNDARY_BLOCKED.labels("router", et.dept, et.key, outcome.grade.id if outcome.grade else "").inc(outcome.blocked)
    for rule_id, change in outcome.shadow_changes:
        metrics.SHADOW_MOVES.labels(rule_id, change.split(":", 1)[0]).inc()
    metrics.observe_latency("routed", headers, now_ms)


if __name__ == "__main__":
    main()
