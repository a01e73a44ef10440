"""The routing engine: one event and a rule set in, the list of decisions out (destination, topic, payload).

It re-checks its own output: a decision to leave the private cloud is made only for a payload whose recomputed
grade is `public`, so even a rule set that bypassed the validator cannot send out anything else.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from routing.boundary import export_refusal
from routing.catalog import EventType, effective_grade
from routing.derive import derive_event_type
from routing.grades import Grade
from routing.headers import is_forged_claim
from routing.rules import RuleSet
from routing.transforms import Pseudonymiser, TransformError, apply

GRADED = "graded"


@dataclass(frozen=True)
class Decision:
    destination: str  # graded | public_cloud | archive
    topic: str  # the private topic the record is written to (egress and archiver read it from there)
    grade: Grade
    payload: Mapping[str, Any] = field(hash=False, compare=False)
    event_type: EventType = field(hash=False, compare=False)
    rule_id: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class Blocked:
    rule_id: str
    destination: str
    reason: str


@dataclass(frozen=True)
class RoutingResult:
    grade: Grade
    forged: bool
    ruleset_version: str
    decisions: tuple[Decision, ...]
    blocked: tuple[Blocked, ...] = ()
    rule_id: str | None = None


def route(
    event_type: EventType,
    payload: Mapping[str, Any],
    ruleset: RuleSet,
    *,
    claimed_grade: str | None = None,
    pseudonymise: Pseudonymiser | None = None,
) -> RoutingResult:
    """Where `payload` of `event_type` goes under `ruleset` (first matching rule decides)."""
    grade = effective_grade(event_type, payload)
    forged = is_forged_claim(claimed_grade, grade)
    rule = ruleset.first_match(event_type.dept, event_type.event, grade)
    rule_id = rule.id if rule else None
    graded_reason = f"graded {grade.id} by schema" + (f"; rule {rule_id}" if rule else "; no rule: private only")
    decisions = [Decision(GRADED, event_type.graded_topic(grade), grade, payload, event_type, rule_id, graded_reason)]
    blocked: list[Blocked] = []
    if rule is not None:
        refusal = export_refusal(event_type, grade)
        for dest in rule.to:
            if refusal is None:
                decisions.append(Decision(dest, event_type.graded_topic(grade), grade, payload, event_type, rule.id,
                                          f"rule {rule.id}"))
            else:
                blocked.append(Blocked(rule.id, dest, refusal))
        for view in rule.derive:
            if event_type.record_grade > Grade.SENSITIVE and not rule.approval:
                # The validator's approval requirement, re-checked here: routers load rule sets from
                # `_hbus.rules` without re-validating them, and a restricted record is not made public by
                # dropping its restricted fields alone (the event itself is health or ID data).
                blocked.extend(Blocked(rule.id, d, f"view {view.name}: {event_type.key} is "
                                                   f"{event_type.record_grade.id}; a view of it needs an approval")
                               for d in (GRADED, *view.to))
                continue
            view_type = derive_event_type(event_type, view)
            try:
                out = {name: apply(t, payload.get(name), pseudonymise) for name, t in view.fields
                       if t.kind != "drop" and name in {f.name for f in view_type.fields}}
            except TransformError as exc:
                blocked.extend(Blocked(rule.id, d, f"view {view.name}: {exc}") for d in (GRADED, *view.to))
                continue
            view_grade = effective_grade(view_type, out)
            if export_refusal(view_type, view_grade) is not None:
                blocked.extend(Blocked(rule.id, d, f"view {view.name} would be {max(view_grade, view_type.schema_grade).id}")
                               for d in (GRADED, *view.to))
                continue
            topic = view_type.graded_topic(Grade.PUBLIC)
            reason = f"rule {rule.id} view {view.name}"
            decisions.append(Decision(GRADED, topic, Grade.PUBLIC, out, view_type, rule.id, reason))
            decisions.extend(Decision(d, topic, Grade.PUBLIC, out, view_type, rule.id, reason) for d in view.to)
    return RoutingResult(grade, forged, ruleset.version, tuple(decisions), tuple(blocked), rule_id)
