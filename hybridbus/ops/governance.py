"""Governance acts: rule sets put in force and the emergency stop, signed in Vault Transit and put on the audit
chain. The bus's own tools (demo, drills, tests) sign with the local stack's root login.
"""
from __future__ import annotations

import time

from hybridbus.adapters import kafka
from hybridbus.adapters.config import Settings, settings
from hybridbus.adapters.topology import CONTROL_TOPIC, PRIVATE
from hybridbus.adapters.vault import Transit, root_client
from hybridbus.runtime.audit import REASON_LIMIT
from hybridbus.runtime.auditstore import record_decision
from hybridbus.runtime.decisions import DecisionRecord
from hybridbus.runtime.emergency import KEY as BOUNDARY_RECORD_KEY
from hybridbus.runtime.emergency import BoundaryState, signed_state, write_state
from hybridbus.runtime.emergency import decode as decode_state
from hybridbus.runtime.rulesigning import Signer
from hybridbus.runtime.rulestore import AppliedRuleSet, publish
from routing.rules import RuleSet


def stack_signer(cfg: Settings | None = None) -> Transit:
    """Transit with the local stack's root token (state dir): it may sign in every duty. Local stack only."""
    return Transit(root_client(cfg or settings()))


def apply_rules(ruleset: RuleSet | None, role: str, applied_by: str, cfg: Settings | None = None) -> AppliedRuleSet:
    """Sign and publish `ruleset` as the `role` set with the stack's own login (admin Kafka, root Vault)."""
    cfg = cfg or settings()
    return publish(ruleset, role, kafka.admin_credentials(PRIVATE, cfg), stack_signer(cfg), applied_by)


def set_boundary(state: str, reason: str, by: str, signer: Signer | None = None,
                 cfg: Settings | None = None) -> BoundaryState:
    """Close or open the boundary for every egress and archiver instance, signed by `by`; on the audit chain."""
    cfg = cfg or settings()
    record = signed_state(signer or stack_signer(cfg), state, reason, by)
    write_state(record, kafka.admin_credentials(PRIVATE, cfg))
    record_decision(DecisionRecord("boundary", "", "", "", "", "", "boundary", CONTROL_TOPIC, f"boundary_{state}",
                                   reason[:REASON_LIMIT], record.at_ms, actor=by))
    return record


def boundary_state(cfg: Settings | None = None, timeout: float = 10.0) -> BoundaryState | None:
    """The newest boundary record on the control topic as written (None: never closed)."""
    from confluent_kafka import TopicPartition

    cfg = cfg or settings()
    consumer = kafka.consumer(PRIVATE, kafka.admin_credentials(PRIVATE, cfg), group="hbus-boundary-status")
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(CONTROL_TOPIC, 0), timeout=timeout)
        if high == 0:
            return None
        consumer.assign([TopicPartition(CONTROL_TOPIC, 0, 0)])
        latest, position, deadline = None, 0, time.monotonic() + timeout
        while position < high and time.monotonic() < deadline:
            for msg in consumer.consume(100, timeout=0.5):
                if msg.error() or msg.value() is None:
                    continue
                position = msg.offset() + 1
                if msg.key() == BOUNDARY_RECORD_KEY:
                    latest = decode_state(msg.value())
        return latest
    finally:
        consumer.close()
