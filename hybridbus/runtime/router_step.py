"""The router's work, free of Kafka I/O: ingress records in; per batch, the records to produce, one compact audit
record and the metric counts out. Rule sets are compiled into plans once, between batches.

Per event only what depends on the event runs: decode, grade, the plan's look-up, view transforms, outputs. Keyed
pseudonyms are computed per batch, before routing it: the distinct values of the batch in one call (`prepare`).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from hybridbus.adapters import metrics
from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.exceptions import DecodeError, UnknownSchemaError
from hybridbus.adapters.loaders import derived_event_types
from hybridbus.adapters.topology import DLQ_TOPIC
from hybridbus.runtime.decisions import DecisionRecord, Shape, Template, encode_rows
from hybridbus.runtime.records import Headers, OutRecord, Record, dlq_record, event_id_of, header_map, text
from routing import headers as H
from routing.catalog import Catalog, EventType
from routing.engine import route
from routing.grades import Grade
from routing.plan import SOURCE, PlannedResult, RoutingPlan, compile_plan, diff_plans
from routing.rules import RuleSet
from routing.transforms import Pseudonymiser, pseudonyms_from

COMPONENT = "router"
_ROUTER_HEADERS = H.ROUTER_HEADERS
SHAPES_KEPT = 10_000  # distinct event outcomes remembered between rule changes (transform errors add some)


class PseudonymSource(Protocol):
    """Where a batch's pseudonyms come from (`hybridbus.runtime.pseudonyms.PseudonymCache` over Vault Transit)."""

    def resolve(self, inputs: set[bytes]) -> Mapping[bytes, str]: ...

    def clear(self) -> None: ...


class _Reject(Exception):
    """An ingress record the router cannot route: `kind` is the metric's reason class, `reason` the DLQ header."""

    def __init__(self, kind: str, reason: str) -> None:
        self.kind, self.reason = kind, reason


@dataclass
class Outcome:
    """Everything one input record turns into (the per-record reference form, kept for the tests)."""

    outputs: list[OutRecord] = field(default_factory=list)
    decisions: list[DecisionRecord] = field(default_factory=list)
    dlq_reason: str | None = None  # reason class, for the metric label
    event_type: EventType | None = None
    grade: Grade | None = None
    forged: bool = False
    blocked: int = 0
    shadow_changes: list[tuple[str, str]] = field(default_factory=list)  # (rule id, change)


class _Output:
    """One output record of an event outcome: where it goes, which payload it carries, its last two headers."""

    __slots__ = ("topic", "slot", "event_type", "tail")

    def __init__(self, topic: str, slot: int, event_type: EventType, tail: list[tuple[str, bytes]]) -> None:
        self.topic, self.slot, self.event_type, self.tail = topic, slot, event_type, tail


class _Shape:
    """What every event with the same plan, forgery and transform errors turns into, computed once: its output
    records, its decisions (as templates) and its metric counts."""

    __slots__ = ("outputs", "decisions", "counts")

    def __init__(self, outputs: tuple[_Output, ...], decisions: Shape,
                 counts: tuple[tuple[Any, tuple[str, ...], int], ...]) -> None:
        self.outputs, self.decisions, self.counts = outputs, decisions, counts


class RouterBatch:
    """What one batch of ingress records turned into. Produce `outputs` and `dlq`, then `decision_records()` to
    `_hbus.decisions` (key b"router"); after every one is acknowledged, `publish_metrics()` and commit."""

    __slots__ = ("now_ms", "version", "outputs", "dlq", "ids", "shapes", "dlq_reasons", "occurred", "stamp",
                 "pseudonymise", "decoded")

    def __init__(self, now_ms: int, version: str) -> None:
        self.now_ms = now_ms
        self.version = version
        self.outputs: list[Record] = []  # graded copies and derived views
        self.dlq: list[Record] = []  # refused input, to `_hbus.dlq`, with the reason
        # Per event, in order: its id, and its outcome shape (or the decisions of its DLQ copy). The decision records
        # and the metric counts are made from these two lists at the end of the batch, not per event.
        self.ids: list[str] = []
        self.shapes: list[_Shape | Shape] = []
        self.dlq_reasons: dict[str, int] = {}
        self.occurred: list[bytes] = []  # occurred-at headers of routed events, for the latency histogram
        # The same two stamps on every output of the batch.
        self.stamp = [(H.RULES_VERSION, version.encode()), (H.ROUTED_AT, str(now_ms).encode())]
        self.pseudonymise: Pseudonymiser | None = None  # the batch's pseudonyms, once `RouterStep.prepare` made them
        # What `prepare` decoded, by the id of the value (kept beside it, so the id stays its own): route_into reuses it.
        self.decoded: dict[int, tuple[bytes, EventType, dict[str, Any]]] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def decision_records(self) -> list[bytes]:
        """The batch's `_hbus.decisions` values: one compact record (more only for a very large batch)."""
        rows = list(zip(self.ids, [s.decisions if type(s) is _Shape else s for s in self.shapes]))
        return encode_rows(COMPONENT, self.now_ms, rows)  # type: ignore[arg-type]

    def counts(self) -> dict[Any, dict[tuple[str, ...], int]]:
        """Metric -> label values -> amount, for the whole batch."""
        out: dict[Any, dict[tuple[str, ...], int]] = {}
        for shape, events in Counter(self.shapes).items():
            if type(shape) is not _Shape:
                continue  # a DLQ copy's decisions: counted by dlq_reasons
            for metric, labels, amount in shape.counts:
                per = out.setdefault(metric, {})
                per[labels] = per.get(labels, 0) + amount * events
        if self.dlq_reasons:
            per = out.setdefault(metrics.DLQ, {})
            for kind, events in self.dlq_reasons.items():
                per[(COMPONENT, kind)] = per.get((COMPONENT, kind), 0) + events
        return out

    def publish_metrics(self) -> None:
        """Add the batch's counts to Prometheus, and its latencies (occurred-at to the batch's routing time)."""
        for metric, counts in self.counts().items():
            metrics.add_counts(metric, counts)
        metrics.observe_latencies("routed", self.occurred, self.now_ms)


class RouterStep:
    """Decode, grade, apply the compiled rule set, and shape the router's output records.

    Batch use: `load(live, shadow)` when the rules change (between batches), then per batch `begin(now_ms)` and
    `route_into(batch, ...)` for each record. `route(...)` is the per-record reference form the tests hold the
    batch form to.
    """

    def __init__(self, catalog: Catalog, codec: AvroCodec,
                 pseudonymiser: Callable[[bytes], bytes] | None = None,
                 pseudonyms: PseudonymSource | None = None) -> None:
        """`pseudonyms` (the router's) computes a batch's pseudonyms at once in `prepare`; `pseudonymiser` is asked
        per value (benchmarks and tests, with a local key), for batches not prepared and by the reference form."""
        self.catalog = catalog
        self.codec = codec
        self.pseudonymiser = pseudonymiser
        self.pseudonyms = pseudonyms
        self._derived_known: set[tuple[str, int]] = set()
        # By the codec's type objects: the ingress topic and the department (as header bytes) of each.
        self._ingress: dict[int, tuple[EventType, str, bytes]] = {}
        # How long an unknown fingerprint was held back before its record came here (the data plane's hold-back).
        self.unknown_waited: Callable[[bytes | None], float | None] | None = None
        self.load(RuleSet.empty())

    def use_catalog(self, catalog: Catalog, codec: AvroCodec) -> None:
        """Route under `catalog` from the next batch on: its types, versions and views, the rule sets compiled
        for it again (between batches, so no record is routed under a mix of two catalogs)."""
        self.catalog, self.codec = catalog, codec
        self._derived_known = set()
        self._ingress = {}
        self.load(self.live, self.shadow)

    # --- batches ---------------------------------------------------------------------------------------------

    def load(self, live: RuleSet, shadow: RuleSet | None = None) -> None:
        """Compile `live` (and the pilot `shadow`) for the catalog; every later batch routes under them."""
        # The one place the rule sets become plans: the step uses nothing else of the rules per event.
        plan = compile_plan(self.catalog, live)
        self._diff = diff_plans(plan, compile_plan(self.catalog, shadow)) if shadow is not None else {}
        self._plan: RoutingPlan = plan
        self.live, self.shadow = live, shadow
        for view_type in derived_event_types(self.catalog, live):
            self._know(view_type)
        self._shapes: dict[Any, _Shape] = {}
        self._plain: dict[Any, _Shape] = {}  # by grade plan: the shapes of events neither forged nor failing a view
        # Types whose routing no value can change: their records are checked, not decoded into a dict, and take the
        # plan's shape as it is (by the codec's type objects, which are the catalog's).
        self._fixed = {id(tp.event_type): (tp.event_type, tp.fixed) for tp in plan.fixed}
        self._unread = frozenset(self.codec.fingerprint(tp.event_type) for tp in plan.fixed
                                 if self.codec.knows_type(tp.event_type))
        # Ingress topics whose events may need a pseudonym: `prepare` decodes only these ahead of routing.
        self._pseudonymising = frozenset(self.catalog.get(key).ingress_topic for key in plan.pseudonymising)
        if self.pseudonyms is not None:
            self.pseudonyms.clear()  # a new rule set starts with no pseudonym remembered

    def begin(self, now_ms: int) -> RouterBatch:
        return RouterBatch(now_ms, self.live.version)

    def prepare(self, batch: RouterBatch, records: Iterable[tuple[str, bytes | None]]) -> None:
        """Before `route_into`: the pseudonyms every (topic, value) of the batch will need, from one request.

        Blocks while the source cannot answer (the batch waits; nothing of it is produced or committed). Only the
        records of types with a pseudonymising view are decoded here, and `route_into` routes them from what was
        decoded here; one that does not decode is left to `route_into`, which puts it in the DLQ with its reason.
        """
        if self.pseudonyms is None or not self._pseudonymising:
            return
        wanted: set[bytes] = set()
        decoded = batch.decoded
        for topic, value in records:
            if topic not in self._pseudonymising or value is None:
                continue
            try:
                event_type, payload = self.codec.decode(value)
                wanted.update(self._plan.pseudonym_inputs(event_type, payload))
            except Exception:  # noqa: BLE001 - route_into rejects it with the reason; here it simply needs none
                continue
            decoded[id(value)] = (value, event_type, payload)
        if wanted:
            batch.pseudonymise = pseudonyms_from(self.pseudonyms.resolve(wanted))

    def route_into(self, batch: RouterBatch, topic: str, partition: int, key: bytes | None, value: bytes | None,
                   headers: Headers | None) -> None:
        """Route one ingress record (as confluent-kafka gives it) into `batch`."""
        if headers:
            hdrs = dict(headers)
            if len(hdrs) == len(headers) and _ROUTER_HEADERS.isdisjoint(hdrs):
                base = headers  # nothing to drop: the usual case
            else:
                base = [(k, v) for k, v in headers if k not in _ROUTER_HEADERS]
                if len(hdrs) != len(headers):  # a name given twice: its last value that is not None counts
                    hdrs = {k: v for k, v in headers if v is not None}
        else:
            hdrs, base = {}, ()
        event_id = event_id_of(hdrs, key)
        outputs = batch.outputs
        mark = len(outputs)
        try:
            prepared = batch.decoded.get(id(value)) if batch.decoded else None
            if prepared is not None and prepared[0] is value:
                event_type, payload = self._check_topic(topic, prepared[1], hdrs), prepared[2]
            else:
                event_type, payload = self._decode_for_topic(topic, value, hdrs, self._unread)
            claimed = (text(hdrs.get(H.CLAIMED_GRADE)) or text(hdrs.get(H.GRADE)) or None) \
                if H.CLAIMED_GRADE in hdrs or H.GRADE in hdrs else None
            stamp = batch.stamp
            fixed = self._fixed.get(id(event_type)) if payload is None else None
            if fixed is not None and fixed[0] is event_type:
                # No value can change where it goes: the plan's shape, and the producer's bytes on every output.
                plan = fixed[1]
                forged = plan.is_forged(claimed) if claimed else False
                shape = None if forged else self._plain.get(plan)
                if shape is None:
                    shape = self._shape(PlannedResult(plan, event_type, None, forged, None, None))
                for out in shape.outputs:
                    outputs.append((out.topic, key, value, partition, [*base, *stamp, *out.tail]))
            else:
                if payload is None:  # checked only, but not a type of the plan's fixed ones: decode it after all
                    payload = self.codec.decode(value)[1]  # type: ignore[arg-type]
                result = self._plan.route(event_type, payload, claimed, batch.pseudonymise or self.pseudonymiser)
                shape = self._plain.get(result.plan) if result.errors is None and not result.forged else None
                if shape is None:
                    shape = self._shape(result)
                for out in shape.outputs:
                    body = value if out.slot == SOURCE else self.codec.encode(out.event_type, result.payload_of(out.slot))
                    outputs.append((out.topic, key, body, partition, [*base, *stamp, *out.tail]))
        except _Reject as reject:
            self._reject_into(batch, topic, partition, key, value, headers, event_id, reject)
            return
        except Exception as exc:  # noqa: BLE001 - one poisonous record must not stop the bus: DLQ it
            del outputs[mark:]  # nothing of a failed record goes out but its DLQ copy
            reject = _Reject("routing_error", f"routing failed: {type(exc).__name__}")
            self._reject_into(batch, topic, partition, key, value, headers, event_id, reject)
            return
        batch.ids.append(event_id)
        batch.shapes.append(shape)
        occurred = hdrs.get(H.OCCURRED_AT)
        if occurred:
            batch.occurred.append(occurred)

    def _reject_into(self, batch: RouterBatch, topic: str, partition: int, key: bytes | None, value: bytes | None,
                     headers: Headers | None, event_id: str, reject: _Reject) -> None:
        hdrs = header_map(headers)
        batch.dlq.append(dlq_record(topic, partition, key, value, hdrs, reject.reason))
        batch.ids.append(event_id)
        batch.shapes.append((self._dlq_template(topic, hdrs, reject.reason, batch.version),))
        batch.dlq_reasons[reject.kind] = batch.dlq_reasons.get(reject.kind, 0) + 1

    @staticmethod
    def _dlq_template(topic: str, hdrs: Mapping[str, bytes], reason: str, version: str) -> Template:
        dept = topic.split(".")[1] if topic.count(".") >= 2 else ""
        event_type = text(hdrs.get(H.EVENT_TYPE)) or topic.removeprefix("ingress.")
        return (event_type, dept, Grade.IMPORTANT.id, version, "dlq", DLQ_TOPIC, "dlq", reason)

    def _shape(self, result: PlannedResult) -> _Shape:
        """The outcome shape of a planned result, built on first sight of its (plan, forgery, transform errors)."""
        errors = result.errors
        ident = (result.plan, result.forged) if errors is None else (result.plan, result.forged, tuple(errors))
        shape = self._shapes.get(ident)
        if shape is None:
            if len(self._shapes) >= SHAPES_KEPT:
                self._shapes.clear()  # transform errors with ever new texts: start over rather than grow
            shape = self._shapes[ident] = self._build_shape(result)
            if errors is None and not result.forged:
                self._plain[result.plan] = shape
        return shape

    def _build_shape(self, result: PlannedResult) -> _Shape:
        plan, event_type, version = result.plan, result.event_type, self.live.version
        key, dept = event_type.key, event_type.dept
        verdict = "forged" if result.forged else "routed"
        outputs, decisions = [], []
        counts: list[tuple[Any, tuple[str, ...], int]] = [(metrics.EVENTS_IN, (COMPONENT, dept, key), 1)]
        for out in result.outputs():
            outputs.append(_Output(out.topic, out.slot, out.event_type,
                                   [(H.GRADE, out.grade_header), (H.DESTINATIONS, out.destinations_header)]))
            decisions.extend((key, dept, d.grade_id, version, d.destination, out.topic, verdict, d.reason)
                             for d in out.decisions)
            counts.append((metrics.EVENTS_OUT, (COMPONENT, dept, key, out.grade_header.decode(),
                                                out.topic.split(".", 1)[0]), 1))
        blocked = result.blocked()
        decisions.extend((key, dept, plan.grade_id, version, b.destination, "", "blocked", b.reason) for b in blocked)
        if result.forged:
            counts.append((metrics.FORGED_HEADERS, (dept, key), 1))
        if blocked:
            counts.append((metrics.BOUNDARY_BLOCKED, (COMPONENT, dept, key, plan.grade_id), len(blocked)))
        # The pilot's moves come from comparing the two plans once, not from routing every event twice.
        counts.extend((metrics.SHADOW_MOVES, (rule_id, change.split(":", 1)[0]), 1)
                      for rule_id, change in result.shadow_changes(self._diff))
        return _Shape(tuple(outputs), tuple(decisions), tuple(counts))

    # --- shared by both forms -----------------------------------------------------------------------------------

    def _decode_for_topic(self, topic: str, value: bytes | None, hdrs: Mapping[str, bytes | None],
                          unread: frozenset[bytes] = frozenset()) -> tuple[EventType, dict[str, Any] | None]:
        """The record's type and payload, refused with its reason; the payload is None for a type in `unread`
        (only checked: see `AvroCodec.decode_unless`)."""
        if value is None:
            raise _Reject("empty", "record has no value")
        try:
            event_type, payload = self.codec.decode_unless(value, unread) if unread else self.codec.decode(value)
        except UnknownSchemaError as exc:
            waited = self.unknown_waited(value) if self.unknown_waited is not None else None
            raise _Reject("unknown_schema", exc.reason if waited is None
                          else f"{exc.reason} after {waited:.0f} s") from None
        except DecodeError as exc:
            raise _Reject("decode_error", exc.reason) from None
        return self._check_topic(topic, event_type, hdrs), payload

    def _check_topic(self, topic: str, event_type: EventType, hdrs: Mapping[str, bytes | None]) -> EventType:
        """`event_type`, when its record came on its own ingress topic without another department's header."""
        known = self._ingress.get(id(event_type))
        if known is None or known[0] is not event_type:
            known = self._ingress[id(event_type)] = (event_type, event_type.ingress_topic, event_type.dept.encode())
        if known[1] != topic:
            raise _Reject("wrong_topic", f"a {event_type.key} event on {topic}")
        raw_dept = hdrs.get(H.DEPT)
        if raw_dept and raw_dept != known[2]:  # the producer's own department, as bytes: nothing to decode
            claimed_dept = text(raw_dept)
            if claimed_dept and claimed_dept != event_type.dept:
                raise _Reject("wrong_department", f"header department {claimed_dept!r} on a {event_type.key} event")
        # A record that decodes against its schema has every field of the right type: no second validation.
        return event_type

    def _know(self, event_type: EventType) -> None:
        ident = (event_type.key, event_type.version)
        if ident not in self._derived_known:
            self.codec.add(event_type)
            self._derived_known.add(ident)

    # --- one record at a time (the reference the batch form is tested against) ----------------------------------

    def route(
        self, topic: str, partition: int, key: bytes | None, value: bytes | None, headers: Headers | None,
        live: RuleSet, shadow: RuleSet | None, now_ms: int,
    ) -> Outcome:
        """Route one record with the reference engine, every decision made afresh (slow: the tests' reference)."""
        hdrs = header_map(headers)
        event_id = event_id_of(hdrs, key)
        try:
            return self._route(topic, partition, key, value, headers, hdrs, event_id, live, shadow, now_ms)
        except _Reject as reject:
            return self._rejected(topic, partition, key, value, hdrs, event_id, live, now_ms, reject)
        except Exception as exc:  # noqa: BLE001 - one poisonous record must not stop the bus: DLQ it
            reject = _Reject("routing_error", f"routing failed: {type(exc).__name__}")
            return self._rejected(topic, partition, key, value, hdrs, event_id, live, now_ms, reject)

    def _rejected(self, topic: str, partition: int, key: bytes | None, value: bytes | None, hdrs: Mapping[str, bytes],
                  event_id: str, live: RuleSet, now_ms: int, reject: _Reject) -> Outcome:
        outcome = Outcome(dlq_reason=reject.kind)
        out_topic, out_key, out_value, _, out_headers = dlq_record(topic, partition, key, value, hdrs, reject.reason)
        outcome.outputs.append(OutRecord(out_topic, out_key, out_value or b"", out_headers))
        outcome.decisions.append(DecisionRecord(COMPONENT, event_id, *self._dlq_template(topic, hdrs, reject.reason,
                                                                                          live.version), now_ms))
        return outcome

    def _route(self, topic: str, partition: int, key: bytes | None, value: bytes | None, headers: Headers | None,
               hdrs: Mapping[str, bytes], event_id: str, live: RuleSet, shadow: RuleSet | None, now_ms: int) -> Outcome:
        outcome = Outcome()
        event_type, payload = self._decode_for_topic(topic, value, hdrs)
        outcome.event_type = event_type
        claimed = text(hdrs.get(H.CLAIMED_GRADE)) or text(hdrs.get(H.GRADE)) or None
        result = route(event_type, payload, live, claimed_grade=claimed, pseudonymise=self.pseudonymiser)
        outcome.grade, outcome.forged = result.grade, result.forged
        base = [(k, v) for k, v in (headers or []) if k not in H.ROUTER_HEADERS] if not isinstance(headers, Mapping) \
            else [(k, v) for k, v in hdrs.items() if k not in H.ROUTER_HEADERS]
        stamp = [(H.RULES_VERSION, live.version.encode()), (H.ROUTED_AT, str(now_ms).encode())]
        by_topic: dict[str, list[Any]] = {}
        for decision in result.decisions:
            by_topic.setdefault(decision.topic, []).append(decision)
        for out_topic, decisions in by_topic.items():
            first = decisions[0]
            destinations = sorted({d.destination for d in decisions if d.destination != "graded"})
            out_type = first.event_type
            if out_type is event_type:
                body = value  # the graded copy is the producer's bytes, untouched
            else:
                self._know(out_type)
                body = self.codec.encode(out_type, first.payload)
            out_headers = base + stamp + [(H.GRADE, first.grade.id.encode()),
                                          (H.DESTINATIONS, ",".join(destinations).encode())]
            outcome.outputs.append(OutRecord(out_topic, key, body, out_headers, partition))  # type: ignore[arg-type]
            for decision in decisions:
                outcome.decisions.append(DecisionRecord(
                    COMPONENT, event_id, event_type.key, event_type.dept, decision.grade.id, live.version,
                    decision.destination, out_topic, "forged" if result.forged else "routed",
                    decision.reason, now_ms))
        for blocked in result.blocked:
            outcome.blocked += 1
            outcome.decisions.append(DecisionRecord(
                COMPONENT, event_id, event_type.key, event_type.dept, result.grade.id, live.version,
                getattr(blocked, "destination", "?"), "", "blocked", getattr(blocked, "reason", str(blocked)), now_ms))
        if shadow is not None:
            outcome.shadow_changes = self._shadow_changes(event_type, payload, claimed, result, shadow)
        return outcome

    def _shadow_changes(self, event_type: EventType, payload: Mapping[str, Any], claimed: str | None,
                        live_result: Any, shadow: RuleSet) -> list[tuple[str, str]]:
        # A pilot never moves anything: it only compares where the candidate set would send this event.
        shadow_result = route(event_type, payload, shadow, claimed_grade=claimed, pseudonymise=self.pseudonymiser)
        live = {(d.destination, d.topic) for d in live_result.decisions}
        cand = {(d.destination, d.topic): d for d in shadow_result.decisions}
        changes = [(d.rule_id or "-", f"+{dest}:{topic}") for (dest, topic), d in cand.items()
                   if (dest, topic) not in live]
        changes += [("-", f"-{dest}:{topic}") for dest, topic in live if (dest, topic) not in cand]
        return changes
