"""The per-record work of the processors, free of Kafka I/O: bytes and headers in, records to write out.

Processors consume, call these steps, produce and commit; everything decided here is testable without a broker.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.exceptions import CodecError, DecodeError, UnknownSchemaError
from hybridbus.runtime.decisions import DecisionRecord
from routing import headers as H
from routing.boundary import check_export
from routing.catalog import Catalog, EventType
from routing.engine import route
from routing.grades import Grade
from routing.rules import RuleSet

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    partition: int | None = None


@dataclass
class Outcome:
    """Everything one input record turns into."""

    outputs: list[OutRecord] = field(default_factory=list)
    decisions: list[DecisionRecord] = field(default_factory=list)
    dlq_reason: str | None = None  # reason class, for the metric label
    event_type: EventType | None = None
    grade: Grade | None = None
    forged: bool = False
    blocked: int = 0
    shadow_changes: list[tuple[str, str]] = field(default_factory=list)  # (rule id, change)


def header_map(headers: Headers | Mapping[str, bytes] | None) -> dict[str, bytes]:
    if not headers:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {k: (v if isinstance(v, bytes) else str(v).encode()) for k, v in items if v is not None}


def header(headers: Headers | None, name: str) -> str:
    """The text of one header of a record's header list ("" when absent or not UTF-8)."""
    for key, value in headers or ():
        if key == name and value is not None:
            try:
                return value.decode("utf-8") if isinstance(value, bytes) else str(value)
            except UnicodeDecodeError:
                return ""
    return ""


def _text(hdrs: Mapping[str, bytes], name: str) -> str:
    value = hdrs.get(name)
    try:
        return value.decode("utf-8") if value else ""
    except UnicodeDecodeError:
        return ""


class RouterStep:
    """Decode, grade, apply the rule set, and shape the router's output records for one ingress record."""

    def __init__(self, catalog: Catalog, codec: AvroCodec, pseudonymiser: Callable[[bytes], bytes] | None = None) -> None:
        self.catalog = catalog
        self.codec = codec
        self.pseudonymiser = pseudonymiser
        self._derived_known: set[tuple[str, int]] = set()

    def route(
        self, topic: str, partition: int, key: bytes | None, value: bytes | None, headers: Headers | None,
        live: RuleSet, shadow: RuleSet | None, now_ms: int,
    ) -> Outcome:
        hdrs = header_map(headers)
        event_id = _text(hdrs, H.EVENT_ID) or (key.decode("utf-8", "replace") if key else "")
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
        outcome.outputs.append(self._dlq(topic, partition, key, value, hdrs, reject.reason))
        dept = topic.split(".")[1] if topic.count(".") >= 2 else ""
        outcome.decisions.append(DecisionRecord("router", event_id, _text(hdrs, H.EVENT_TYPE) or topic.removeprefix("ingress."),
                                                dept, Grade.IMPORTANT.id, live.version, "dlq", "_hbus.dlq", "dlq",
                                                reject.reason, now_ms))
        return outcome

    def _route(self, topic: str, partition: int, key: bytes | None, value: bytes | None, headers: Headers | None,
               hdrs: Mapping[str, bytes], event_id: str, live: RuleSet, shadow: RuleSet | None, now_ms: int) -> Outcome:
        outcome = Outcome()
        event_type, payload = self._decode_for_topic(topic, value, hdrs)
        outcome.event_type = event_type
        claimed = _text(hdrs, H.CLAIMED_GRADE) or _text(hdrs, H.GRADE) or None
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
                    "router", event_id, event_type.key, event_type.dept, decision.grade.id, live.version,
                    decision.destination, out_topic, "forged" if result.forged else "routed",
                    decision.reason, now_ms))
        for blocked in result.blocked:
            outcome.blocked += 1
            outcome.decisions.append(DecisionRecord(
                "router", event_id, event_type.key, event_type.dept, result.grade.id, live.version,
                getattr(blocked, "destination", "?"), "", "blocked", getattr(blocked, "reason", str(blocked)), now_ms))
        if shadow is not None:
            outcome.shadow_changes = self._shadow_changes(event_type, payload, claimed, result, shadow)
        return outcome

    def _decode_for_topic(self, topic: str, value: bytes | None, hdrs: Mapping[str, bytes]) -> tuple[EventType, dict[str, Any]]:
        if value is None:
            raise _Reject("empty", "record has no value")
        try:
            event_type, payload = self.codec.decode(value)
        except UnknownSchemaError as exc:
            raise _Reject("unknown_schema", exc.reason) from None
        except DecodeError as exc:
            raise _Reject("decode_error", exc.reason) from None
        if event_type.ingress_topic != topic:
            raise _Reject("wrong_topic", f"a {event_type.key} event on {topic}")
        claimed_dept = _text(hdrs, H.DEPT)
        if claimed_dept and claimed_dept != event_type.dept:
            raise _Reject("wrong_department", f"header department {claimed_dept!r} on a {event_type.key} event")
        # A record that decodes against its schema has every field of the right type: no second validation.
        return event_type, payload

    def _dlq(self, topic: str, partition: int, key: bytes | None, value: bytes | None,
             hdrs: Mapping[str, bytes], reason: str) -> OutRecord:
        out_headers = [(k, v) for k, v in hdrs.items() if k not in H.ROUTER_HEADERS]
        out_headers += [(H.DLQ_REASON, reason.encode()), (H.SOURCE_TOPIC, topic.encode()),
                        ("hbus-source-partition", str(partition).encode())]
        return OutRecord("_hbus.dlq", key, value or b"", out_headers)

    def _know(self, event_type: EventType) -> None:
        ident = (event_type.key, event_type.version)
        if ident not in self._derived_known:
            self.codec.add(event_type)
            self._derived_known.add(ident)

    def _shadow_changes(self, event_type: EventType, payload: Mapping[str, Any], claimed: str | None,
                        live_result: Any, shadow: RuleSet) -> list[tuple[str, str]]:
        # A pilot never moves anything: it only compares where the candidate set would send this event.
        shadow_result = route(event_type, payload, shadow, claimed_grade=claimed, pseudonymise=self.pseudonymiser)
        live = {(d.destination, d.topic) for d in live_result.decisions}
        cand = {(d.destination, d.topic): d for d in shadow_result.decisions}
        changes = [(d.rule_id or "-", f"+{dest}:{topic}") for (dest, topic), d in cand.items() if (dest, topic) not in live]
        changes += [("-", f"-{dest}:{topic}") for dest, topic in live if (dest, topic) not in cand]
        return changes


class _Reject(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        self.kind, self.reason = kind, reason


@dataclass(frozen=True)
class GuardOutcome:
    allowed: bool
    leak: bool  # refused because it is not public (quarantine), not merely because no rule exports it
    event_type: EventType | None
    payload: dict[str, Any] | None
    grade: Grade
    reason: str
    event_id: str

    @property
    def dept(self) -> str:
        return self.event_type.dept if self.event_type else ""

    def type_key(self, topic: str) -> str:
        return self.event_type.key if self.event_type else topic

    def decision(self, component: str, destination: str, topic: str, verdict: str, headers: Headers | None,
                 now_ms: int) -> DecisionRecord:
        """The audit-trail record of this guard decision (what left, or what was quarantined and why)."""
        reason = "public" if self.allowed else self.reason
        return DecisionRecord(component, self.event_id, self.type_key(topic), self.dept, self.grade.id,
                              header(headers, H.RULES_VERSION), destination, topic, verdict, reason, now_ms)

    def quarantine_headers(self, headers: Headers | None, source_topic: str) -> list[tuple[str, bytes]]:
        return list(headers or []) + [(H.DLQ_REASON, self.reason.encode()), (H.SOURCE_TOPIC, source_topic.encode())]


class BoundaryStep:
    """The egress and archiver guard: decode every record itself and let only `public` through."""

    def __init__(self, codec: AvroCodec, derived: Iterable[EventType] = ()) -> None:
        self.codec = codec
        self._derived: dict[tuple[str, int], EventType] = {}
        self.learn(derived)

    def learn(self, derived: Iterable[EventType]) -> None:
        """Derived public views are computed from the catalog and a rule set, never taken from a record."""
        for event_type in derived:
            ident = (event_type.key, event_type.version)
            if ident not in self._derived:
                self.codec.add(event_type)
                self._derived[ident] = event_type

    def derived_types(self) -> list[EventType]:
        return list(self._derived.values())

    def check(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | None,
              destination: str) -> GuardOutcome:
        hdrs = header_map(headers)
        event_id = _text(hdrs, H.EVENT_ID) or (key.decode("utf-8", "replace") if key else "")
        if value is None:
            return GuardOutcome(False, True, None, None, Grade.IMPORTANT, "record has no value", event_id)
        try:
            event_type, payload = self.codec.decode(value)
        except CodecError as exc:
            return GuardOutcome(False, True, None, None, Grade.IMPORTANT, f"does not decode: {exc.reason}", event_id)
        verdict = check_export(event_type, payload, topic, _text(hdrs, H.DESTINATIONS), destination)
        return GuardOutcome(verdict.allowed, verdict.leak, event_type, payload, verdict.grade, verdict.reason, event_id)
