"""Loads the shipped catalog and rule set, for the pieces that need both (topology, processors, CLI).

The catalog and the rules stay pure in `routing`; this is only where their files are found.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from hybridbus.adapters.config import Settings, settings
from hybridbus.adapters.topology import PRIVATE, PUBLIC, Topology, build_topology
from routing.catalog import Catalog, Department, EventType, departments_from_source
from routing.derive import derive_event_type
from routing.exceptions import SchemaError
from routing.grades import Grade
from routing.rules import RULESET_FILE, Rule, RuleSet, rules_from_source, ruleset_from_sources
from routing.sources import SourceFile


def read_source(path: Path | str) -> SourceFile:
    """A file's bytes for `routing` (None when it does not exist)."""
    try:
        return SourceFile(str(path), Path(path).read_bytes())
    except (FileNotFoundError, IsADirectoryError):
        return SourceFile(str(path), None)


def check_catalog_dir(schemas_dir: Path | str, departments_file: Path | str | None = None
                      ) -> tuple[Catalog | None, list[SchemaError], list[str]]:
    """Every problem of the catalog in `schemas_dir` (`<dept>/<event>.v<N>.avsc`, departments beside it)."""
    schemas_dir = Path(schemas_dir)
    departments = read_source(departments_file or schemas_dir.parent / "departments.yaml")
    files = [read_source(p) for p in sorted(schemas_dir.glob("*/*.avsc"))]
    return Catalog.check(files, departments, str(schemas_dir))


def load_catalog_dir(schemas_dir: Path | str, departments_file: Path | str | None = None) -> Catalog:
    """The catalog of `schemas_dir`; the first SchemaError when it has any."""
    catalog, errors, _ = check_catalog_dir(schemas_dir, departments_file)
    if errors:
        raise errors[0]
    assert catalog is not None
    return catalog


def load_departments_file(path: Path | str) -> dict[str, Department]:
    return departments_from_source(read_source(path))


def load_ruleset_dir(rules_dir: Path | str) -> RuleSet:
    """The rule set of a directory: `ruleset.yaml` (version) and every other `*.yaml` (rules), by file name."""
    rules_dir = Path(rules_dir)
    files = [read_source(p) for p in sorted(rules_dir.glob("*.yaml")) if p.name != RULESET_FILE]
    return ruleset_from_sources(read_source(rules_dir / RULESET_FILE), files, str(rules_dir))


def load_rules_file(path: Path | str) -> list[Rule]:
    return rules_from_source(read_source(path))


def load_catalog(cfg: Settings | None = None) -> Catalog:
    cfg = cfg or settings()
    return load_catalog_dir(cfg.schemas_dir)


def load_rules(cfg: Settings | None = None) -> RuleSet:
    cfg = cfg or settings()
    return load_ruleset_dir(cfg.rules_dir)


def derived_event_types(catalog: Catalog, ruleset: RuleSet | None) -> list[EventType]:
    """Every derived view type a rule set makes from the catalog (every version of every source type)."""
    if ruleset is None:
        return []
    result = []
    for source in catalog:
        for rule in ruleset.candidates(source.dept, source.event):
            result.extend(derive_event_type(source, view) for view in rule.derive)
    return result


def public_event_types(catalog: Catalog, derived: Iterable[EventType]) -> list[EventType]:
    """Every type whose records can reach the public side: each version of each type graded `public` as a record,
    and the `derived` view types (from `derived_event_types`, or the ones a guard has learnt)."""
    return [t for t in catalog if t.record_grade is Grade.PUBLIC] + list(derived)


def derived_views(catalog: Catalog, ruleset: RuleSet) -> list[tuple[str, str]]:
    """`(dept, view)` of every derived public view in the rule set."""
    return sorted({(t.dept, t.event) for t in derived_event_types(catalog, ruleset)})


def topology_for(cfg: Settings | None = None, brokers: Mapping[str, int] | None = None) -> Topology:
    """The topology of `cfg`'s catalog and rules, on clusters of `brokers` brokers (default: `cfg`'s local ones)."""
    cfg = cfg or settings()
    catalog = load_catalog(cfg)
    sizes = brokers or {PRIVATE: cfg.private_brokers, PUBLIC: cfg.public_brokers}
    return build_topology(catalog, derived_views(catalog, load_rules(cfg)), sizes)
