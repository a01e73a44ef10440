"""Quarantine review: what the boundary guard kept on `_hbus.quarantine`, and its release by two people once a
catalog or rules change makes it public — put back on its private `public.*` topic, so egress and the archiver
judge it again with their own guard and their own event-id dedupe (it is never sent outward from here).

An operator proposes (`hbus quarantine release ID`), an approver who is someone else releases
(`hbus quarantine approve ID`); each signs in Vault Transit with their own login, and every step, refusals
included, goes onto the audit chain with their name. Nothing here prints a field value.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hybridbus.adapters import kafka
from hybridbus.adapters.config import Settings, settings
from hybridbus.adapters.producer import BatchProducer
from hybridbus.adapters.topology import CONTROL_TOPIC, PRIVATE, QUARANTINE_TOPIC
from hybridbus.adapters.vault import BOUNDARY_KEY, RULES_APPROVER_KEY, PersonToken, Transit
from hybridbus.ops.catalogapply import catalog_in_force
from hybridbus.ops.governance import record_act
from hybridbus.ops.people import NotAllowed, require
from hybridbus.ops.stack.bootstrap import APPROVER, OPERATOR
from hybridbus.runtime.guard_step import GuardStep
from hybridbus.runtime.guarded import FollowedGuard
from hybridbus.runtime.records import (
    CATALOG_DIGEST,
    QUARANTINE_GRADE,
    QUARANTINE_HEADERS,
    QUARANTINED_BY,
    SOURCE_PARTITION,
    event_id_of,
    header_map,
)
from hybridbus.runtime.rulesigning import RuleCheck, Signature
from hybridbus.runtime.rulestore import LIVE, RuleFeed, latest_records, write_raw
from routing import governance as G
from routing import headers as H
from routing.boundary import PUBLIC_CLOUD
from routing.catalog import grade_reasons
from routing.grades import Grade, highest

REVIEW_PREFIX = "release/"  # `release/<record digest>` on `_hbus.control`: a release proposed, approved, done
COMPONENT = "quarantine"  # the audit chain's component of the acts below
ID_PREFIX = 8  # characters of a record digest that name it


class ReleaseRefused(NotAllowed):
    """A release the rules of the review do not allow; `reason` is one of `routing.governance.RELEASE_REFUSALS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"release refused ({reason}): {detail}")
        self.reason = reason


@dataclass(frozen=True)
class QuarantinedCopy:
    """One copy of a record on `_hbus.quarantine`, as one guard (egress or the archiver) kept it."""

    source_topic: str
    source_partition: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]  # the record's own headers, without what the quarantine added
    event_id: str
    reason: str
    by: str  # the guard's component
    grade: str  # what it graded the record then
    catalog_digest: str  # of the catalog it judged under ("" when not stamped)
    at_ms: int  # when it was quarantined (the quarantine record's timestamp)

    @property
    def digest(self) -> str:
        """What the record is, whoever kept it: its topic, key, value and headers (the review is bound to it)."""
        body = hashlib.sha256()
        for part in (self.source_topic.encode(), self.key or b"", self.value or b"",
                     json.dumps([[k, v.hex()] for k, v in self.headers]).encode()):
            body.update(len(part).to_bytes(8, "big") + part)
        return body.hexdigest()


def copy_from(topic_key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]] | None,
              at_ms: int) -> QuarantinedCopy:
    """A `_hbus.quarantine` record read back: its own headers apart from the guard's additions."""
    own = tuple((k, v) for k, v in headers or () if k not in QUARANTINE_HEADERS and v is not None)
    added = header_map([(k, v) for k, v in headers or () if k in QUARANTINE_HEADERS])

    def text(name: str) -> str:
        return added.get(name, b"").decode("utf-8", "replace")

    partition = text(SOURCE_PARTITION)
    return QuarantinedCopy(text(H.SOURCE_TOPIC), int(partition) if partition.isdigit() else None, topic_key, value,
                           own, event_id_of(header_map(own), topic_key), text(H.DLQ_REASON), text(QUARANTINED_BY),
                           text(QUARANTINE_GRADE), text(CATALOG_DIGEST), at_ms)


@dataclass(frozen=True)
class Entry:
    """A quarantined record: every copy of the same bytes (egress's and the archiver's), oldest first."""

    copies: tuple[QuarantinedCopy, ...]

    @property
    def record(self) -> QuarantinedCopy:
        return self.copies[0]

    @property
    def digest(self) -> str:
        return self.record.digest

    @property
    def event_id(self) -> str:
        return self.record.event_id

    @property
    def quarantined_at_ms(self) -> int:
        """The newest copy's time: a change counts only when it came after every guard kept it."""
        return max(c.at_ms for c in self.copies)

    def summary(self) -> dict[str, Any]:
        """What `list` and `show` print: ids, reasons, times, sizes and grades — never a field value."""
        return {"id": self.digest[:12], "digest": self.digest, "event_id": self.event_id,
                "event_type": header_map(self.record.headers).get(H.EVENT_TYPE, b"").decode("utf-8", "replace"),
                "source_topic": self.record.source_topic, "by": sorted({c.by for c in self.copies}),
                "grade": highest(Grade.parse_or_highest(c.grade) for c in self.copies).id,
                "reason": self.record.reason, "quarantined_at_ms": self.quarantined_at_ms,
                "bytes": len(self.record.value or b"")}


def group(copies: Iterable[QuarantinedCopy]) -> list[Entry]:
    """Copies of the same record together, in the order they were first quarantined."""
    found: dict[str, list[QuarantinedCopy]] = {}
    for copy in sorted(copies, key=lambda c: c.at_ms):
        found.setdefault(copy.digest, []).append(copy)
    return [Entry(tuple(c)) for c in found.values()]


def find(entries: Sequence[Entry], ident: str) -> Entry:
    """The one record named by its event id or by at least ID_PREFIX characters of its digest."""
    hits = [e for e in entries if e.event_id == ident or (len(ident) >= ID_PREFIX and e.digest.startswith(ident))]
    if len(hits) != 1:
        more = "; name it by its digest (hbus quarantine list)" if hits else ""
        raise NotAllowed(f"no single quarantined record {ident}: {len(hits)} found{more}")
    return hits[0]


@dataclass(frozen=True)
class Review:
    """A release under review, kept on `_hbus.control` under `release/<digest>` (the newest state wins)."""

    digest: str
    event_id: str
    proposer: str
    proposed_at_ms: int
    signature: str  # the proposer's, over `routing.governance.release_statement`, with the operators' key
    approval: Signature | None = None
    released_at_ms: int = 0  # 0 while it waits for an approver

    @property
    def released(self) -> bool:
        return self.released_at_ms > 0

    def statement(self) -> bytes:
        return G.release_statement(self.digest, self.event_id, self.proposed_at_ms, self.proposer)

    def to_bytes(self) -> bytes:
        return json.dumps({"kind": "quarantine-release", "digest": self.digest, "event_id": self.event_id,
                           "proposer": self.proposer, "proposed_at_ms": self.proposed_at_ms,
                           "signature": self.signature, "released_at_ms": self.released_at_ms,
                           "approval": self.approval.to_json() if self.approval else None}).encode()

    @classmethod
    def from_bytes(cls, value: bytes) -> Review:
        body = json.loads(value)
        approval = body.get("approval")
        return cls(str(body["digest"]), str(body.get("event_id", "")), str(body.get("proposer", "")),
                   int(body.get("proposed_at_ms", 0)), str(body.get("signature", "")),
                   Signature.from_json(approval) if isinstance(approval, dict) else None,
                   int(body.get("released_at_ms", 0)))


@dataclass(frozen=True)
class Assessment:
    """The guard's second look at a quarantined record, under the current catalog and rules."""

    public_now: bool
    grade_now: str
    reason_now: str
    event_type: str
    grade_reasons: tuple[str, ...]  # which fields raise the grade: names and grades only
    refusal: str | None  # why it may not be released (routing.governance), None: it may

    def as_dict(self) -> dict[str, Any]:
        return {"public_now": self.public_now, "grade_now": self.grade_now, "reason_now": self.reason_now,
                "event_type": self.event_type, "grade_reasons": list(self.grade_reasons), "refusal": self.refusal}


def assess(entry: Entry, guard: GuardStep, live_applied_at_ms: int | None) -> Assessment:
    """Re-run the real guard on the record's own bytes and headers, as egress would read them from its topic."""
    record = entry.record
    outcome = guard.check(record.source_topic, record.key, record.value, list(record.headers), PUBLIC_CLOUD)
    public_now = not outcome.leak and outcome.event_type is not None
    reasons = tuple(grade_reasons(outcome.event_type, outcome.payload)) if outcome.event_type is not None else ()
    refusal = G.release_refusal(public_now, entry.quarantined_at_ms, [c.catalog_digest for c in entry.copies],
                                guard.catalog_digest, live_applied_at_ms)
    return Assessment(public_now, outcome.grade.id, "public" if public_now else outcome.reason,
                      outcome.type_key(record.source_topic), reasons, refusal)


# --- reading ------------------------------------------------------------------------------------------------------

def entries(cfg: Settings | None = None) -> list[Entry]:
    """Every record on `_hbus.quarantine`, its copies together."""
    cfg = cfg or settings()
    return group(copy_from(m.key(), m.value(), m.headers(), m.timestamp()[1])
                 for m in kafka.read_all(PRIVATE, kafka.admin_credentials(PRIVATE, cfg), QUARANTINE_TOPIC,
                                         "hbus-quarantine-cli"))


def reviews(cfg: Settings | None = None) -> dict[str, Review]:
    """Record digest -> its review, as last written."""
    cfg = cfg or settings()
    found = latest_records(kafka.admin_credentials(PRIVATE, cfg), REVIEW_PREFIX, topic=CONTROL_TOPIC)
    return {k.removeprefix(REVIEW_PREFIX): Review.from_bytes(v) for k, v in found.items()}


def second_look(entry: Entry, check: RuleCheck | None, cfg: Settings) -> Assessment:
    """The current catalog and the rule sets in force (verified with `check`; unverified, for a first look by
    someone whose duty does not verify rule sets), through the processors' own guard."""
    catalog = catalog_in_force(cfg).catalog()
    feed = RuleFeed(kafka.admin_credentials(PRIVATE, cfg), check)
    try:
        guard = FollowedGuard(catalog, feed.load(), PUBLIC_CLOUD).guard
        live = feed.in_force.get(LIVE)
    finally:
        feed.close()
    return assess(entry, guard, live.applied_at_ms if live is not None else None)


# --- the two people's acts ------------------------------------------------------------------------------------

def _act(verdict: str, entry: Entry, person: PersonToken, reason: str, at_ms: int | None = None,
         assessment: Assessment | None = None) -> None:
    record_act(COMPONENT, verdict, "", "release", f"{reason}; record {entry.digest[:12]}",
               at_ms or int(time.time() * 1000), person.name, topic=entry.record.source_topic,
               event_id=entry.event_id, event_type=assessment.event_type if assessment else "",
               grade=assessment.grade_now if assessment else "")


def _refuse(reason: str, detail: str, entry: Entry, person: PersonToken,
            assessment: Assessment | None = None) -> ReleaseRefused:
    """A refusal is an act too: on the audit chain with who asked, then raised."""
    _act("quarantine_release_refused", entry, person, f"{reason}: {detail}", assessment=assessment)
    return ReleaseRefused(reason, detail)


def _require(person: PersonToken, duty: str, entry: Entry) -> None:
    """The person holds the duty of the step, or the refusal is on the audit chain (someone tried)."""
    try:
        require(person, duty)
    except NotAllowed as exc:
        raise _refuse(G.WRONG_ROLE, str(exc), entry, person) from None


def propose_release(ident: str, person: PersonToken, cfg: Settings | None = None) -> tuple[Review, Assessment]:
    """An operator puts a quarantined record up for release; refused (and recorded) when the guard would still
    refuse it or nothing changed since it was quarantined."""
    cfg = cfg or settings()
    entry = find(entries(cfg), ident)
    _require(person, OPERATOR, entry)
    review = reviews(cfg).get(entry.digest)
    if review is not None and review.released:
        raise _refuse(G.ALREADY_RELEASED, f"released by {review.approval.signer if review.approval else '?'}",
                      entry, person)
    # An operator's login does not verify rule-set signatures: this look is the operator's; the approver's decides.
    assessment = second_look(entry, None, cfg)
    if assessment.refusal is not None:
        raise _refuse(assessment.refusal, _why(assessment), entry, person, assessment)
    at_ms = int(time.time() * 1000)
    signature = Transit(person.client(cfg)).sign(
        G.release_statement(entry.digest, entry.event_id, at_ms, person.name), BOUNDARY_KEY)
    review = Review(entry.digest, entry.event_id, person.name, at_ms, signature)
    write_raw(REVIEW_PREFIX + entry.digest, review.to_bytes(), kafka.admin_credentials(PRIVATE, cfg), CONTROL_TOPIC)
    _act("quarantine_release_proposed", entry, person, "the guard grades it public now", at_ms, assessment)
    return review, assessment


def approve_release(ident: str, person: PersonToken, cfg: Settings | None = None) -> tuple[Review, Assessment]:
    """An approver, not the proposer, releases the record: the proposer's signature is checked in Vault, the guard
    looks again (rule sets verified with the approver's login), then the record goes back to its topic."""
    cfg = cfg or settings()
    entry = find(entries(cfg), ident)
    _require(person, APPROVER, entry)
    review = reviews(cfg).get(entry.digest)
    signer = Transit(person.client(cfg))
    valid = review is not None and bool(review.proposer) and signer.signature_valid(
        review.statement(), review.signature, BOUNDARY_KEY)
    refusal = G.approval_refusal(review.proposer if review else "", person.name, valid,
                                 review is not None and review.released)
    if refusal is not None:
        detail = {G.NOT_PROPOSED: "an operator must propose it first (hbus quarantine release ID)",
                  G.SAME_PERSON: "a second person must approve it"}.get(refusal, "see the review record")
        raise _refuse(refusal, detail, entry, person)
    assert review is not None
    assessment = second_look(entry, RuleCheck(signer, "cli", catalog_in_force(cfg).catalog()), cfg)
    if assessment.refusal is not None:
        raise _refuse(assessment.refusal, _why(assessment), entry, person, assessment)
    approval = Signature(G.APPROVER, person.name, signer.sign(
        G.release_approval_statement(entry.digest, entry.event_id, person.name), RULES_APPROVER_KEY))
    _act("quarantine_release_approved", entry, person, f"proposed by {review.proposer}", assessment=assessment)
    put_back(entry, cfg)
    released = Review(review.digest, review.event_id, review.proposer, review.proposed_at_ms, review.signature,
                      approval, int(time.time() * 1000))
    write_raw(REVIEW_PREFIX + entry.digest, released.to_bytes(), kafka.admin_credentials(PRIVATE, cfg), CONTROL_TOPIC)
    _act("quarantine_released", entry, person, f"back on {entry.record.source_topic} for the guard; proposed by "
         f"{review.proposer}", released.released_at_ms, assessment)
    return released, assessment


def put_back(entry: Entry, cfg: Settings) -> None:
    """The original record onto the private topic and partition it came from: egress and the archiver judge it
    again, and their event-id dedupe keeps a second release (or a replay) off the public side."""
    record = entry.record
    outputs = BatchProducer.connect(PRIVATE, kafka.admin_credentials(PRIVATE, cfg), "quarantine",
                                    **{"message.timeout.ms": 30_000})
    outputs.send(record.source_topic, record.key, record.value, record.source_partition, list(record.headers))
    outputs.confirm()


def _why(assessment: Assessment) -> str:
    if assessment.refusal == G.STILL_NOT_PUBLIC:
        return f"the guard still refuses it under the current catalog and rules: {assessment.reason_now}"
    return "no catalog or rules change was applied since it was quarantined"


def review_state(review: Review | None) -> str:
    """One word for `list`: waiting for a proposal, for an approver, or released."""
    if review is None:
        return "quarantined"
    return "released" if review.released else f"proposed by {review.proposer}"


def with_reviews(found: Sequence[Entry], known: Mapping[str, Review]) -> list[dict[str, Any]]:
    return [{**e.summary(), "state": review_state(known.get(e.digest))} for e in found]
