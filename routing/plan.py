"""The routing engine compiled: what `routing.engine.route` decides from event type, version and rule set is
decided once per plan, and per event only the grade, the forgery check and the view transforms run.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from routing.boundary import export_refusal
from routing.catalog import EventType
from routing.derive import derive_event_type
from routing.engine import GRADED, Blocked, Decision, RoutingResult
from routing.grades import HIGHEST, Grade
from routing.headers import is_forged_claim
from routing.rules import Rule, RuleSet, Transform, View
from routing.transforms import CompiledTransform, Pseudonymiser, TransformError, compile_transform, pseudonym_input

SOURCE = -1  # the slot of a decision that carries the event's own payload (the graded copy, direct destinations)

ShadowKey = tuple[str, int, Grade]  # (event type key, version, grade)
ShadowDiff = Mapping[ShadowKey, tuple[tuple[str, str], ...]]


@dataclass(frozen=True, slots=True, eq=False)
class PlannedDecision:
    """One decision as `route()` makes it, without its payload: `slot` says which payload it carries."""

    destination: str
    topic: str
    grade: Grade
    grade_id: str
    event_type: EventType  # for SOURCE decisions, the compiled type (the event's own object is used on expansion)
    rule_id: str | None
    reason: str
    slot: int  # SOURCE, or the index of the view (among those whose transforms run) whose output it carries


@dataclass(frozen=True, slots=True, eq=False)
class PlannedOutput:
    """One output record as the router shapes it: every decision for one topic, with its headers ready."""

    topic: str
    slot: int  # SOURCE: the producer's bytes go out untouched; otherwise encode that view's output
    event_type: EventType
    grade: Grade
    destinations: tuple[str, ...]  # sorted, without `graded`
    grade_header: bytes  # hbus-grade
    destinations_header: bytes  # hbus-destinations
    decisions: tuple[PlannedDecision, ...]


@dataclass(frozen=True, slots=True, eq=False)
class ViewPlan:
    """One derived view of the matching rule, with everything but its transforms decided."""

    name: str
    rule_id: str
    view_type: EventType | None  # None when blocked for want of an approval: route() never derives it then
    # (field, transform, compiled transform or None for keep), in view order; no drops
    steps: tuple[tuple[str, Transform, CompiledTransform | None], ...]
    slot: int  # its index among the views whose transforms run per event; SOURCE when none run
    decisions: tuple[PlannedDecision, ...]  # when its transforms succeed (empty when its grade blocks it)
    blocked: tuple[Blocked, ...]  # when its transforms succeed, or never run
    destinations: tuple[str, ...]  # (graded, *view.to): what a failing transform blocks
    error_prefix: str  # a failing transform blocks with error_prefix + its message


@dataclass(frozen=True, slots=True, eq=False)
class GradePlan:
    """Everything route() decides for one event type at one grade."""

    grade: Grade
    grade_id: str
    rule: Rule | None
    rule_id: str | None
    graded_topic: str
    ruleset_version: str
    shadow_key: ShadowKey
    decisions: tuple[PlannedDecision, ...]  # in route()'s order, when every view's transforms succeed
    blocked: tuple[Blocked, ...]  # likewise
    outputs: tuple[PlannedOutput, ...]  # likewise, one per distinct topic in order of first decision
    base_decisions: tuple[PlannedDecision, ...]  # the graded copy and the rule's direct destinations
    base_blocked: tuple[Blocked, ...]
    views: tuple[ViewPlan, ...]  # every view of the rule, in order
    running: tuple[ViewPlan, ...]  # the views whose transforms run per event; running[i].slot == i
    reads_payload: bool  # some running view reads a field (route() calls payload.get only then)
    forged_claims: Mapping[str, bool]  # the usual claims ("public", ...) and whether they are forgeries here
    pseudonymised: tuple[tuple[str, Transform], ...]  # (field, transform) of every pseudonymise step that runs
    # Outputs when some views failed, by bit mask of the failed slots; filled on first need (bounded by 2**views).
    _outputs_by_failures: dict[int, tuple[PlannedOutput, ...]] = field(default_factory=dict, repr=False)

    def is_forged(self, claimed_grade: Any) -> bool:
        """Whether a producer's claimed grade is a forgery for an event of this plan's grade."""
        if not claimed_grade:
            return False
        known = self.forged_claims.get(claimed_grade) if type(claimed_grade) is str else None
        return known if known is not None else is_forged_claim(claimed_grade, self.grade)


@dataclass(frozen=True, slots=True, eq=False)
class TypePlan:
    """One event type (one version) under one rule set: how to grade it, and a GradePlan per grade."""

    event_type: EventType
    key: str
    version: int
    record_grade: Grade
    field_grades: Mapping[str, Grade]
    field_names: frozenset[str]
    raising: tuple[tuple[str, Grade], ...]  # fields graded above the record, highest first
    by_grade: tuple[GradePlan, ...]  # indexed by the grade's value

    @property
    def constant_grade(self) -> Grade | None:
        """The grade of every event of this type that carries only known keys; None when a field can raise it."""
        return None if self.raising else self.record_grade

    @property
    def fixed(self) -> GradePlan | None:
        """The plan of every event of this type that carries only known keys, when no value can change it: no field
        can raise its grade and no view's transform runs. None otherwise (the values must be read).

        A reader that knows its records carry only the schema's fields (a decoded Avro record) then needs to
        know only that a record is valid, not its values: its outputs all carry the record as it came.
        """
        grade = self.constant_grade
        if grade is None:
            return None
        plan = self.by_grade[grade]
        return None if plan.running else plan


class PlannedResult:
    """One event's routing under a plan; expand it with `to_routing_result` (treat as immutable)."""

    __slots__ = ("errors", "event_type", "forged", "payload", "payloads", "plan")

    def __init__(self, plan: GradePlan, event_type: EventType, payload: Any, forged: bool,
                 payloads: list[dict[str, Any] | None] | None, errors: list[str | None] | None) -> None:
        self.plan = plan
        self.event_type = event_type
        self.payload = payload
        self.forged = forged
        self.payloads = payloads  # per running view: its output, or None when a transform failed
        self.errors = errors  # None when every transform succeeded; else per running view its error or None

    @property
    def grade(self) -> Grade:
        return self.plan.grade

    @property
    def rule_id(self) -> str | None:
        return self.plan.rule_id

    def payload_of(self, slot: int) -> Any:
        """The payload a decision or output of this `slot` carries."""
        return self.payload if slot == SOURCE else self.payloads[slot]  # type: ignore[index]

    def decisions(self) -> tuple[PlannedDecision, ...]:
        if self.errors is None:
            return self.plan.decisions
        errors = self.errors
        found = list(self.plan.base_decisions)
        for view in self.plan.views:
            if view.slot == SOURCE or errors[view.slot] is None:
                found.extend(view.decisions)
        return tuple(found)

    def blocked(self) -> tuple[Blocked, ...]:
        if self.errors is None:
            return self.plan.blocked
        errors = self.errors
        found = list(self.plan.base_blocked)
        for view in self.plan.views:
            error = errors[view.slot] if view.slot != SOURCE else None
            if error is None:
                found.extend(view.blocked)
            else:
                found.extend(Blocked(view.rule_id, d, view.error_prefix + error) for d in view.destinations)
        return tuple(found)

    def outputs(self) -> tuple[PlannedOutput, ...]:
        """The output records of this event (one per distinct topic), as the router writes them."""
        if self.errors is None:
            return self.plan.outputs
        failed = sum(1 << slot for slot, error in enumerate(self.errors) if error is not None)
        memo = self.plan._outputs_by_failures
        outputs = memo.get(failed)
        if outputs is None:
            outputs = memo[failed] = _outputs(self.decisions())
        return outputs

    def shadow_changes(self, diff: ShadowDiff) -> tuple[tuple[str, str], ...]:
        """(rule id, change) of this event under a shadow rule set, from `diff_plans(live, shadow)`."""
        return diff.get(self.plan.shadow_key, ())


class RoutingPlan:
    """A rule set compiled for the event types of a catalog; `route` is the per-event entry point."""

    __slots__ = ("_by_id", "_by_key", "_foreign", "fixed", "pseudonymising", "ruleset", "types", "version")

    def __init__(self, ruleset: RuleSet, types: Iterable[TypePlan]) -> None:
        self.ruleset = ruleset
        self.version = ruleset.version
        self.types: tuple[TypePlan, ...] = tuple(types)
        # By identity first: the codec hands out the catalog's own EventType objects, and the plan keeps them
        # alive, so an id cannot be reused by another object while the plan exists.
        self._by_id = {id(tp.event_type): tp for tp in self.types}
        self._by_key = {(tp.event_type.dept, tp.event_type.event, tp.version): tp for tp in self.types}
        self._foreign: dict[tuple[str, str, int], TypePlan] = {}
        # Event types (by key) some of whose events need a keyed pseudonym: only theirs are looked at beforehand.
        self.pseudonymising: frozenset[str] = frozenset(
            tp.key for tp in self.types if any(gp.pseudonymised for gp in tp.by_grade))
        # Event types whose routing no value can change (`TypePlan.fixed`): their records need no payload.
        self.fixed: tuple[TypePlan, ...] = tuple(tp for tp in self.types if tp.fixed is not None)

    def type_plan(self, event_type: EventType) -> TypePlan:
        """The plan of `event_type`; a type the plan was not compiled for is compiled on first sight."""
        found = self._by_id.get(id(event_type))
        if found is not None:
            return found
        key = (event_type.dept, event_type.event, event_type.version)
        for known in (self._by_key.get(key), self._foreign.get(key)):
            if known is not None and known.event_type == event_type:
                return known
        found = self._foreign[key] = compile_type(event_type, self.ruleset)
        return found

    def pseudonym_inputs(self, event_type: EventType, payload: Any) -> tuple[bytes, ...]:
        """What `route` will ask its pseudonymiser for on this event (the inputs of its non-null pseudonymised
        fields, under its grade's rule), so that a batch's pseudonyms can be computed at once, before routing."""
        tp = self._by_id.get(id(event_type)) or self.type_plan(event_type)
        steps = tp.by_grade[grade_of(tp, payload)].pseudonymised
        if not steps:
            return ()
        return tuple(pseudonym_input(t, value) for name, t in steps if (value := payload.get(name)) is not None)

    def route(self, event_type: EventType, payload: Any, claimed_grade: Any = None,
              pseudonymise: Pseudonymiser | None = None) -> PlannedResult:
        """What `routing.engine.route` decides for this event, with only the per-event work done."""
        tp = self._by_id.get(id(event_type)) or self.type_plan(event_type)
        gp = tp.by_grade[grade_of(tp, payload)]
        forged = gp.is_forged(claimed_grade) if claimed_grade else False
        running = gp.running
        if not running:
            return PlannedResult(gp, event_type, payload, forged, None, None)
        # route() reads the payload only through the views' fields, so a payload without `get` fails here
        # exactly when it fails there.
        get = payload.get if gp.reads_payload else None
        payloads: list[dict[str, Any] | None] = []
        errors: list[str | None] | None = None
        for view in running:
            out: dict[str, Any] | None = {}
            try:
                for name, _, compiled in view.steps:
                    value = get(name)  # type: ignore[misc]
                    out[name] = value if compiled is None or value is None else compiled(value, pseudonymise)  # type: ignore[index]
            except TransformError as exc:
                if errors is None:
                    errors = [None] * len(running)
                errors[view.slot] = str(exc)
                out = None
            payloads.append(out)
        return PlannedResult(gp, event_type, payload, forged, payloads, errors)


def grade_of(type_plan: TypePlan, payload: Any) -> Grade:
    """`routing.catalog.effective_grade` with the field grades looked up once per plan, not once per event.

    Same answer: a non-mapping payload or a key the schema does not know (even with a None value) is HIGHEST;
    otherwise the highest of the record grade and of the grades of the fields carried (present and not None).
    """
    if not (type(payload) is dict or isinstance(payload, Mapping)):
        return HIGHEST
    if not payload.keys() <= type_plan.field_names:
        return HIGHEST
    for name, grade in type_plan.raising:  # highest first: the first carried one is the answer
        if payload.get(name) is not None:
            return grade
    return type_plan.record_grade


def compile_plan(catalog_types: Iterable[EventType], ruleset: RuleSet) -> RoutingPlan:
    """The plan of `ruleset` for every event type (every version) of `catalog_types` (a Catalog will do)."""
    return RoutingPlan(ruleset, [compile_type(et, ruleset) for et in catalog_types])


def compile_type(event_type: EventType, ruleset: RuleSet) -> TypePlan:
    """The plan of one event type under `ruleset`: its grading and a GradePlan for each of the five grades."""
    grades = {f.name: f.grade for f in event_type.fields}  # as effective_grade builds it: the last of a name wins
    raising = tuple(sorted(((n, g) for n, g in grades.items() if g > event_type.record_grade),
                           key=lambda item: item[1], reverse=True))
    views_by_rule: dict[int, tuple[ViewPlan, ...]] = {}
    by_grade = []
    for grade in Grade:
        rule = ruleset.first_match(event_type.dept, event_type.event, grade)
        views: tuple[ViewPlan, ...] = ()
        if rule is not None:
            if id(rule) not in views_by_rule:  # a rule that matches several grades shares its views across them
                views_by_rule[id(rule)] = _view_plans(event_type, rule)
            views = views_by_rule[id(rule)]
        by_grade.append(_grade_plan(event_type, ruleset, grade, rule, views))
    return TypePlan(event_type, event_type.key, event_type.version, event_type.record_grade, grades,
                    frozenset(grades), raising, tuple(by_grade))


def _grade_plan(event_type: EventType, ruleset: RuleSet, grade: Grade, rule: Rule | None,
                views: tuple[ViewPlan, ...]) -> GradePlan:
    rule_id = rule.id if rule else None
    topic = event_type.graded_topic(grade)
    graded_reason = f"graded {grade.id} by schema" + (f"; rule {rule_id}" if rule else "; no rule: private only")
    decisions = [PlannedDecision(GRADED, topic, grade, grade.id, event_type, rule_id, graded_reason, SOURCE)]
    blocked: list[Blocked] = []
    if rule is not None:
        refusal = export_refusal(event_type, grade)
        for dest in rule.to:
            if refusal is None:
                decisions.append(PlannedDecision(dest, topic, grade, grade.id, event_type, rule.id, f"rule {rule.id}", SOURCE))
            else:
                blocked.append(Blocked(rule.id, dest, refusal))
    base_decisions, base_blocked = tuple(decisions), tuple(blocked)
    for view in views:
        decisions.extend(view.decisions)
        blocked.extend(view.blocked)
    running = tuple(v for v in views if v.slot != SOURCE)
    all_decisions = tuple(decisions)
    return GradePlan(
        grade=grade, grade_id=grade.id, rule=rule, rule_id=rule_id, graded_topic=topic,
        ruleset_version=ruleset.version, shadow_key=(event_type.key, event_type.version, grade),
        decisions=all_decisions, blocked=tuple(blocked), outputs=_outputs(all_decisions),
        base_decisions=base_decisions, base_blocked=base_blocked, views=views, running=running,
        reads_payload=any(v.steps for v in running),
        forged_claims={claim.id: claim < grade for claim in Grade},
        pseudonymised=tuple((name, t) for v in running for name, t, _ in v.steps if t.kind == "pseudonymise"),
    )


def _view_plans(event_type: EventType, rule: Rule) -> tuple[ViewPlan, ...]:
    plans = []
    for view in rule.derive:
        destinations = (GRADED, *view.to)
        if event_type.record_grade > Grade.SENSITIVE and not rule.approval:
            reason = f"view {view.name}: {event_type.key} is {event_type.record_grade.id}; a view of it needs an approval"
            plans.append(ViewPlan(view.name, rule.id, None, (), SOURCE, (), tuple(Blocked(rule.id, d, reason) for d in destinations),
                                  destinations, f"view {view.name}: "))
            continue
        plans.append(_view_plan(event_type, rule, view, destinations, slot=sum(p.slot != SOURCE for p in plans)))
    return tuple(plans)


def _view_plan(event_type: EventType, rule: Rule, view: View, destinations: tuple[str, ...], slot: int) -> ViewPlan:
    view_type = derive_event_type(event_type, view)
    names = {f.name for f in view_type.fields}
    steps = tuple((name, t, None if t.kind == "keep" else compile_transform(t))
                  for name, t in view.fields if t.kind != "drop" and name in names)
    # Why the grade checks are static: the output's keys are the steps' names, all fields of the view type, so
    # effective_grade(view_type, out) can never exceed view_type.schema_grade (no unknown key, no field above
    # it). If that bound is public the output is public whatever its values; if not, route() blocks with
    # max(view grade, schema grade), which is the schema grade. Either way the values do not matter.
    # A view blocked by its grade still runs its transforms per event: route() reports a failing transform first.
    schema_grade = view_type.schema_grade
    if schema_grade is not Grade.PUBLIC:
        reason = f"view {view.name} would be {schema_grade.id}"
        return ViewPlan(view.name, rule.id, view_type, steps, slot, (), tuple(Blocked(rule.id, d, reason) for d in destinations),
                        destinations, f"view {view.name}: ")
    topic = view_type.graded_topic(Grade.PUBLIC)
    reason = f"rule {rule.id} view {view.name}"
    decisions = tuple(PlannedDecision(d, topic, Grade.PUBLIC, Grade.PUBLIC.id, view_type, rule.id, reason, slot)
                      for d in destinations)
    return ViewPlan(view.name, rule.id, view_type, steps, slot, decisions, (), destinations, f"view {view.name}: ")


def _outputs(decisions: Iterable[PlannedDecision]) -> tuple[PlannedOutput, ...]:
    """One output record per distinct topic, shaped by its first decision, as the router's step does."""
    by_topic: dict[str, list[PlannedDecision]] = {}
    for decision in decisions:
        by_topic.setdefault(decision.topic, []).append(decision)
    outputs = []
    for topic, group in by_topic.items():
        first = group[0]
        destinations = tuple(sorted({d.destination for d in group if d.destination != GRADED}))
        outputs.append(PlannedOutput(topic, first.slot, first.event_type, first.grade, destinations,
                                     first.grade_id.encode(), ",".join(destinations).encode(), tuple(group)))
    return tuple(outputs)


def to_routing_result(planned: PlannedResult) -> RoutingResult:
    """The planned routing as the reference engine's RoutingResult (for tests and tools, not the hot path)."""
    decisions = tuple(
        Decision(d.destination, d.topic, d.grade, planned.payload_of(d.slot),
                 planned.event_type if d.slot == SOURCE else d.event_type, d.rule_id, d.reason)
        for d in planned.decisions())
    plan = planned.plan
    return RoutingResult(plan.grade, planned.forged, plan.ruleset_version, decisions, planned.blocked(), plan.rule_id)


def diff_plans(live: RoutingPlan, shadow: RoutingPlan) -> dict[ShadowKey, tuple[tuple[str, str], ...]]:
    """Where a shadow rule set would send events differently: (type key, version, grade) -> (rule id, change).

    The changes are those the router's per-event comparison makes ("+dest:topic" with the shadow rule's id,
    "-dest:topic" with "-"), computed once per grade instead of routing every event twice. A key is absent
    when nothing changes; a catalog holds one type per (key, version), and a type the two plans both hold under
    that key is taken from `live`. Two differences from comparing per event, both deliberate:
    - it compares what each rule set decides when every view's transforms succeed. A view that a transform
      blocks for one event (an address with no known district, no pseudonymisation key) is not seen: an event
      whose view fails under both sets shows no change either way, but a view failing on one side only would
      show a change per event and does not here. The diff is about the rules, not about one event's values.
    - the "-" changes come in the order of the live decisions (the per-event comparison walks a set, so its
      order was arbitrary).
    """
    diff: dict[ShadowKey, tuple[tuple[str, str], ...]] = {}
    seen: set[tuple[str, int]] = set()
    for tp in (*live.types, *shadow.types):
        if (tp.key, tp.version) in seen:
            continue
        seen.add((tp.key, tp.version))
        for live_gp, shadow_gp in zip(live.type_plan(tp.event_type).by_grade, shadow.type_plan(tp.event_type).by_grade):
            changes = _changes(live_gp.decisions, shadow_gp.decisions)
            if changes:
                diff[live_gp.shadow_key] = changes
    return diff


def _changes(live: Iterable[PlannedDecision], shadow: Iterable[PlannedDecision]) -> tuple[tuple[str, str], ...]:
    ours = dict.fromkeys((d.destination, d.topic) for d in live)
    theirs = {(d.destination, d.topic): d for d in shadow}
    changes = [(d.rule_id or "-", f"+{dest}:{topic}") for (dest, topic), d in theirs.items() if (dest, topic) not in ours]
    changes += [("-", f"-{dest}:{topic}") for dest, topic in ours if (dest, topic) not in theirs]
    return tuple(changes)
