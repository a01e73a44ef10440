"""The router (Faust worker, confluent-kafka data plane): consumes `ingress.*`, grades every event by its schema
and applies the live rule set, under the catalog in force (`_hbus.catalog`, followed without a restart).

Outputs are produced without awaiting each one; a batch is routed while the one before is acknowledged, and its
offsets are committed only after every output of the batch is acknowledged by Kafka, so a crash replays and never
skips. Keyed pseudonyms come from Vault Transit once per batch, in the data-plane thread (never on the event loop);
while Vault is out the batch waits.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from confluent_kafka import Message

from hybridbus.adapters import metrics
from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.producer import WIDE_LANES, BatchProducer
from hybridbus.adapters.topology import DECISIONS_TOPIC, PRIVATE
from hybridbus.runtime.catalogfeed import CatalogInForce
from hybridbus.runtime.dataplane import DataPlane
from hybridbus.runtime.faustapp import kafka_login, login, make_app, serve
from hybridbus.runtime.following import follow
from hybridbus.runtime.holdback import HoldBack
from hybridbus.runtime.pseudonyms import PseudonymCache
from hybridbus.runtime.router_step import RouterBatch, RouterStep
from hybridbus.runtime.rulestore import LIVE, SHADOW
from routing.rules import RuleSet

log = logging.getLogger("hbus.router")

BATCH_SIZE = 1000
BATCH_WITHIN = 0.02  # seconds: bounds the latency a quiet stream adds
INGRESS_PATTERN = r"^ingress\..*"  # every ingress topic, those of types added after the start too


@dataclass
class RulesInForce:
    """The live and shadow sets; swapped only between batches (by the data-plane thread, before a batch), so no
    record is routed under a mix. Each switch compiles the sets into the step's plans once."""

    step: RouterStep
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
        self.step.load(self.live, self.shadow)
        metrics.RULES_VERSION.clear()
        metrics.RULES_VERSION.labels("router", LIVE, self.live.version).set(1)
        if self.shadow is not None:
            metrics.RULES_VERSION.labels("router", SHADOW, self.shadow.version).set(1)

    def use_catalog(self, in_force: CatalogInForce) -> None:
        """Route under a new catalog from the next batch on: its codec, and the sets compiled for it again."""
        self.step.use_catalog(in_force.catalog, AvroCodec.for_catalog(in_force.catalog))
        log.warning("event=catalog_switched digest=%s", in_force.digest)


def main() -> None:
    cfg, vault = login("router")
    creds = kafka_login(vault, "router", PRIVATE)
    catalogs, catalog, check, feed = follow(cfg, vault, creds, "router")
    applied = feed.load()
    step = RouterStep(catalog, AvroCodec.for_catalog(catalog), pseudonyms=PseudonymCache(vault.hmac_batch))
    rules = RulesInForce(step, RuleSet.empty())
    rules.apply(applied)

    app = make_app("router", creds, cfg)
    outputs = BatchProducer.connect(PRIVATE, creds, "router", lanes=WIDE_LANES)
    # A record of a version the catalog in force does not know yet waits for the catalog, within the bound.
    holdback = HoldBack(lambda fingerprint: step.codec.knows(fingerprint), cfg.unknown_schema_hold_s)
    step.unknown_waited = holdback.waited_s

    class RouteBatch:
        """The router's batch in halves: routed while the batch before is acknowledged, then sent."""

        @staticmethod
        def prepare(messages: list[Message]) -> RouterBatch:
            batch = step.begin(int(time.time() * 1000))  # under the sets loaded before this batch, all of it
            step.prepare(batch, ((msg.topic(), msg.value()) for msg in messages))  # one Transit request at most
            for msg in messages:
                step.route_into(batch, msg.topic(), msg.partition(), msg.key(), msg.value(), msg.headers())
            return batch

        @staticmethod
        def send(batch: RouterBatch) -> None:
            outputs.send_all(batch.outputs)
            outputs.send_all(batch.dlq)
            for chunk in batch.decision_records():
                outputs.send(DECISIONS_TOPIC, b"router", chunk)

        @staticmethod
        def confirm(batch: RouterBatch) -> None:
            # Every output acknowledged before the batch is counted and its offsets are committed.
            outputs.confirm()
            batch.publish_metrics()

    plane = DataPlane(app, "router", creds, [INGRESS_PATTERN], RouteBatch(), batch_size=BATCH_SIZE,
                      within=BATCH_WITHIN, holdback=holdback)

    def on_catalog(in_force: CatalogInForce) -> None:
        check.use_catalog(in_force.catalog)  # a widening is judged on the catalog in force
        plane.between_batches(lambda: rules.use_catalog(in_force))

    # Every DLQ reason's series exists from the start, so an alert's increase() sees the first bad record too.
    for reason in ("empty", "unknown_schema", "decode_error", "wrong_topic", "wrong_department", "routing_error"):
        metrics.DLQ.labels("router", reason)
    serve(app, "router", vault, feed, lambda updates: plane.between_batches(lambda: rules.apply(updates)), creds,
          [INGRESS_PATTERN], cfg.ports.router_metrics, cfg.host, catalogs, on_catalog)


if __name__ == "__main__":
    main()
