"""Loads the shipped catalog and rule set once, for the pieces that need both (topology, processors).

The catalog and the rules stay pure in `routing`; this is only where their files are found.
"""
from __future__ import annotations

from hybridbus.config import Settings, settings
from hybridbus.topology import Topology, build_topology
from routing.catalog import Catalog


def load_catalog(cfg: Settings | None = None) -> Catalog:
    cfg = cfg or settings()
    return Catalog.load(cfg.schemas_dir)


def derived_views(cfg: Settings | None = None) -> list[tuple[str, str]]:
    """`(dept, view)` of every derived public view in the shipped rules."""
    cfg = cfg or settings()
    try:
        from routing.rules import load_ruleset
    except ImportError:  # the rules model is optional for a bare stack
        return []
    ruleset = load_ruleset(cfg.rules_dir)
    views = []
    for rule in ruleset.rules:
        for view in getattr(rule, "derive", ()) or ():
            views.append((rule.match.dept, view.name))
    return views


def topology_for(cfg: Settings | None = None) -> Topology:
    cfg = cfg or settings()
    return build_topology(load_catalog(cfg), derived_views(cfg))
