"""A proposal as stored on `_hbus.rules`: it round-trips with its diff and approvals, and keeps the set's digest."""
from __future__ import annotations

from hybridbus.adapters.loaders import load_rules
from hybridbus.ops.governance import Proposal
from hybridbus.runtime.rulesigning import Signature


def test_a_proposal_round_trips_with_its_approvals() -> None:
    ruleset = load_rules()
    proposal = Proposal(ruleset, "li.wei", 123, ({"event_type": "x v1", "added": ["archive:t"], "removed": [],
                                                  "views_changed": [], "widens": True},), "vault:v1:p",
                        (Signature("approver", "zhang.min", "vault:v1:a"),))
    back = Proposal.from_bytes(proposal.to_bytes())
    assert back == proposal and back.digest == ruleset.digest
