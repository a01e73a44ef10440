"""The rules validator: proves, from the schemas, that no rule can send a non-public event out, and reports
conflicting, shadowed and uncovered rules. A rule set with any error is refused.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from routing.catalog import Catalog, EventType
from routing.derive import derive_event_type, unnamed_fields
from routing.grades import Grade
from routing.rules import Rule, RuleSet, View
from routing.transforms import LOWERABLE


@dataclass(frozen=True)
class Finding:
    rule_id: str
    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}: " if self.path else ""
        return f"{where}{self.rule_id}: {self.reason}" if self.rule_id else f"{where}{self.reason}"


@dataclass
class Report:
    errors: list[Finding] = field(default_factory=list)
    notes: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, rule: Rule | None, reason: str, line: int | None = None) -> None:
        self.errors.append(Finding(rule.id if rule else "", rule.path if rule else "", line or (rule.line if rule else 0), reason))

    def note(self, rule: Rule | None, reason: str) -> None:
        self.notes.append(Finding(rule.id if rule else "", rule.path if rule else "", rule.line if rule else 0, reason))


def validate(ruleset: RuleSet, catalog: Catalog) -> Report:
    report = Report()
    for rule in ruleset.rules:
        matched = _check_match(rule, catalog, report)
        for event_type in matched:
            _check_export(rule, event_type, report)
            for view in rule.derive:
                _check_view(rule, view, event_type, catalog, report)
    _check_order(ruleset, catalog, report)
    _check_view_names(ruleset, catalog, report)
    for event_type in catalog.latest():
        if not any(r.match.matches(event_type.dept, event_type.event, g) for r in ruleset.rules for g in Grade):
            report.note(None, f"event type {event_type.key} has no rule: it goes to its graded private topic only")
    return report


def matched_types(rule: Rule, catalog: Catalog) -> list[EventType]:
    """Every catalog type (every version) the rule can match."""
    return [et for et in catalog if rule.match.dept in ("*", et.dept) and rule.match.event in ("*", et.event)
            and (rule.match.grade is None or et.record_grade <= rule.match.grade)]


def _check_match(rule: Rule, catalog: Catalog, report: Report) -> list[EventType]:
    if rule.match.dept != "*" and rule.match.dept not in catalog.departments:
        report.error(rule, f"unknown department {rule.match.dept!r}")
        return []
    if rule.match.event != "*" and not any(et.event == rule.match.event and rule.match.dept in ("*", et.dept) for et in catalog):
        report.error(rule, f"no event type {rule.match.dept}.{rule.match.event} in the catalog")
        return []
    matched = matched_types(rule, catalog)
    if not matched:
        report.error(rule, "matches no event type of the catalog")
    return matched


def _check_export(rule: Rule, event_type: EventType, report: Report) -> None:
    if not rule.to:
        return
    # The highest grade an event this rule matches can have: the schema's, capped by the rule's grade. A rule capped
    # at public may export a type with optional higher-grade fields: it matches only the events that leave them empty.
    reach = event_type.schema_grade if rule.match.grade is None else min(event_type.schema_grade, rule.match.grade)
    if reach > Grade.PUBLIC:
        report.error(rule, f"could send {event_type.key} v{event_type.version} ({event_type.schema_grade.id} by its schema) "
                           f"to {', '.join(rule.to)}: only public data may leave; derive a public view instead")


def _check_view(rule: Rule, view: View, source: EventType, catalog: Catalog, report: Report) -> None:
    known = set(source.field_names())
    for name, _ in view.fields:
        if name not in known:
            report.error(rule, f"view {view.name!r} names field {name!r}, which {source.key} v{source.version} does not have",
                         view.line)
    for name in unnamed_fields(source, view):
        report.error(rule, f"view {view.name!r} does not say what to do with field {name!r} of {source.key} "
                           f"v{source.version} (keep, drop, mask, generalise or pseudonymise)", view.line)
    for name, transform in view.fields:
        if name not in known or transform.kind in ("drop",):
            continue
        spec = source.field(name)
        grade = spec.grade
        # An encrypted field reaches the router as its ciphertext envelope only: masking or generalising it would
        # publish ciphertext, and keeping it carries its grade. Encryption never lowers a grade.
        sealed = " (it is encrypted at the source: the bus never sees its value)" if spec.encrypted else ""
        if grade not in LOWERABLE:
            report.error(rule, f"view {view.name!r}: field {name!r} is {grade.id}; {grade.id} data may only be dropped"
                               + sealed, view.line)
        elif spec.encrypted:
            report.error(rule, f"view {view.name!r}: field {name!r} is encrypted at the source: the bus never sees its "
                               f"value, so it may only be dropped, not {transform.kind}", view.line)
    if source.record_grade > Grade.SENSITIVE and not rule.approval:
        report.error(rule, f"view {view.name!r} of {source.key} ({source.record_grade.id}): publishing from "
                           f"{source.record_grade.id} data needs an aggregate or an explicit reviewed `approval`", view.line)
    derived = derive_event_type(source, view)
    if derived.schema_grade is not Grade.PUBLIC:
        # Even with no `to`, a view is written to its public graded topic: the engine would block it on every event.
        report.error(rule, f"view {view.name!r} would be {derived.schema_grade.id}, not public"
                           + (f", yet goes to {', '.join(view.to)}" if view.to else ""), view.line)


def _check_order(ruleset: RuleSet, catalog: Catalog, report: Report) -> None:
    """First match decides: a later rule whose every event an earlier rule takes is shadowed (never used);
    two rules with the same match but different outcomes also conflict."""
    rules = list(ruleset.rules)
    for i, later in enumerate(rules):
        for earlier in rules[:i]:
            if earlier.match == later.match and (earlier.to, earlier.derive) != (later.to, later.derive):
                report.error(later, f"conflicts with rule {earlier.id!r} ({earlier.where}): same match, different "
                                    "destinations; the earlier one always wins")
                break
            if earlier.match.covers(later.match):
                report.error(later, f"is shadowed by rule {earlier.id!r} ({earlier.where}), which matches every event "
                                    "it does and comes first")
                break


def _check_view_names(ruleset: RuleSet, catalog: Catalog, report: Report) -> None:
    seen: dict[tuple[str, str], Rule] = {}
    for rule in ruleset.rules:
        for view in rule.derive:
            for source in matched_types(rule, catalog):
                key = (source.dept, view.name)
                if f"{source.dept}.{view.name}" in catalog:
                    report.error(rule, f"view name {view.name!r} is already an event type of {source.dept}", view.line)
                owner = seen.setdefault(key, rule)
                if owner is not rule:
                    report.error(rule, f"view {source.dept}.{view.name} is also derived by rule {owner.id!r}", view.line)
