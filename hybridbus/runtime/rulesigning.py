"""Signatures on applied rule sets: what is signed, with which Vault Transit key, and the check every processor
runs before it follows a set from `_hbus.rules` (refused sets are counted and the set in force stays).

Keys are per duty (`rules-proposer`, `rules-approver`) and never leave Vault; what a signature covers is the
statement built by `routing.governance`, so a set cannot be swapped, re-slotted or re-dated under a signature.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from hybridbus.adapters import metrics
from hybridbus.adapters.vault import RULES_APPROVER_KEY, RULES_PROPOSER_KEY
from routing import governance as G
from routing.rules import RuleSet

if TYPE_CHECKING:
    from hybridbus.runtime.rulestore import AppliedRuleSet
    from routing.catalog import EventType

log = logging.getLogger("hbus.rules")

KEY_OF = {G.PROPOSER: RULES_PROPOSER_KEY, G.APPROVER: RULES_APPROVER_KEY}


class Signer(Protocol):
    def sign(self, data: bytes, key: str) -> str: ...


class Verifier(Protocol):
    def signature_valid(self, data: bytes, signature: str, key: str) -> bool: ...


@dataclass(frozen=True)
class Signature:
    role: str  # the duty it was made in: proposer | approver
    signer: str  # the person, as their Vault token names them
    value: str = ""  # `vault:v<N>:...`

    def to_json(self) -> dict[str, str]:
        return {"role": self.role, "signer": self.signer, "signature": self.value}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> Signature:
        return cls(str(data.get("role", "")), str(data.get("signer", "")), str(data.get("signature", "")))


def sign_apply(signer: Signer, slot: str, digest: str, applied_at_ms: int, person: str) -> Signature:
    """The proposer's signature that puts the set of `digest` in `slot` at `applied_at_ms`."""
    return Signature(G.PROPOSER, person, signer.sign(G.apply_statement(slot, digest, applied_at_ms, person),
                                                     RULES_PROPOSER_KEY))


def sign_approval(signer: Signer, digest: str, person: str) -> Signature:
    """An approver's signature on the set of `digest` (a widening needs one from a different person)."""
    return Signature(G.APPROVER, person, signer.sign(G.approval_statement(digest, person), RULES_APPROVER_KEY))


class RuleCheck:
    """Verifies an applied set's signatures in Vault Transit before `component` follows it; counts what it refuses."""

    def __init__(self, verifier: Verifier, component: str, event_types: Iterable[EventType]) -> None:
        self.verifier = verifier
        self.component = component
        self.event_types = tuple(event_types)  # the catalog: whether a live set widens is judged on its types
        for reason in G.REFUSALS:  # every series exists from the start, so the alert sees the first refusal
            metrics.RULES_REFUSED.labels(component, reason)

    def use_catalog(self, catalog: Iterable[EventType]) -> None:
        """Judge a widening on the types of the catalog now in force."""
        self.event_types = tuple(catalog)

    def refusal(self, applied: AppliedRuleSet, in_force: AppliedRuleSet | None) -> str | None:
        """Why `applied` must not replace `in_force` (a `routing.governance.REFUSALS` reason), or None to follow it.

        Raises VaultUnavailable when Vault cannot answer: the caller keeps the set and asks again later.
        """
        content = applied.ruleset.digest if applied.ruleset is not None else G.WITHDRAWN
        reason = G.structural_refusal(applied.digest, content, applied.applied_at_ms,
                                      in_force.applied_at_ms if in_force is not None else None,
                                      [(s.role, s.signer) for s in applied.signatures])
        if reason is not None:
            return reason
        for sig in applied.signatures:
            statement = (G.apply_statement(applied.role, applied.digest, applied.applied_at_ms, sig.signer)
                         if sig.role == G.PROPOSER else G.approval_statement(applied.digest, sig.signer))
            if self.verifier.signature_valid(statement, sig.value, KEY_OF[sig.role]):
                continue
            other = next(r for r in KEY_OF if r != sig.role)
            made_with_other = self.verifier.signature_valid(statement, sig.value, KEY_OF[other])
            return G.WRONG_ROLE if made_with_other else G.BAD_SIGNATURE
        if applied.role == G.LIVE and applied.ruleset is not None and not any(
                s.role == G.APPROVER for s in applied.signatures):
            before = in_force.ruleset if in_force is not None and in_force.ruleset is not None else RuleSet.empty()
            if G.widens(before, applied.ruleset, self.event_types):
                return G.UNAPPROVED_WIDENING  # a pilot (shadow) moves nothing and needs no approval
        return None

    def refused(self, applied: AppliedRuleSet, reason: str) -> None:
        metrics.RULES_REFUSED.labels(self.component, reason).inc()
        log.warning("event=rules_refused component=%s role=%s version=%s digest=%s reason=%s", self.component,
                    applied.role, applied.ruleset.version if applied.ruleset else "-", applied.digest[:12], reason)


def signatures_json(signatures: Sequence[Signature]) -> list[dict[str, str]]:
    return [s.to_json() for s in signatures]
