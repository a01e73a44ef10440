"""The rule sets in force, kept on the compacted `_hbus.rules` topic: one record per role (live, shadow).

`publish` is what `hbus rules apply` does; `RuleFeed` is how routers follow it without a restart.
"""
from __future__ import annotations

import getpass
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from hybridbus.adapters import kafka
from hybridbus.adapters.producer import BatchProducer
from hybridbus.adapters.secrets import KafkaCredentials
from hybridbus.adapters.topology import PRIVATE, RULES_TOPIC
from routing.rules import RuleSet

LIVE = "live"
SHADOW = "shadow"


@dataclass(frozen=True)
class AppliedRuleSet:
    role: str
    ruleset: RuleSet | None  # None: the role was withdrawn (e.g. a shadow pilot ended)
    applied_by: str
    applied_at_ms: int


def publish(ruleset: RuleSet | None, role: str, creds: KafkaCredentials, applied_by: str | None = None) -> AppliedRuleSet:
    """Write `ruleset` as the `role` set; routers switch to it at their next batch boundary."""
    applied = AppliedRuleSet(role, ruleset, applied_by or getpass.getuser(), int(time.time() * 1000))
    body: dict[str, Any] = {
        "role": role,
        "applied_by": applied.applied_by,
        "applied_at_ms": applied.applied_at_ms,
        "ruleset": json.loads(ruleset.to_json()) if ruleset is not None else None,
    }
    # Refused or not acknowledged within 30 s: DeliveryError naming the topic and the broker's reason.
    outputs = BatchProducer.connect(PRIVATE, creds, "rules", **{"message.timeout.ms": 30_000})
    outputs.send(RULES_TOPIC, role.encode(), json.dumps(body).encode())
    outputs.confirm()
    return applied


def decode(value: bytes) -> AppliedRuleSet:
    body = json.loads(value)
    raw = body.get("ruleset")
    ruleset = RuleSet.from_json(json.dumps(raw)) if raw is not None else None
    return AppliedRuleSet(body["role"], ruleset, body.get("applied_by", "?"), int(body.get("applied_at_ms", 0)))


class RuleFeed:
    """Follows `_hbus.rules` from its beginning; `poll()` returns the newest record per role since last call."""

    def __init__(self, creds: KafkaCredentials) -> None:
        self._consumer = kafka.consumer(PRIVATE, creds, group=f"hbus-rulefeed-{uuid.uuid4().hex[:8]}",
                                        **{"enable.partition.eof": False})
        self._consumer.assign([TopicPartition(RULES_TOPIC, 0, 0)])

    def load(self, timeout: float = 60.0) -> dict[str, AppliedRuleSet]:
        """Everything on the topic now: read up to the end offset seen at call time.

        A processor starting while the partition's leader moves (a broker lost or restarting) waits for the new
        leader, within `timeout`, rather than exit on the first "not leader".
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                _, high = self._consumer.get_watermark_offsets(TopicPartition(RULES_TOPIC, 0),
                                                               timeout=max(0.5, deadline - time.monotonic()))
                break
            except KafkaException:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)
        latest: dict[str, AppliedRuleSet] = {}
        position = 0
        while position < high and time.monotonic() < deadline:
            for msg in self._consumer.consume(100, timeout=0.5):
                if msg.error() or msg.value() is None:
                    continue
                position = msg.offset() + 1
                latest[msg.key().decode()] = decode(msg.value())
        return latest

    def poll(self) -> dict[str, AppliedRuleSet]:
        latest: dict[str, AppliedRuleSet] = {}
        for msg in self._consumer.consume(100, timeout=0):
            if msg.error() or msg.value() is None:
                continue
            latest[msg.key().decode()] = decode(msg.value())
        return latest

    def close(self) -> None:
        self._consumer.close()
