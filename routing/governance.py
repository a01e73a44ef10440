"""Four eyes on the rules, as policy: what a rule-set signature covers, which signatures a set must carry, and
why one is refused. Pure: no Vault, no Kafka; the runtime verifies the signatures themselves in Vault Transit.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from routing.rules import RuleSet, View

if TYPE_CHECKING:
    from routing.catalog import EventType

LIVE = "live"  # the slots of `_hbus.rules`: the set in force, and a pilot evaluated beside it
SHADOW = "shadow"
PROPOSER = "proposer"  # the platform engineer who proposed (and applies) the set
APPROVER = "approver"  # a second person, required when the change widens what leaves
ROLES = (PROPOSER, APPROVER)

WITHDRAWN = "withdrawn"  # the digest a withdrawal (no set in the slot) is signed under

# Why a processor refuses to follow a set (the `reason` label of hbus_rules_refused_total).
UNSIGNED = "unsigned"  # no proposer signature at all
DIGEST_MISMATCH = "digest_mismatch"  # the signed digest is not the digest of the set carried
WRONG_ROLE = "wrong_role"  # a signature made with another duty's key, or a duty the bus does not know
BAD_SIGNATURE = "bad_signature"  # a signature Vault does not confirm
STALE = "stale"  # older than the set in force: a replay of an earlier, validly signed record
SAME_PERSON = "same_person"  # the approver is the proposer
UNAPPROVED_WIDENING = "unapproved_widening"  # a widening without an approver's signature
REFUSALS = (UNSIGNED, DIGEST_MISMATCH, WRONG_ROLE, BAD_SIGNATURE, STALE, SAME_PERSON, UNAPPROVED_WIDENING)


def _canonical(body: dict[str, object]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def apply_statement(slot: str, digest: str, applied_at_ms: int, signer: str) -> bytes:
    """What the proposer signs to put a set in force: the slot (live/shadow) and time are covered, so a signed set
    cannot be moved from shadow to live or replayed later as new."""
    return _canonical({"act": "apply", "slot": slot, "digest": digest, "applied_at_ms": applied_at_ms,
                       "signer": signer})


def approval_statement(digest: str, signer: str) -> bytes:
    """What an approver signs: this exact set, by digest, approved by this person."""
    return _canonical({"act": "approve", "digest": digest, "signer": signer})


def proposal_statement(digest: str, signer: str) -> bytes:
    """What an engineer signs to propose a set for review (before anyone approves it)."""
    return _canonical({"act": "propose", "digest": digest, "signer": signer})


def structural_refusal(claimed_digest: str, content_digest: str, applied_at_ms: int, in_force_at_ms: int | None,
                       signatures: Sequence[tuple[str, str]]) -> str | None:
    """The refusal that needs no key: `signatures` are `(role, signer)` pairs as the record states them.

    The cryptographic check (each signature valid under its role's key) comes after this one passes.
    """
    if not any(role == PROPOSER for role, _ in signatures):
        return UNSIGNED
    if claimed_digest != content_digest:
        return DIGEST_MISMATCH
    if any(role not in ROLES for role, _ in signatures):
        return WRONG_ROLE
    if in_force_at_ms is not None and applied_at_ms <= in_force_at_ms:
        return STALE
    proposers = {signer for role, signer in signatures if role == PROPOSER}
    if any(role == APPROVER and signer in proposers for role, signer in signatures):
        return SAME_PERSON
    return None


# The emergency stop: the boundary is open (egress and the archiver send) or closed (nothing leaves).
OPEN = "open"
CLOSED = "closed"


def boundary_statement(state: str, reason: str, at_ms: int, signer: str) -> bytes:
    """What an operator signs to set the boundary's state; a reopening is followed only with a valid one."""
    return _canonical({"act": "boundary", "state": state, "reason": reason, "at_ms": at_ms, "signer": signer})


def boundary_follows(closed_at_ms: int | None, closed_by: str, state: str, at_ms: int, signer: str,
                     signature_valid: bool) -> bool:
    """Whether a boundary record is followed. Fail closed: a close is always followed (an emergency stop must work
    even when Vault does not answer, and stopping is the safe side); a reopening only when validly signed, newer
    than the close in force, and by a second person (not the one who closed it)."""
    if state == CLOSED:
        return True
    if state != OPEN or not signature_valid:
        return False
    return closed_at_ms is None or (at_ms > closed_at_ms and signer != closed_by)


# --- what a change of rule set moves, and whether it widens what leaves ---------------------------------------

@dataclass(frozen=True)
class Change:
    """What replacing one rule set by another does to one event type."""

    event_type: str  # "<dept>.<event> v<N>"
    added: tuple[str, ...]  # "<destination>:<topic>" it can newly reach
    removed: tuple[str, ...]
    views_changed: tuple[str, ...] = ()  # derived views kept by name whose transforms changed

    @property
    def widens(self) -> bool:
        """Anything newly toward the public side (every destination a rule adds is public_cloud or archive, or a
        derived view's public topic), or a view reshaped: it needs a second person's approval."""
        return bool(self.added or self.views_changed)


def reach(ruleset: RuleSet, event_type: EventType) -> set[str]:
    """Destinations an event of this type can reach, at every grade it can take."""
    found: set[str] = set()
    for grade in {event_type.record_grade, event_type.schema_grade}:
        rule = ruleset.first_match(event_type.dept, event_type.event, grade)
        if rule is None:
            continue
        found.update(f"{d}:{event_type.graded_topic(grade)}" for d in rule.to)
        found.update(f"{d}:public.{event_type.dept}.{v.name}" for v in rule.derive for d in ("graded", *v.to))
    return found


def _views(ruleset: RuleSet, event_type: EventType) -> dict[str, View]:
    views: dict[str, View] = {}
    for grade in {event_type.record_grade, event_type.schema_grade}:
        rule = ruleset.first_match(event_type.dept, event_type.event, grade)
        views.update({v.name: v for v in (rule.derive if rule is not None else ())})
    return views


def changes(old: RuleSet, new: RuleSet, event_types: Iterable[EventType]) -> list[Change]:
    """Per event type of the catalog, what moves if `new` replaces `old` (types where nothing moves left out)."""
    found = []
    for event_type in event_types:
        before, after = reach(old, event_type), reach(new, event_type)
        old_views, new_views = _views(old, event_type), _views(new, event_type)
        reshaped = tuple(sorted(n for n in old_views.keys() & new_views.keys() if old_views[n].fields != new_views[n].fields))
        if before != after or reshaped:
            found.append(Change(f"{event_type.key} v{event_type.version}", tuple(sorted(after - before)),
                                tuple(sorted(before - after)), reshaped))
    return found


def widens(old: RuleSet, new: RuleSet, event_types: Iterable[EventType]) -> bool:
    """Whether `new` needs an approver besides its proposer to replace `old` (a narrowing does not)."""
    return any(change.widens for change in changes(old, new, event_types))


# --- quarantine review: a record the boundary guard kept back goes out only on its second look -----------------

# Why a quarantined record is not released (the reason of a `quarantine_release_refused` act).
STILL_NOT_PUBLIC = "still_not_public"  # the guard, re-run under today's catalog and rules, still refuses it
NO_CHANGE_SINCE = "no_change_since"  # neither the catalog nor the rules changed since it was quarantined
ALREADY_RELEASED = "already_released"
NOT_PROPOSED = "not_proposed"  # an approval with no release proposed by someone else first
# A person without the step's duty is refused as WRONG_ROLE (operators propose, approvers approve).
RELEASE_REFUSALS = (STILL_NOT_PUBLIC, NO_CHANGE_SINCE, ALREADY_RELEASED, NOT_PROPOSED, SAME_PERSON, BAD_SIGNATURE,
                    WRONG_ROLE)


def release_statement(record_digest: str, event_id: str, proposed_at_ms: int, signer: str) -> bytes:
    """What an operator signs to put a quarantined record up for release: these exact bytes, by digest."""
    return _canonical({"act": "quarantine-release", "digest": record_digest, "event_id": event_id,
                       "proposed_at_ms": proposed_at_ms, "signer": signer})


def release_approval_statement(record_digest: str, event_id: str, signer: str) -> bytes:
    """What an approver signs to release it (the record's digest covers its topic, key, value and headers)."""
    return _canonical({"act": "quarantine-approve", "digest": record_digest, "event_id": event_id, "signer": signer})


def release_refusal(public_now: bool, quarantined_at_ms: int, catalogs_then: Sequence[str], catalog_now: str,
                    rules_applied_at_ms: int | None) -> str | None:
    """Whether a quarantined record may go back through the guard, or why not.

    `public_now`: the guard, re-run under the current catalog and rules, grades it `public` (on its type's public
    topic). `catalogs_then`: the catalog digests the guards stamped on its quarantined copies ("" when unknown);
    the catalog counts as changed only when every copy was judged under another catalog than today's. The rules
    count as changed when the live set was applied after the last copy was quarantined. Fail closed: no stamp
    and no newer rules, no release.
    """
    if not public_now:
        return STILL_NOT_PUBLIC
    catalog_changed = bool(catalogs_then) and all(then and then != catalog_now for then in catalogs_then)
    rules_changed = rules_applied_at_ms is not None and rules_applied_at_ms > quarantined_at_ms
    if not (catalog_changed or rules_changed):
        return NO_CHANGE_SINCE
    return None


def approval_refusal(proposer: str, approver: str, proposal_signature_valid: bool, released: bool) -> str | None:
    """Why `approver` may not release a record `proposer` put up (None: they may). Two people, the first one's
    signature confirmed by Vault, and once only."""
    if released:
        return ALREADY_RELEASED
    if not proposer:
        return NOT_PROPOSED
    if not proposal_signature_valid:
        return BAD_SIGNATURE
    if proposer == approver:
        return SAME_PERSON
    return None
