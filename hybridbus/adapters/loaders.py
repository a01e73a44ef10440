"""Loads the shipped catalog and rule set, for the pieces that need both (topology, processors, CLI).

The catalog and the rules stay pure in `routing`; this is only where their files are found.
"""
from __future__ import annotations

from collections.abc import Mapping

from hybridbus.adapters.config import Settings, settings
from hybridbus.adapters.topology import PRIVATE, PUBLIC, Topology, build_topology
from routing.catalog import Catalog, EventType
from routing.derive import derive_event_type
from routing.rules import RuleSet, load_ruleset


def load_catalog(cfg: Settings | None = None) -> Catalog:
    cfg = cfg or settings()
    return Catalog.load(cfg.schemas_dir)


def load_rules(cfg: Settings | None = None) -> RuleSet:
    cfg = cfg or settings()
    return load_ruleset(cfg.rules_dir)


def derived_event_types(catalog: Catalog, ruleset: RuleSet | None) -> list[EventType]:
    """Every derived view type a rule set makes from the catalog (every version of every source type)."""
    if ruleset is None:
        return []
    result = []
    for source in catalog:
        for rule in ruleset.candidates(source.dept, source.event):
            result.extend(derive_event_type(source, view) for view in rule.derive)
    return result


def derived_views(catalog: Catalog, ruleset: RuleSet) -> list[tuple[str, str]]:
    """`(dept, view)` of every derived public view in the rule set."""
    return sorted({(t.dept, t.event) for t in derived_event_types(catalog, ruleset)})


def topology_for(cfg: Settings | None = None, brokers: Mapping[str, int] | None = None) -> Topology:
    """The topology of `cfg`'s catalog and rules, on clusters of `brokers` brokers (default: `cfg`'s local ones)."""
    cfg = cfg or settings()
    catalog = load_catalog(cfg)
    sizes = brokers or {PRIVATE: cfg.private_brokers, PUBLIC: cfg.public_brokers}
    return build_topology(catalog, derived_views(catalog, load_rules(cfg)), sizes)
