"""Governance acts: rule sets proposed, approved and put in force, and the emergency stop; each signed in Vault
Transit by the person who acts (their own login) and put on the audit chain with their name.

The bus's own tools (demo, drills, tests) act as the local stack's sample people.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hybridbus.adapters import kafka
from hybridbus.adapters.config import Settings, settings
from hybridbus.adapters.topology import CONTROL_TOPIC, PRIVATE, RULES_TOPIC
from hybridbus.adapters.vault import PersonToken, Transit, root_client
from hybridbus.ops.people import NotAllowed, require, sample_login
from hybridbus.ops.stack.bootstrap import APPROVER, ENGINEER, OPERATOR
from hybridbus.runtime.audit import REASON_LIMIT
from hybridbus.runtime.auditstore import record_decision
from hybridbus.runtime.decisions import DecisionRecord
from hybridbus.runtime.emergency import KEY as BOUNDARY_RECORD_KEY
from hybridbus.runtime.emergency import BoundaryState, signed_state, write_state
from hybridbus.runtime.emergency import decode as decode_state
from hybridbus.runtime.rulesigning import RuleCheck, Signature, sign_approval
from hybridbus.runtime.rulestore import (
    LIVE,
    PROPOSAL_PREFIX,
    AppliedRuleSet,
    RuleFeed,
    latest_records,
    publish,
    write_raw,
)
from routing import governance as G
from routing.catalog import EventType
from routing.rules import RuleSet

SAMPLE_ENGINEER, SAMPLE_APPROVER = "li.wei", "zhang.min"  # whom the bus's own tools act as on the local stack


def stack_signer(cfg: Settings | None = None) -> Transit:
    """Transit with the local stack's root token (state dir): it may sign in every duty. Local stack only."""
    return Transit(root_client(cfg or settings()))


def record_act(component: str, verdict: str, version: str, destination: str, reason: str, at_ms: int,
               actor: str, *, topic: str | None = None, event_id: str = "", event_type: str = "", dept: str = "",
               grade: str = "") -> None:
    """A person's act on the audit chain: what, on which set, switch or record, why, when and who (from their
    login). An act on one event (a quarantine release) names it, so `hbus audit query event ID` shows it too."""
    topic = topic or (CONTROL_TOPIC if component == "boundary" else RULES_TOPIC)
    record_decision(DecisionRecord(component, event_id, event_type, dept, grade, version, destination, topic, verdict,
                                   reason[:REASON_LIMIT], at_ms, actor=actor))


# --- rule sets ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Proposal:
    """A rule set put up for review on `_hbus.rules` (`proposal/<digest>`), with the approvals it has gathered."""

    ruleset: RuleSet
    proposer: str
    proposed_at_ms: int
    changes: tuple[dict[str, Any], ...]  # against the live set when proposed (`hbus rules diff` rows)
    signature: str
    approvals: tuple[Signature, ...] = ()

    @property
    def digest(self) -> str:
        return self.ruleset.digest

    def to_bytes(self) -> bytes:
        return json.dumps({"kind": "proposal", "digest": self.digest, "proposer": self.proposer,
                           "proposed_at_ms": self.proposed_at_ms, "changes": list(self.changes),
                           "signature": self.signature, "approvals": [a.to_json() for a in self.approvals],
                           "ruleset": json.loads(self.ruleset.to_json())}, ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, value: bytes) -> Proposal:
        body = json.loads(value)
        return cls(RuleSet.from_json(json.dumps(body["ruleset"])), str(body["proposer"]),
                   int(body["proposed_at_ms"]), tuple(body.get("changes") or ()), str(body.get("signature", "")),
                   tuple(Signature.from_json(a) for a in body.get("approvals") or ()))


def change_rows(old: RuleSet, new: RuleSet, event_types: Iterable[EventType]) -> list[dict[str, Any]]:
    """`routing.governance.changes` as rows for people and JSON (widening or narrowing is decided there)."""
    return [{"event_type": c.event_type, "added": list(c.added), "removed": list(c.removed),
             "views_changed": list(c.views_changed), "widens": c.widens}
            for c in G.changes(old, new, event_types)]


def live_ruleset(person: PersonToken, event_types: Iterable[EventType], cfg: Settings | None = None) -> AppliedRuleSet | None:
    """The live set as the processors see it: verified with the person's own login (engineers and approvers may)."""
    cfg = cfg or settings()
    feed = RuleFeed(kafka.admin_credentials(PRIVATE, cfg), RuleCheck(Transit(person.client(cfg)), "cli", event_types))
    try:
        return feed.load().get(LIVE)
    finally:
        feed.close()


def propose(ruleset: RuleSet, person: PersonToken, event_types: Iterable[EventType],
            cfg: Settings | None = None) -> Proposal:
    """Record `ruleset` for review, signed by its proposer (an engineer), with what it moves against the live set."""
    cfg = cfg or settings()
    require(person, ENGINEER)
    types = tuple(event_types)
    live = live_ruleset(person, types, cfg)
    before = live.ruleset if live is not None and live.ruleset is not None else RuleSet.empty()
    signature = Transit(person.client(cfg)).sign(G.proposal_statement(ruleset.digest, person.name), "rules-proposer")
    proposal = Proposal(ruleset, person.name, int(time.time() * 1000), tuple(change_rows(before, ruleset, types)),
                        signature)
    write_raw(PROPOSAL_PREFIX + proposal.digest, proposal.to_bytes(), kafka.admin_credentials(PRIVATE, cfg))
    record_act("rules", "rules_proposed", ruleset.version, LIVE, f"digest {proposal.digest[:12]}",
               proposal.proposed_at_ms, person.name)
    return proposal


def find_proposal(digest: str, cfg: Settings | None = None) -> Proposal:
    """The proposal whose digest is (or starts with, at least 8 characters) `digest`."""
    cfg = cfg or settings()
    if len(digest) < 8:
        raise NotAllowed("give at least 8 characters of the digest")
    found = [Proposal.from_bytes(v) for k, v in latest_records(kafka.admin_credentials(PRIVATE, cfg),
                                                               PROPOSAL_PREFIX + digest).items()]
    if len(found) != 1:
        raise NotAllowed(f"no single proposal with digest {digest}: {len(found)} found")
    return found[0]


def approve(digest: str, person: PersonToken, cfg: Settings | None = None) -> Proposal:
    """Add `person`'s approval (an approver, never the proposer) to the proposal of `digest`."""
    cfg = cfg or settings()
    require(person, APPROVER)
    proposal = find_proposal(digest, cfg)
    if person.name == proposal.proposer:
        raise NotAllowed(f"{person.name} proposed {proposal.digest[:12]}: a second person must approve it")
    approval = sign_approval(Transit(person.client(cfg)), proposal.digest, person.name)
    approved = Proposal(proposal.ruleset, proposal.proposer, proposal.proposed_at_ms, proposal.changes,
                        proposal.signature, (*[a for a in proposal.approvals if a.signer != person.name], approval))
    write_raw(PROPOSAL_PREFIX + proposal.digest, approved.to_bytes(), kafka.admin_credentials(PRIVATE, cfg))
    record_act("rules", "rules_approved", proposal.ruleset.version, LIVE,
               f"digest {proposal.digest[:12]}; proposed by {proposal.proposer}", int(time.time() * 1000), person.name)
    return approved


def apply_set(ruleset: RuleSet | None, role: str, person: PersonToken, event_types: Iterable[EventType],
              approvals: tuple[Signature, ...] = (), cfg: Settings | None = None) -> AppliedRuleSet:
    """Put `ruleset` in the `role` slot, signed by `person` (an engineer). A live widening needs an approval by
    someone else: refused here, as every processor would refuse it."""
    cfg = cfg or settings()
    require(person, ENGINEER)
    types = tuple(event_types)
    approvals = tuple(a for a in approvals if a.signer != person.name)
    if role == LIVE and ruleset is not None and not approvals:
        live = live_ruleset(person, types, cfg)
        before = live.ruleset if live is not None and live.ruleset is not None else RuleSet.empty()
        if G.widens(before, ruleset, types):
            raise NotAllowed(f"rule set {ruleset.version} widens what leaves: it needs an approval by a second "
                             "person (hbus rules propose, then hbus rules approve DIGEST by an approver)")
    applied = publish(ruleset, role, kafka.admin_credentials(PRIVATE, cfg), Transit(person.client(cfg)), person.name,
                      approvals)
    verdict = {LIVE: "rules_applied"}.get(role, "shadow_applied" if ruleset is not None else "shadow_withdrawn")
    record_act("rules", verdict, ruleset.version if ruleset else "", role,
               f"digest {applied.digest[:12]}; approved by {', '.join(a.signer for a in approvals) or 'nobody'}",
               applied.applied_at_ms, person.name)
    return applied


def apply_proposal(digest: str, person: PersonToken, event_types: Iterable[EventType], role: str = LIVE,
                   cfg: Settings | None = None) -> AppliedRuleSet:
    proposal = find_proposal(digest, cfg)
    return apply_set(proposal.ruleset, role, person, event_types, proposal.approvals, cfg)


def apply_rules(ruleset: RuleSet | None, role: str, cfg: Settings | None = None) -> AppliedRuleSet:
    """The tools' way (demo, drills, tests): proposed and applied by the sample engineer, approved by the sample
    approver, through the same Vault policies and signatures as people's."""
    from hybridbus.adapters.loaders import load_catalog

    cfg = cfg or settings()
    engineer = sample_login(SAMPLE_ENGINEER, cfg)
    approvals: tuple[Signature, ...] = ()
    if role == LIVE and ruleset is not None:
        approvals = (sign_approval(Transit(sample_login(SAMPLE_APPROVER, cfg).client(cfg)), ruleset.digest,
                                   SAMPLE_APPROVER),)
    return apply_set(ruleset, role, engineer, load_catalog(cfg), approvals, cfg)


# --- the emergency stop ---------------------------------------------------------------------------------------

def set_boundary(state: str, reason: str, person: PersonToken, cfg: Settings | None = None) -> BoundaryState:
    """Close or open the boundary for every egress and archiver instance, signed by `person` (an operator).
    Reopening takes a second operator: the one who closed it may not (the processors refuse it too)."""
    cfg = cfg or settings()
    require(person, OPERATOR)
    if state == G.OPEN:
        current = boundary_state(cfg)
        if current is not None and current.closed and current.by == person.name:
            raise NotAllowed(f"{person.name} closed the boundary: a second operator must open it")
    record = signed_state(Transit(person.client(cfg)), state, reason, person.name)
    write_state(record, kafka.admin_credentials(PRIVATE, cfg))
    record_act("boundary", f"boundary_{state}", "", "boundary", reason, record.at_ms, person.name)
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
