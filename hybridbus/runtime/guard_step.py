"""The boundary guard of egress and the archiver, free of Kafka I/O: it decodes every record itself, re-grades it
from the catalog and lets only `public` through, once per event id; per batch, what passed and what is kept back.

It shares the catalog and the grade function with the router, never the router's decisions: the router's
destinations header may only narrow what leaves.
"""
from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, NamedTuple

from hybridbus.adapters import metrics
from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.exceptions import CodecError
from hybridbus.adapters.topology import QUARANTINE_TOPIC
from hybridbus.runtime.decisions import DecisionBatch, DecisionRecord, Template
from hybridbus.runtime.records import (
    CATALOG_DIGEST,
    QUARANTINE_GRADE,
    QUARANTINED_BY,
    SOURCE_PARTITION,
    Headers,
    Record,
    event_id_of,
    header,
    header_map,
    quarantine_headers,
    text,
)
from routing import headers as H
from routing.boundary import ARCHIVE, PUBLIC_CLOUD, Verdict, check_export
from routing.catalog import EventType
from routing.grades import Grade

DEDUPE_WINDOW = 20_000  # event ids remembered per partition: a router replay repeats at most an uncommitted batch
KNOWN_KEPT = 10_000  # (event type, rules version, topic) outcomes remembered


class DedupeWindow:
    """The event ids let out lately, per partition: at least the newest `size` each, forgotten oldest first.

    One insertion-ordered dict a partition (CPython keeps a dict of str keys in 16 bytes a slot), so a check is one
    look-up; once it holds `size + size // 4` ids, the oldest `size // 4` go at once (dropping them one at a time,
    each drop would first step over the slots the drops before left at the front). A partition thus remembers
    `size` to `size + size // 4` ids at ~130 bytes each, the id's own 81 among them; a set and a deque of the same
    ids took ~195 (tracemalloc, 24 partitions of 20,000).
    """

    def __init__(self, size: int = DEDUPE_WINDOW) -> None:
        self.size = size
        self.generation = max(1, size // 4)  # ids forgotten at once
        self._ids: dict[Hashable, dict[str, None]] = {}

    def seen(self, partition: Hashable, event_id: str) -> bool:
        """True when `event_id` already went out on `partition`; remembers it otherwise."""
        ids = self._ids.get(partition)
        if ids is None:
            ids = self._ids[partition] = {}
        elif event_id in ids:
            return True
        ids[event_id] = None
        if len(ids) >= self.size + self.generation:
            for oldest in list(islice(ids, self.generation)):
                del ids[oldest]
        return False

    def load(self, partition: Hashable, event_ids: Iterable[str]) -> None:
        """Start `partition` over from what its sink already holds (oldest first), e.g. read back from the public
        side after a restart; only the newest are kept."""
        self._ids.pop(partition, None)
        for event_id in event_ids:
            if event_id:
                self.seen(partition, event_id)

    def forget(self, partition: Hashable) -> None:
        """Drop a partition's window (the partition was revoked: its next owner reads the tail again)."""
        self._ids.pop(partition, None)

    def ids(self, partition: Hashable) -> list[str]:
        """The ids remembered for `partition`, oldest first."""
        return list(self._ids.get(partition, ()))


@dataclass(frozen=True)
class Role:
    """What a guard is for: the processor it serves and what it calls a record it lets through."""

    component: str
    verdict: str
    stage: str  # latency histogram stage
    counts_out: bool  # count hbus_events_out_total when let through (the archiver counts when the object is written)
    # Keep the decoded payload for the sink: the archiver writes it, egress sends the record's own bytes (holding a
    # batch's payloads costs it more than the check itself: fresh memory for every decode).
    keeps_payload: bool


ROLES: Mapping[str, Role] = {
    PUBLIC_CLOUD: Role("egress", "exported", "exported", counts_out=True, keeps_payload=False),
    ARCHIVE: Role("archiver", "archived", "archived", counts_out=False, keeps_payload=True),
}


class Passed(NamedTuple):
    """A record the guard let through, with what the sink needs of it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Headers | None
    event_type: EventType
    payload: dict[str, Any] | None  # the decoded record, where the role keeps it (the archiver's)
    event_id: str


_new_passed = tuple.__new__


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

    def quarantine_headers(self, headers: Headers | None, source_topic: str,
                           stamp: Sequence[tuple[str, bytes]] = ()) -> list[tuple[str, bytes]]:
        return quarantine_headers(headers, self.reason, source_topic, stamp)


def value_free(event_type: EventType) -> bool:
    """True when no value of a record of this type can raise its grade: no field is graded above the record."""
    return event_type.schema_grade <= event_type.record_grade


_NO_VALUES: Mapping[str, Any] = {}


def judge(codec: AvroCodec, topic: str, value: bytes | None, destinations: str, destination: str,
          unread: frozenset[bytes] = frozenset()) -> tuple[EventType | None, dict[str, Any] | None, Verdict]:
    """The guard's verdict on one record, from its own decoding and the catalog's grades (fail closed: a record
    that does not decode is treated as the highest grade).

    A record of a fingerprint in `unread` (a `value_free` type) is only checked as decode would take it, not
    decoded: its grade is its record's whatever it holds. Its payload is then None.
    """
    if value is None:
        return None, None, Verdict(False, Grade.IMPORTANT, "record has no value", leak=True)
    try:
        event_type, payload = codec.decode_unless(value, unread) if unread else codec.decode(value)
    except CodecError as exc:
        return None, None, Verdict(False, Grade.IMPORTANT, f"does not decode: {exc.reason}", leak=True)
    graded = _NO_VALUES if payload is None else payload
    return event_type, payload, check_export(event_type, graded, topic, destinations, destination)


class _Known:
    """What every record let through of one event type, rules version and topic shares, computed once."""

    __slots__ = ("event_type", "decisions", "in_labels", "out_labels")

    def __init__(self, event_type: EventType, decisions: tuple[Template, ...], in_labels: tuple[str, ...],
                 out_labels: tuple[str, ...] | None) -> None:
        self.event_type, self.decisions, self.in_labels, self.out_labels = event_type, decisions, in_labels, out_labels


class GuardBatch:
    """What one batch of public-topic records turned into. The sink sends `allowed` (egress) or writes it
    (archiver), produces `quarantined` and `decision_records()`; after every one is acknowledged,
    `publish_metrics()` and commit."""

    __slots__ = ("now_ms", "role", "resume", "allowed", "quarantined", "decisions", "passed", "events_in",
                 "blocked", "occurred", "duplicates", "resumed", "not_wanted")

    def __init__(self, now_ms: int, role: Role, resume: Mapping[tuple[str, int], int]) -> None:
        self.now_ms = now_ms
        self.role = role
        self.resume = resume
        self.allowed: list[Passed] = []
        self.quarantined: list[Record] = []  # to `_hbus.quarantine`, never retried outward
        self.decisions = DecisionBatch(role.component, now_ms)
        self.passed: dict[_Known, int] = {}  # records let through, per what they share: counts expanded at the end
        self.events_in: dict[tuple[str, ...], int] = {}  # records not let through (and duplicates)
        self.blocked: dict[tuple[str, ...], int] = {}
        self.occurred: list[bytes] = []  # occurred-at headers of the records let through
        self.duplicates = 0  # let through before (same event id on the partition): dropped
        self.resumed = 0  # at or below the resume position: already on the other side
        self.not_wanted = 0  # public, but no rule sends it to this destination

    def decision_records(self) -> list[bytes]:
        return self.decisions.records()

    def counts(self) -> dict[Any, dict[tuple[str, ...], int]]:
        """Metric -> label values -> amount, for the whole batch."""
        events_in, events_out = dict(self.events_in), {}
        for known, records in self.passed.items():
            events_in[known.in_labels] = events_in.get(known.in_labels, 0) + records
            if known.out_labels is not None:
                events_out[known.out_labels] = events_out.get(known.out_labels, 0) + records
        return {metrics.EVENTS_IN: events_in, metrics.EVENTS_OUT: events_out, metrics.BOUNDARY_BLOCKED: self.blocked}

    def publish_metrics(self, done_ms: float | None = None) -> None:
        """Add the batch's counts to Prometheus, and the latency of what passed up to `done_ms` (default: now_ms)."""
        for metric, counts in self.counts().items():
            metrics.add_counts(metric, counts)
        metrics.observe_latencies(self.role.stage, self.occurred, self.now_ms if done_ms is None else done_ms)


class GuardStep:
    """The one boundary guard of a destination (`public_cloud` for egress, `archive` for the archiver)."""

    def __init__(self, codec: AvroCodec, destination: str, derived: Iterable[EventType] = (),
                 dedupe: DedupeWindow | None = None, catalog_digest: str = "",
                 stamped: frozenset[str] = frozenset()) -> None:
        self.codec = codec
        self.destination = destination
        self.role = ROLES[destination]
        self.stamped = stamped  # header names the sink stamps itself: a record's own values are left out of `Passed`
        self._set_digest(catalog_digest)
        self.dedupe = dedupe if dedupe is not None else DedupeWindow()
        self.log = logging.getLogger(f"hbus.{self.role.component}")
        self._derived: dict[tuple[str, int], EventType] = {}
        self._known: dict[tuple[int, bytes | None, str], _Known] = {}
        self.unread: frozenset[bytes] = frozenset()
        self.learn(derived)

    def learn(self, derived: Iterable[EventType]) -> None:
        """Derived public views are computed from the catalog and a rule set, never taken from a record."""
        for event_type in derived:
            ident = (event_type.key, event_type.version)
            if ident not in self._derived:
                self.codec.add(event_type)
                self._derived[ident] = event_type
        self._read_less()

    def _read_less(self) -> None:
        """Records of `value_free` types are checked, not decoded, where the role does not keep the values."""
        self.unread = frozenset() if self.role.keeps_payload else self.codec.fingerprints_of(value_free)

    def _set_digest(self, catalog_digest: str) -> None:
        self.catalog_digest = catalog_digest  # of the catalog `codec` knows: stamped on what it quarantines
        self._stamp = [(QUARANTINED_BY, self.role.component.encode())] + (
            [(CATALOG_DIGEST, catalog_digest.encode())] if catalog_digest else [])

    def use_codec(self, codec: AvroCodec, derived: Iterable[EventType], catalog_digest: str = "") -> None:
        """Judge with `codec` (a new catalog's) from the next batch on, with `derived`, the views of the new catalog
        and the rule sets in force; views learnt before stay known, as their records may still be on the way."""
        earlier = list(self._derived.values())
        self.codec, self._derived = codec, {}
        self._set_digest(catalog_digest)
        self._known.clear()
        self.learn(earlier)
        for event_type in derived:  # the new catalog's form of a view replaces the one learnt before
            codec.add(event_type)
            self._derived[(event_type.key, event_type.version)] = event_type
        self._read_less()

    def derived_types(self) -> list[EventType]:
        return list(self._derived.values())

    def begin(self, now_ms: int, resume: Mapping[tuple[str, int], int] | None = None) -> GuardBatch:
        """A new batch; `resume` maps (topic, partition) to the last source offset already on the other side."""
        return GuardBatch(now_ms, self.role, resume or {})

    def check_into(self, batch: GuardBatch, topic: str, partition: int, offset: int, key: bytes | None,
                   value: bytes | None, headers: Headers | None) -> Passed | None:
        """Judge one record into `batch`; the record to send or write when it may leave, else None."""
        if batch.resume and offset <= batch.resume.get((topic, partition), -1):
            batch.resumed += 1
            return None
        if headers:
            hdrs = dict(headers)
            exact = len(hdrs) == len(headers)
            if not exact:  # a name given twice: its last value that is not None counts
                hdrs = {k: v for k, v in headers if v is not None}
        else:
            hdrs, exact = {}, True
        event_id = event_id_of(hdrs, key)
        event_type, payload, verdict = judge(self.codec, topic, value, text(hdrs.get(H.DESTINATIONS)), self.destination,
                                             self.unread)
        if not verdict.allowed:
            outcome = GuardOutcome(False, verdict.leak, event_type, payload, verdict.grade, verdict.reason, event_id)
            labels = (self.role.component, outcome.dept, outcome.type_key(topic))
            batch.events_in[labels] = batch.events_in.get(labels, 0) + 1
            if outcome.leak:
                self._quarantine(batch, topic, partition, key, value, headers, outcome)
            else:
                batch.not_wanted += 1
            return None
        assert event_type is not None and value is not None
        # A header name given twice makes the first value the rules version, as the per-record form reads it.
        version = hdrs.get(H.RULES_VERSION) if exact else header(headers, H.RULES_VERSION).encode()
        ident = (id(event_type), version, topic)
        known = self._known.get(ident)
        if known is None or known.event_type is not event_type:
            if len(self._known) >= KNOWN_KEPT:
                self._known.clear()
            known = self._known[ident] = self._known_for(event_type, text(version), topic)
        if event_id and self.dedupe.seen((topic, partition), event_id):
            batch.duplicates += 1  # the router wrote this event again after a crash; it is already out
            batch.events_in[known.in_labels] = batch.events_in.get(known.in_labels, 0) + 1
            return None
        if self.stamped and not self.stamped.isdisjoint(hdrs):
            headers = [(k, v) for k, v in headers if k not in self.stamped]  # type: ignore[union-attr]
        # tuple.__new__ straight: a NamedTuple's own __new__ is a Python call, a tenth of this method's time.
        passed = _new_passed(Passed, (topic, partition, offset, key, value, headers, event_type,
                                      payload if self.role.keeps_payload else None, event_id))
        batch.allowed.append(passed)
        batch.decisions.rows.append((event_id, known.decisions))
        batch.passed[known] = batch.passed.get(known, 0) + 1
        occurred = hdrs.get(H.OCCURRED_AT)
        if occurred:
            batch.occurred.append(occurred)
        return passed

    def _known_for(self, event_type: EventType, version: str, topic: str) -> _Known:
        role, dept, key = self.role, event_type.dept, event_type.key
        decisions = ((key, dept, Grade.PUBLIC.id, version, self.destination, topic, role.verdict, "public"),)
        out = (role.component, dept, key, Grade.PUBLIC.id, self.destination) if role.counts_out else None
        return _Known(event_type, decisions, (role.component, dept, key), out)

    def quarantine_stamp(self, partition: int, grade: Grade) -> list[tuple[str, bytes]]:
        """What a quarantined copy carries for its review: whence exactly, which guard, what grade, which catalog."""
        return [(SOURCE_PARTITION, str(partition).encode()), (QUARANTINE_GRADE, grade.id.encode()), *self._stamp]

    def _quarantine(self, batch: GuardBatch, topic: str, partition: int, key: bytes | None, value: bytes | None,
                    headers: Headers | None, outcome: GuardOutcome) -> None:
        role, grade = self.role, outcome.grade.id
        type_key = outcome.type_key(topic)
        batch.quarantined.append((QUARANTINE_TOPIC, key, value, None, outcome.quarantine_headers(
            headers, topic, self.quarantine_stamp(partition, outcome.grade))))
        version = header(headers, H.RULES_VERSION)
        batch.decisions.rows.append((outcome.event_id, ((type_key, outcome.dept, grade, version, self.destination,
                                                         QUARANTINE_TOPIC, "quarantined", outcome.reason),)))
        labels = (role.component, outcome.dept, type_key, grade)
        batch.blocked[labels] = batch.blocked.get(labels, 0) + 1
        self.log.warning("event=boundary_block event_id=%s topic=%s grade=%s reason=%r", outcome.event_id, topic,
                         grade, outcome.reason)

    def check(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | None,
              destination: str | None = None) -> GuardOutcome:
        """The verdict on one record alone, without a batch (no dedupe, no counts)."""
        hdrs = header_map(headers)
        event_type, payload, verdict = judge(self.codec, topic, value, text(hdrs.get(H.DESTINATIONS)),
                                             destination or self.destination)
        return GuardOutcome(verdict.allowed, verdict.leak, event_type, payload, verdict.grade, verdict.reason,
                            event_id_of(hdrs, key))

