"""The rule sets in force, kept on the compacted `_hbus.rules` topic: one record per role (live, shadow).

`publish` is what `hbus rules apply` does (signed in Vault Transit); `RuleFeed` is how processors follow it
without a restart, verifying the signatures first.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hybridbus.adapters.secrets import KafkaCredentials
from hybridbus.adapters.topology import RULES_TOPIC
from hybridbus.adapters.vault import VaultUnavailable
from hybridbus.runtime.compacted import CompactedReader, write_record
from hybridbus.runtime.rulesigning import RuleCheck, Signature, Signer, sign_apply, signatures_json
from routing.exceptions import HybridbusError
from routing.governance import LIVE, SHADOW, WITHDRAWN
from routing.rules import RuleSet

log = logging.getLogger("hbus.rules")

SLOTS = (LIVE, SHADOW)
PROPOSAL_PREFIX = "proposal/"  # `proposal/<digest>`: a set proposed for review, with its approvals


@dataclass(frozen=True)
class AppliedRuleSet:
    role: str
    ruleset: RuleSet | None  # None: the role was withdrawn (e.g. a shadow pilot ended)
    applied_by: str
    applied_at_ms: int
    digest: str = ""  # the digest the signatures cover; processors check it is the carried set's
    signatures: tuple[Signature, ...] = ()


def publish(ruleset: RuleSet | None, role: str, creds: KafkaCredentials, signer: Signer, applied_by: str,
            approvals: Sequence[Signature] = ()) -> AppliedRuleSet:
    """Sign (as `applied_by`, proposer) and write `ruleset` as the `role` set; processors verify the signatures
    and switch to it at their next batch boundary. `approvals` are approvers' signatures already made."""
    digest = ruleset.digest if ruleset is not None else WITHDRAWN
    applied_at_ms = int(time.time() * 1000)
    signatures = (sign_apply(signer, role, digest, applied_at_ms, applied_by), *approvals)
    applied = AppliedRuleSet(role, ruleset, applied_by, applied_at_ms, digest, signatures)
    write(applied, creds)
    return applied


def write(applied: AppliedRuleSet, creds: KafkaCredentials) -> None:
    """Put `applied` on `_hbus.rules` as it is (signed or not: processors decide whether to follow it)."""
    # Refused or not acknowledged within 30 s: DeliveryError naming the topic and the broker's reason.
    write_raw(applied.role, encode(applied), creds)


def encode(applied: AppliedRuleSet) -> bytes:
    body: dict[str, Any] = {
        "role": applied.role,
        "applied_by": applied.applied_by,
        "applied_at_ms": applied.applied_at_ms,
        "digest": applied.digest,
        "signatures": signatures_json(applied.signatures),
        "ruleset": json.loads(applied.ruleset.to_json()) if applied.ruleset is not None else None,
    }
    return json.dumps(body).encode()


def decode(value: bytes) -> AppliedRuleSet:
    body = json.loads(value)
    raw = body.get("ruleset")
    ruleset = RuleSet.from_json(json.dumps(raw)) if raw is not None else None
    return AppliedRuleSet(body["role"], ruleset, body.get("applied_by", "?"), int(body.get("applied_at_ms", 0)),
                          str(body.get("digest", "")),
                          tuple(Signature.from_json(s) for s in body.get("signatures") or () if isinstance(s, dict)))


class Follower:
    """Which records of `_hbus.rules` a processor follows: per role, the newest that passes `check` (signatures
    verified in Vault), in topic order; a refused one is counted and the set in force stays. Without a check
    (tools that only show what is on the topic) every record is followed as it is.
    """

    def __init__(self, check: RuleCheck | None) -> None:
        self._check = check
        self.in_force: dict[str, AppliedRuleSet] = {}
        self._pending: dict[str, list[AppliedRuleSet]] = {}  # records Vault could not verify yet, in order

    def follow(self, records: Sequence[AppliedRuleSet], count_refusals: bool = True) -> dict[str, AppliedRuleSet]:
        """The records to switch to now, per role, after what waited for Vault.

        With `count_refusals` False (reading the topic's history at start) only a refused head is counted:
        refusals older than the set in force were counted when they arrived.
        """
        if self._check is None:
            followed = {r.role: r for r in records}
            self.in_force.update(followed)
            return followed
        queued, self._pending = self._pending, {}
        for record in records:
            queued.setdefault(record.role, []).append(record)
        accepted: dict[str, AppliedRuleSet] = {}
        for role, candidates in queued.items():
            refused: list[tuple[AppliedRuleSet, str]] = []
            for index, record in enumerate(candidates):
                try:
                    reason = self._check.refusal(record, self.in_force.get(role))
                except VaultUnavailable:
                    self._pending[role] = candidates[index:]  # asked again at the next poll; nothing switches
                    break
                if reason is None:
                    self.in_force[role] = accepted[role] = record
                    refused = []
                else:
                    refused.append((record, reason))
            for record, reason in (refused if count_refusals else refused[-1:]):
                self._check.refused(record, reason)
        return accepted


class RuleFeed:
    """Follows `_hbus.rules` from its beginning; `poll()` returns the newest followed record per role since the
    last call. Every processor passes a `check`: it follows only sets whose signatures Vault confirms."""

    def __init__(self, creds: KafkaCredentials, check: RuleCheck | None = None) -> None:
        self._reader = CompactedReader.connect(creds, RULES_TOPIC, "hbus-rulefeed")
        self._follower = Follower(check)

    def load(self, timeout: float = 60.0) -> dict[str, AppliedRuleSet]:
        """Everything on the topic now (read to its end, waiting for a moving leader within `timeout`)."""
        records = [_decoded(msg.value()) for msg in self._reader.load(timeout)
                   if msg.value() is not None and _slot(msg.key())]
        return self._follower.follow([r for r in records if r is not None], count_refusals=False)

    def poll(self) -> dict[str, AppliedRuleSet]:
        records = [_decoded(msg.value()) for msg in self._reader.poll()
                   if msg.value() is not None and _slot(msg.key())]
        return self._follower.follow([r for r in records if r is not None])

    @property
    def in_force(self) -> dict[str, AppliedRuleSet]:
        """The set followed per role so far (after `load`: the sets the processors are in force with)."""
        return dict(self._follower.in_force)

    def close(self) -> None:
        self._reader.close()


def _slot(key: bytes | None) -> bool:
    """Records under a slot's key are rule sets to follow; proposals (and anything else) are not."""
    return key is not None and key.decode(errors="replace") in SLOTS


def latest_records(creds: KafkaCredentials, prefix: str, timeout: float = 10.0,
                   topic: str = RULES_TOPIC) -> dict[str, bytes]:
    """The newest value of every key of a compacted one-partition topic (`_hbus.rules`, `_hbus.control`)
    starting with `prefix`, as stored (read to the end)."""
    reader = CompactedReader.connect(creds, topic, "hbus-rulefeed")
    try:
        found: dict[str, bytes] = {}
        for msg in reader.load(timeout):
            key = (msg.key() or b"").decode(errors="replace")
            if key.startswith(prefix) and msg.value() is not None:
                found[key] = msg.value()
        return found
    finally:
        reader.close()


def write_raw(key: str, value: bytes, creds: KafkaCredentials, topic: str = RULES_TOPIC) -> None:
    write_record(creds, topic, key.encode(), value, "rules")


def _decoded(value: bytes) -> AppliedRuleSet | None:
    """A record that is not even a rule-set record is refused like an unsigned one (and never followed)."""
    try:
        return decode(value)
    except (ValueError, KeyError, TypeError, HybridbusError):
        log.warning("event=rules_refused reason=undecodable")
        return None
