"""Rule sets put in force by the bus's own tools (demo, drills, tests) on the local stack, signed in Vault Transit
with the stack's root login; people apply theirs through `hbus rules apply` with their own login.
"""
from __future__ import annotations

from hybridbus.adapters import kafka
from hybridbus.adapters.config import Settings, settings
from hybridbus.adapters.topology import PRIVATE
from hybridbus.adapters.vault import Transit, root_client
from hybridbus.runtime.rulestore import AppliedRuleSet, publish
from routing.rules import RuleSet


def stack_signer(cfg: Settings | None = None) -> Transit:
    """Transit with the local stack's root token (state dir): it may sign in every duty. Local stack only."""
    return Transit(root_client(cfg or settings()))


def apply_rules(ruleset: RuleSet | None, role: str, applied_by: str, cfg: Settings | None = None) -> AppliedRuleSet:
    """Sign and publish `ruleset` as the `role` set with the stack's own login (admin Kafka, root Vault)."""
    cfg = cfg or settings()
    return publish(ruleset, role, kafka.admin_credentials(PRIVATE, cfg), stack_signer(cfg), applied_by)
