"""The audit trail's hash chain: entries, checkpoints, segments and the walk that verifies them. No I/O.

One chain, totally ordered: every entry holds the hash of the one before it; a signed checkpoint closes a segment.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from json.encoder import encode_basestring as _json_string  # json.dumps' own escaping (ensure_ascii=False)
from typing import Any

GENESIS = "0" * 64
DECISION = "decision"
CHECKPOINT = "checkpoint"
REASON_LIMIT = 200  # characters: a reason names a rule or a grade, never a payload value

# The only decision fields an entry copies: ids, grades and verdicts. A payload never gets into the chain.
DECISION_FIELDS = ("component", "event_id", "event_type", "dept", "grade", "rules_version", "destination", "topic",
                   "verdict", "reason", "actor", "at_ms")
# Verdicts meaning "left the private cloud for the public side".
PUBLISHED = ("exported", "archived")
# Verdicts of the rules and secrets tools: changes to how the bus decides.
# People's acts on what the guard quarantined (`hbus quarantine release|approve`).
QUARANTINE_ACTS = ("quarantine_release_proposed", "quarantine_release_approved", "quarantine_released",
                   "quarantine_release_refused")
RULE_CHANGES = ("rules_proposed", "rules_approved", "rules_applied", "shadow_applied", "shadow_withdrawn",
                "boundary_closed", "boundary_open", *QUARANTINE_ACTS)

Position = tuple[int, int]  # (offset on its `_hbus.decisions` partition, index in that record's array)


def canonical(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def entry_hash(entry: Mapping[str, Any]) -> str:
    """SHA-256 over every field but `hash` itself, `prev` included: that is what links the chain."""
    return hashlib.sha256(canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


def checkpoint_message(covers: int, head: str) -> bytes:
    """What a checkpoint signs: the last entry it covers and that entry's hash (so, the whole chain before it)."""
    return f"hbus-audit:{covers}:{head}".encode()


def decision_fields(decision: Mapping[str, Any]) -> dict[str, Any]:
    """The whitelisted fields of one `_hbus.decisions` item; anything else it carries is dropped.

    A time that is not a number becomes 0, and a character UTF-8 cannot encode (a lone surrogate) becomes `?`:
    either used to stop the writer at every restart, so such a decision could never be chained.
    """
    fields = {name: _text(decision.get(name, "")) for name in DECISION_FIELDS}
    fields["at_ms"] = _millis(decision.get("at_ms"))
    fields["reason"] = fields["reason"][:REASON_LIMIT]
    return fields


def _text(value: Any) -> str:
    text = str(value)
    return text if text.isascii() else text.encode("utf-8", "replace").decode("utf-8")


def _millis(value: Any) -> int:
    try:
        return int(value or 0)
    except (ValueError, TypeError, OverflowError):
        return 0


# A decision entry's canonical JSON spelled out, keys in sorted order, split where `hash` goes; with json's own
# string escaping this is byte for byte `canonical(entry)` (a unit test holds the two together) at a fraction of
# its cost, which is most of the writer's work per entry.
_BEFORE_HASH = ('{"actor":%s,"at_ms":%d,"component":%s,"dept":%s,"destination":%s,"event_id":%s,"event_type":%s,'
                '"grade":%s,')
_AFTER_HASH = ('"kind":"decision","prev":%s,"reason":%s,"rules_version":%s,"seq":%d,"src":[%d,%d,%d],"topic":%s,'
               '"verdict":%s}')


def _decision_entry(seq: int, prev: str, partition: int, position: Position,
                    decision: Mapping[str, Any]) -> tuple[bytes, str] | None:
    """The stored bytes and hash of a decision entry, or None for input the plain path must handle."""
    get = decision.get
    try:
        before = (_BEFORE_HASH % (
            _json_string(str(get("actor", ""))), int(get("at_ms") or 0), _json_string(str(get("component", ""))),
            _json_string(str(get("dept", ""))), _json_string(str(get("destination", ""))),
            _json_string(str(get("event_id", ""))), _json_string(str(get("event_type", ""))),
            _json_string(str(get("grade", ""))))).encode()
        after = (_AFTER_HASH % (
            _json_string(prev), _json_string(str(get("reason", ""))[:REASON_LIMIT]),
            _json_string(str(get("rules_version", ""))), seq, partition, position[0], position[1],
            _json_string(str(get("topic", ""))), _json_string(str(get("verdict", ""))))).encode()
    except (UnicodeEncodeError, ValueError, TypeError, OverflowError):
        return None
    digest = hashlib.sha256(before + after).hexdigest()
    return b"".join((before, b'"hash":"', digest.encode(), b'",', after)), digest


@dataclass
class Chain:
    """The head of the chain as the writer holds it: next sequence number, last hash, and what is chained."""

    seq: int = 0
    head: str = GENESIS
    positions: dict[int, Position] = field(default_factory=dict)  # per decisions partition, last chained
    since_checkpoint: int = 0

    def chained(self, partition: int, position: Position) -> bool:
        """True when the decision at `position` is already in the chain (a replay after a restart)."""
        last = self.positions.get(partition)
        return last is not None and position <= last

    def _link(self, body: dict[str, Any]) -> bytes:
        entry = {"seq": self.seq, "prev": self.head, **body}
        entry["hash"] = entry_hash(entry)
        self.seq, self.head = self.seq + 1, entry["hash"]
        return canonical(entry)

    def append(self, partition: int, position: Position, decision: Mapping[str, Any]) -> bytes:
        """The next entry, for the decision at `position` of `partition`, as it is stored (canonical JSON)."""
        linked = _decision_entry(self.seq, self.head, partition, position, decision)
        if linked is None:
            raw = self._link({"kind": DECISION, "src": [partition, *position], **decision_fields(decision)})
        else:
            raw, self.head = linked
            self.seq += 1
        self.positions[partition] = position
        self.since_checkpoint += 1
        return raw

    def checkpoint(self, signature: str, at_ms: int) -> bytes:
        """Close the segment: `signature` is over `checkpoint_message(self.seq - 1, self.head)`."""
        raw = self._link({"kind": CHECKPOINT, "covers": self.seq - 1, "head": self.head, "signature": signature,
                          "positions": {str(p): list(pos) for p, pos in sorted(self.positions.items())},
                          "at_ms": at_ms})
        self.since_checkpoint = 0
        return raw

    def follow(self, entry: Mapping[str, Any]) -> None:
        """Take `entry`, the next one stored, as the head: followed from any checkpoint on, this is the chain's."""
        self.seq, self.head = int(entry["seq"]) + 1, str(entry["hash"])
        if entry.get("kind") == CHECKPOINT:
            self.positions = {int(p): (int(pos[0]), int(pos[1])) for p, pos in entry["positions"].items()}
            self.since_checkpoint = 0
        else:
            partition, offset, index = entry["src"]
            self.positions[int(partition)] = (int(offset), int(index))
            self.since_checkpoint += 1

    @classmethod
    def resume(cls, entries: Iterable[Mapping[str, Any]]) -> Chain:
        """The head after `entries`: the chain's tail from its last checkpoint (or its start) to its end."""
        chain = cls()
        for entry in entries:
            chain.follow(entry)
        return chain


Signer = Callable[[bytes], str | None]  # a signature over a checkpoint message, or None while it cannot sign


@dataclass(frozen=True)
class Appended:
    """What one step added to the chain: its entries in order, as they are to be stored."""

    entries: list[bytes]
    decisions: int
    checkpoints_at_ms: list[int]


class Appender:
    """Turns decision records into chain entries: skips what is already chained, links each decision, and closes
    a segment with a signed checkpoint once `every` entries wait. No I/O: signing and the clock are handed in.

    While `sign` cannot sign (None), decisions go on being chained and the next entry asks again.
    """

    def __init__(self, chain: Chain, sign: Signer, every: int, now_ms: Callable[[], int]) -> None:
        self.chain = chain
        self.sign = sign
        self.every = every
        self.now_ms = now_ms

    def append(self, records: Iterable[tuple[int, int, Sequence[Mapping[str, Any]]]]) -> Appended:
        """Chain the decisions of `(partition, offset, decisions)` records, in order."""
        chain, entries, checkpoints, decisions = self.chain, [], [], 0
        for partition, offset, items in records:
            for index, decision in enumerate(items):
                if chain.chained(partition, (offset, index)):
                    continue  # chained before a restart
                entries.append(chain.append(partition, (offset, index), decision))
                decisions += 1
                if chain.since_checkpoint >= self.every:
                    self._checkpoint(entries, checkpoints)
        return Appended(entries, decisions, checkpoints)

    def close(self) -> Appended:
        """A checkpoint now, if any entry waits for one (and it can be signed)."""
        entries: list[bytes] = []
        checkpoints: list[int] = []
        if self.chain.since_checkpoint:
            self._checkpoint(entries, checkpoints)
        return Appended(entries, 0, checkpoints)

    def _checkpoint(self, entries: list[bytes], checkpoints: list[int]) -> None:
        signature = self.sign(checkpoint_message(self.chain.seq - 1, self.chain.head))
        if signature is not None:
            at_ms = self.now_ms()
            entries.append(self.chain.checkpoint(signature, at_ms))
            checkpoints.append(at_ms)


# --- verification -----------------------------------------------------------------------------------

EDITED, DELETED, INSERTED, REORDERED, BAD_SIGNATURE, UNREADABLE = (
    "edited", "deleted", "inserted", "reordered", "bad_signature", "unreadable")


@dataclass(frozen=True)
class Located:
    """One stored entry and where it was read: a Kafka offset, or an archived segment's object and line."""

    where: str
    raw: bytes

    def parse(self) -> dict[str, Any] | None:
        try:
            entry = json.loads(self.raw)
        except ValueError:
            return None
        return entry if isinstance(entry, dict) and isinstance(entry.get("seq"), int) else None


@dataclass(frozen=True)
class Finding:
    kind: str  # edited | deleted | inserted | reordered | bad_signature | unreadable
    seq: int | None
    where: str
    detail: str

    def __str__(self) -> str:
        seq = f"entry {self.seq}" if self.seq is not None else "entry"
        return f"{self.kind}: {seq} at {self.where}: {self.detail}"


@dataclass(frozen=True)
class Verdict:
    entries: int
    checkpoints: int
    first_seq: int | None
    last_seq: int | None
    unsigned_tail: int  # entries after the last checkpoint: only as safe as the topic's ACLs until the next one
    finding: Finding | None

    @property
    def ok(self) -> bool:
        return self.finding is None


SignatureCheck = Callable[[bytes, str], bool]


def verify(located: Iterable[Located], signature_ok: SignatureCheck, anchor: Mapping[str, Any] | None = None) -> Verdict:
    """Walk the chain in stored order and report the first tampering found.

    `anchor` is the entry just before the first one (None: the chain starts at its genesis, or wherever the
    stored entries start when they are a later part of it). Classification is by sequence number and links:
    a bad own hash is an edit; a gap whose entries turn up later is a reordering, otherwise a deletion; an entry
    that repeats a sequence number or does not link into the chain that continues after it is an insertion;
    an entry whose own hash is right but that the next one does not link to was edited and re-hashed.
    """
    items = list(located)
    parsed = [item.parse() for item in items]
    stored_at = {entry["seq"]: index for index, entry in enumerate(parsed) if entry is not None}  # last place
    last: Mapping[str, Any] | None = anchor
    last_where = "anchor"
    counted = checkpoints = unsigned = 0
    first_seq = None

    def verdict(finding: Finding | None) -> Verdict:
        return Verdict(counted, checkpoints, first_seq, last["seq"] if last else None, unsigned, finding)

    if anchor is not None and (entry_hash(anchor) != anchor.get("hash") or anchor.get("kind") == CHECKPOINT and not
                               signature_ok(checkpoint_message(anchor["covers"], anchor["head"]), anchor["signature"])):
        return verdict(Finding(EDITED, anchor.get("seq"), "anchor", "the entry the walk starts from does not verify"))

    for index, (item, entry) in enumerate(zip(items, parsed)):
        if entry is None:
            return verdict(Finding(UNREADABLE, None, item.where, "not a chain entry"))
        seq = entry["seq"]
        if entry_hash(entry) != entry.get("hash"):
            return verdict(Finding(EDITED, seq, item.where, "its content does not match its own hash"))
        if last is None:  # the stored part may start mid-chain: its first entry is taken as given
            if seq == 0 and entry.get("prev") != GENESIS:
                return verdict(Finding(EDITED, seq, item.where, "the chain's first entry does not start it"))
        else:
            expected = last["seq"] + 1
            if seq > expected:
                moved = [s for s in range(expected, seq) if stored_at.get(s, -1) > index]
                if moved:
                    return verdict(Finding(REORDERED, moved[0], item.where,
                                           f"entry {moved[0]} is stored after entry {seq}"))
                missing = f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}"
                return verdict(Finding(DELETED, expected, item.where,
                                       f"entry {missing} missing between entry {last['seq']} and entry {seq}"))
            if seq < expected:
                return verdict(_repeated(entry, item.where, last, last_where, parsed, index))
            if entry.get("prev") != last["hash"]:
                return verdict(_unlinked(entry, item.where, last, last_where, parsed, index))
        if entry.get("kind") == CHECKPOINT:
            if entry.get("covers") != seq - 1 or (last is not None and entry.get("head") != last["hash"]):
                return verdict(Finding(EDITED, seq, item.where, "checkpoint does not cover the entry before it"))
            if not signature_ok(checkpoint_message(entry["covers"], entry["head"]), str(entry.get("signature", ""))):
                return verdict(Finding(BAD_SIGNATURE, seq, item.where, "checkpoint signature does not verify"))
            checkpoints += 1
            unsigned = 0
        else:
            counted += 1
            unsigned += 1
        first_seq = seq if first_seq is None else first_seq
        last, last_where = entry, item.where
    return verdict(None)


def _repeated(entry: Mapping[str, Any], where: str, last: Mapping[str, Any], last_where: str,
              parsed: Sequence[Mapping[str, Any] | None], index: int) -> Finding:
    """An entry whose sequence number was already taken: it, or the one that took the number, is extra."""
    seq = entry["seq"]
    nxt = parsed[index + 1] if index + 1 < len(parsed) else None
    if seq == last["seq"] and nxt is not None and nxt.get("prev") == entry["hash"]:
        # The chain continues from this entry: the one stored before it with the same number was slipped in.
        return Finding(INSERTED, last["seq"], last_where, f"entry {seq} is not the one the chain continues from")
    return Finding(INSERTED, seq, where, f"entry {seq} repeats a sequence number already in the chain")


def _unlinked(entry: Mapping[str, Any], where: str, last: Mapping[str, Any], last_where: str,
              parsed: Sequence[Mapping[str, Any] | None], index: int) -> Finding:
    """A well-formed entry whose `prev` is not the hash before it: it was slipped in, or its predecessor re-hashed."""
    seq = entry["seq"]
    nxt = parsed[index + 1] if index + 1 < len(parsed) else None
    if nxt is not None and nxt.get("seq") == seq and nxt.get("prev") == last["hash"]:
        return Finding(INSERTED, seq, where, f"entry {seq} does not link to entry {last['seq']}; the next one does")
    return Finding(EDITED, last["seq"], last_where,
                   f"entry {seq} does not link to it: it was changed and its hash recomputed")


def window(entries: Sequence[Mapping[str, Any]], from_ms: int | None, to_ms: int | None) -> tuple[int, int]:
    """The index range `[start, end)` to verify for a time window, widened to whole segments.

    It starts after the last checkpoint signed before `from_ms` (that checkpoint becomes the anchor) and ends
    with the first checkpoint signed at or after `to_ms`.
    """
    start, end = 0, len(entries)
    for index, entry in enumerate(entries):
        if entry.get("kind") != CHECKPOINT:
            continue
        if from_ms is not None and entry["at_ms"] < from_ms:
            start = index + 1
        if to_ms is not None and entry["at_ms"] >= to_ms:
            end = index + 1
            break
    return start, end


# --- segments, as archived ----------------------------------------------------------------------------

SEGMENT_PREFIX = "chain/dt="
SEQ_WIDTH = 12


def segment_day(closed_at_ms: int) -> str:
    """The UTC day a segment is filed under: the day its checkpoint was signed."""
    return datetime.fromtimestamp(closed_at_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


def segment_name(day: str, first_seq: int, last_seq: int) -> str:
    """Deterministic: a segment is named by its day and the entries it holds, so a retry rewrites the same object."""
    return f"{SEGMENT_PREFIX}{day}/{first_seq:0{SEQ_WIDTH}d}-{last_seq:0{SEQ_WIDTH}d}.jsonl"


def manifest_key(day: str) -> str:
    """One manifest per day, so that each update rewrites one day's list, not the whole archive's."""
    return f"{SEGMENT_PREFIX}{day}/manifest.json"


def closes_segment(raw: bytes) -> bool:
    """Whether a stored entry is a checkpoint, the last entry of its segment.

    Only an entry that holds the word (or a JSON escape that could spell it) is parsed: the archive asks this of
    every entry it copies, and few are checkpoints.
    """
    if b"checkpoint" not in raw and b"\\u" not in raw:
        return False
    try:
        entry = json.loads(raw)
    except ValueError:
        return False
    return isinstance(entry, dict) and entry.get("kind") == CHECKPOINT


def closed_segments(entries: Sequence[tuple[int, bytes]]) -> list[tuple[int, list[tuple[int, bytes]]]]:
    """Split `(offset, raw entry)` pairs into segments that each end with a checkpoint; an open tail is left out.

    Returns `(next offset after the segment, its entries)` per segment.
    """
    segments, current = [], []
    for offset, raw in entries:
        current.append((offset, raw))
        if closes_segment(raw):
            segments.append((offset + 1, current))
            current = []
    return segments


def archive_batches(segments: Sequence[tuple[int, list[tuple[int, bytes]]]],
                    max_entries: int) -> list[tuple[int, list[tuple[int, bytes]]]]:
    """Consecutive closed segments joined into objects of at most `max_entries` entries, never across the UTC
    day of their closing checkpoints; a segment longer than that stays whole. Each object still ends with a
    signed checkpoint, and the checkpoints inside it are checked as the walk passes them.
    """
    batches: list[tuple[int, list[tuple[int, bytes]], str]] = []
    for end_offset, items in segments:
        day = segment_day(json.loads(items[-1][1])["at_ms"])
        if batches and batches[-1][2] == day and len(batches[-1][1]) + len(items) <= max_entries:
            batches[-1][1].extend(items)
            batches[-1] = (end_offset, batches[-1][1], day)
        else:
            batches.append((end_offset, list(items), day))
    return [(end_offset, items) for end_offset, items, _ in batches]


def segment_record(name: str, body: bytes, first: Mapping[str, Any], closing: Mapping[str, Any], entries: int,
                   end_offset: int) -> dict[str, Any]:
    """The manifest line of one segment (`entries` long, from `first` to its `closing` checkpoint): its range,
    times, digest and the checkpoint signature that closes it."""
    return {"name": name, "first_seq": first["seq"], "last_seq": closing["seq"], "entries": entries,
            "first_at_ms": first["at_ms"], "last_at_ms": closing["at_ms"],
            "sha256": hashlib.sha256(body).hexdigest(), "head": closing["head"], "signature": closing["signature"],
            "end_offset": end_offset}


# --- an auditor's questions ---------------------------------------------------------------------------

def decisions_between(entries: Iterable[Mapping[str, Any]], from_ms: int | None, to_ms: int | None) -> list[Mapping[str, Any]]:
    """Decision entries whose decision time is in `[from_ms, to_ms)`."""
    return [e for e in entries if e.get("kind") == DECISION
            and (from_ms is None or e["at_ms"] >= from_ms) and (to_ms is None or e["at_ms"] < to_ms)]


def published(entries: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """What left for the public side: exported to the public cluster or archived to the open-data bucket."""
    return [e for e in entries if e.get("verdict") in PUBLISHED]


def published_counts(entries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Counts per department, event type, rule-set version and destination, largest first."""
    counts: dict[tuple[str, str, str, str], int] = {}
    for e in published(entries):
        key = (e["dept"], e["event_type"], e["rules_version"], e["destination"])
        counts[key] = counts.get(key, 0) + 1
    rows = [{"dept": k[0], "event_type": k[1], "rules_version": k[2], "destination": k[3], "events": n}
            for k, n in counts.items()]
    return sorted(rows, key=lambda r: (-r["events"], r["dept"], r["event_type"], r["rules_version"], r["destination"]))


def event_history(entries: Iterable[Mapping[str, Any]], event_id: str) -> list[Mapping[str, Any]]:
    """Every decision about one event id, in chain order: routed, exported, archived, quarantined, redriven."""
    return [e for e in entries if e.get("kind") == DECISION and e.get("event_id") == event_id]


def rule_changes(entries: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Every rule set applied (live or shadow) or pilot withdrawn, with who and when, in chain order."""
    return [e for e in entries if e.get("verdict") in RULE_CHANGES]
