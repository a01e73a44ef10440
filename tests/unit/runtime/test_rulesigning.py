"""Rule-set signatures and the follower processors use: only sets Vault confirms are followed; refusals counted."""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace

import pytest

from hybridbus.adapters import metrics
from hybridbus.adapters.vault import VaultUnavailable
from hybridbus.runtime.rulesigning import RuleCheck, Signature, sign_apply, sign_approval
from hybridbus.runtime.rulestore import AppliedRuleSet, Follower, decode, encode
from routing import governance as G
from routing.rules import RuleSet


class FakeTransit:
    """Stands in for Vault Transit: one secret per key name, signatures it alone can make and check."""

    def __init__(self) -> None:
        self.down = False

    def sign(self, data: bytes, key: str) -> str:
        return "vault:v1:" + hmac.new(key.encode(), data, hashlib.sha256).hexdigest()

    def signature_valid(self, data: bytes, signature: str, key: str) -> bool:
        if self.down:
            raise VaultUnavailable("down")
        return hmac.compare_digest(signature, self.sign(data, key))


TRANSIT = FakeTransit()
RULES = RuleSet("v1", ())


def signed(ruleset: RuleSet | None = RULES, at: int = 10, slot: str = "live", by: str = "li.wei",
           approvals: tuple[Signature, ...] = ()) -> AppliedRuleSet:
    digest = ruleset.digest if ruleset is not None else G.WITHDRAWN
    return AppliedRuleSet(slot, ruleset, by, at, digest, (sign_apply(TRANSIT, slot, digest, at, by), *approvals))


def refused(component: str, reason: str) -> float:
    return metrics.RULES_REFUSED.labels(component, reason)._value.get()


def test_a_set_signed_in_vault_is_followed_and_survives_the_topic_round_trip() -> None:
    record = decode(encode(signed(approvals=(sign_approval(TRANSIT, RULES.digest, "zhang.min"),))))
    follower = Follower(RuleCheck(TRANSIT, "t-ok", ()))
    assert follower.follow([record]) == {"live": record}


@pytest.mark.parametrize(("tamper", "reason"), [
    (lambda r: replace(r, signatures=()), G.UNSIGNED),
    (lambda r: replace(r, ruleset=RuleSet("v2", ())), G.DIGEST_MISMATCH),
    (lambda r: replace(r, role="shadow"), G.BAD_SIGNATURE),  # signed for live, moved to the shadow slot
    (lambda r: replace(r, applied_at_ms=99), G.BAD_SIGNATURE),  # re-dated
    (lambda r: replace(r, signatures=(replace(r.signatures[0], signer="someone.else"),)), G.BAD_SIGNATURE),
    (lambda r: replace(r, signatures=(Signature(G.PROPOSER, "li.wei", TRANSIT.sign(
        G.apply_statement("live", r.digest, r.applied_at_ms, "li.wei"), "rules-approver")),)), G.WRONG_ROLE),
])
def test_a_tampered_set_is_refused_counted_and_the_set_in_force_stays(tamper, reason: str) -> None:  # type: ignore[no-untyped-def]
    component = f"t-{reason}-{id(tamper)}"
    follower = Follower(RuleCheck(TRANSIT, component, ()))
    good = signed(at=5)
    assert follower.follow([good]) == {"live": good}
    assert follower.follow([tamper(signed(at=10))]) == {}
    assert follower.in_force["live"] is good
    assert refused(component, reason) == 1


def test_an_approval_by_the_proposer_and_a_replayed_older_record_are_refused() -> None:
    follower = Follower(RuleCheck(TRANSIT, "t-four-eyes", ()))
    old, new = signed(at=5), signed(at=10)
    own_approval = signed(at=20, approvals=(sign_approval(TRANSIT, RULES.digest, "li.wei"),))
    assert follower.follow([old, new]) == {"live": new}
    assert follower.follow([old, own_approval]) == {}
    assert refused("t-four-eyes", G.STALE) == 1 and refused("t-four-eyes", G.SAME_PERSON) == 1


def test_at_start_only_a_refused_head_is_counted_and_the_last_good_set_is_followed() -> None:
    follower = Follower(RuleCheck(TRANSIT, "t-start", ()))
    good = signed(at=10)
    forged = replace(signed(at=5), signatures=())
    assert follower.follow([forged, good, forged, forged], count_refusals=False) == {"live": good}
    assert refused("t-start", G.UNSIGNED) == 1


def test_while_vault_is_away_nothing_switches_and_the_set_is_checked_once_it_is_back() -> None:
    transit = FakeTransit()
    follower = Follower(RuleCheck(transit, "t-vault", ()))
    record = signed()
    transit.down = True
    assert follower.follow([record]) == {}
    transit.down = False
    assert follower.follow([]) == {"live": record}


def test_without_a_check_every_record_is_shown_as_it_is() -> None:
    forged = replace(signed(), signatures=())
    assert Follower(None).follow([forged]) == {"live": forged}


def test_a_live_widening_needs_an_approver_a_narrowing_or_a_pilot_does_not() -> None:
    from hybridbus.adapters.loaders import load_catalog, load_rules

    shipped, catalog = load_rules(), list(load_catalog())
    follower = Follower(RuleCheck(TRANSIT, "t-widen", catalog))
    alone = signed(shipped, at=10)
    assert follower.follow([alone]) == {}  # from nothing to the shipped set: a widening, proposer alone
    assert refused("t-widen", G.UNAPPROVED_WIDENING) == 1
    approved = signed(shipped, at=11, approvals=(sign_approval(TRANSIT, shipped.digest, "zhang.min"),))
    assert follower.follow([approved]) == {"live": approved}
    narrower = RuleSet("v-narrow", shipped.rules[1:])
    assert G.changes(shipped, narrower, catalog) and not G.widens(shipped, narrower, catalog)
    assert follower.follow([signed(narrower, at=12)])["live"].ruleset == narrower
    pilot = signed(shipped, at=13, slot="shadow")
    assert follower.follow([pilot]) == {"shadow": pilot}
