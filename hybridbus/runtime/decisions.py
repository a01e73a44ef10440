"""What the processors write to `_hbus.decisions` for the audit trail, and how a record of it is read back:
ids, grades and verdicts, never payload. One compact record per batch; persons' decisions stay JSON arrays.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DecisionRecord:
    """What is written to `_hbus.decisions` for the audit trail: ids and grades, never payload values."""

    component: str
    event_id: str
    event_type: str
    dept: str
    grade: str
    rules_version: str
    destination: str
    topic: str
    verdict: str  # routed | dlq | blocked | forged | exported | quarantined | archived
    reason: str
    at_ms: int
    actor: str = ""  # who acted, for decisions of people (rules applied, secrets rotated); "" for processors

    def to_bytes(self) -> bytes:
        return json.dumps(self.__dict__, ensure_ascii=False, separators=(",", ":")).encode()


DECISIONS_PER_RECORD = 400  # keeps one JSON-array record far below Kafka's 1 MB request limit


def decisions_batch(decisions: Sequence[DecisionRecord]) -> list[bytes]:
    """`_hbus.decisions` records of the older form, each a JSON array of up to DECISIONS_PER_RECORD decisions.

    Kept for the processors not yet on `DecisionBatch`; `decode_record` reads both forms.
    """
    return [json.dumps([d.__dict__ for d in decisions[i:i + DECISIONS_PER_RECORD]], ensure_ascii=False,
                       separators=(",", ":")).encode()
            for i in range(0, len(decisions), DECISIONS_PER_RECORD)]


# --- the compact form -----------------------------------------------------------------------------------------
#
# A record holds the decisions of many events of one component at one instant. Every decision is a Template: the
# fields of a DecisionRecord but the component, event id, time and actor. An event's decisions are a Shape (its
# templates, in order). Most events of a batch share a few shapes, computed once per plan, so the record holds
# each distinct string, template and shape once, and per event only its id and the index of its shape:
#
#   {"f": 2, "c": component, "at": at_ms,
#    "s": [string, ...],                 every distinct string of the templates
#    "t": [[8 string indexes], ...],     templates: event_type, dept, grade, rules_version, destination, topic,
#                                        verdict, reason
#    "p": [[template index, ...], ...],  shapes: the decisions of one event, in order
#    "e": [event id, ...], "x": [shape index, ...]}   one entry per event, in the batch's order
#
# The decoded form is exactly today's list of DecisionRecord dicts, one per decision, so the audit chain keeps the
# same facts and its (offset, index) positions count decisions as before.

FORMAT = 2
Template = tuple[str, str, str, str, str, str, str, str]  # event_type, dept, grade, rules_version, destination,
#                                                           topic, verdict, reason
Shape = tuple[Template, ...]
TEMPLATE_FIELDS = ("event_type", "dept", "grade", "rules_version", "destination", "topic", "verdict", "reason")
EVENTS_PER_RECORD = 5_000
CHARS_PER_RECORD = 250_000  # strings and ids of one record: at most 3 bytes a character, under Kafka's 1 MB
UNREADABLE_REASON = "decision record is not a JSON array"


def template(event_type: str, dept: str, grade: str, rules_version: str, destination: str, topic: str, verdict: str,
             reason: str) -> Template:
    return (event_type, dept, grade, rules_version, destination, topic, verdict, reason)


class DecisionBatch:
    """The decisions of one batch of one component, collected as (event id, shape) and encoded at the end.

    `add` is the per-event cost: one append. Shapes should be shared objects (one per plan) where they can be.
    """

    __slots__ = ("component", "at_ms", "rows")

    def __init__(self, component: str, at_ms: int) -> None:
        self.component = component
        self.at_ms = at_ms
        self.rows: list[tuple[str, Shape]] = []

    def add(self, event_id: str, shape: Shape) -> None:
        self.rows.append((event_id, shape))

    def __len__(self) -> int:
        return len(self.rows)

    def decisions(self) -> int:
        """How many decisions (as the audit chain counts them) the batch holds."""
        return sum(len(shape) for _, shape in self.rows)

    def records(self) -> list[bytes]:
        """The `_hbus.decisions` values of the batch (key: the component); none when no event was decided."""
        return encode_rows(self.component, self.at_ms, self.rows)


def encode_rows(component: str, at_ms: int, rows: Sequence[tuple[str, Shape]]) -> list[bytes]:
    """Compact records for `rows`, split so that none nears Kafka's request limit; empty shapes are left out."""
    out: list[bytes] = []
    start, count = 0, len(rows)
    while start < count:
        writer = _RecordWriter()
        end = start
        limit = min(count, start + EVENTS_PER_RECORD)
        while end < limit and writer.chars < CHARS_PER_RECORD:
            event_id, shape = rows[end]
            end += 1
            if shape:
                writer.add(event_id, shape)
        if writer.ids:
            out.append(writer.encode(component, at_ms))
        start = end
    return out


class _RecordWriter:
    __slots__ = ("strings", "templates", "shapes", "by_id", "ids", "indexes", "chars")

    def __init__(self) -> None:
        self.strings: dict[str, int] = {}
        self.templates: dict[Template, int] = {}
        self.shapes: dict[tuple[int, ...], int] = {}
        self.by_id: dict[int, tuple[int, Shape]] = {}  # id(shape) -> its index (the shape is kept alive beside it)
        self.ids: list[str] = []
        self.indexes: list[int] = []
        self.chars = 0

    def add(self, event_id: str, shape: Shape) -> None:
        known = self.by_id.get(id(shape))
        if known is None or known[1] is not shape:
            known = self.by_id[id(shape)] = (self._shape(shape), shape)
        self.ids.append(event_id)
        self.indexes.append(known[0])
        self.chars += len(event_id) + 8  # the id, quoted, and its shape index

    def _shape(self, shape: Shape) -> int:
        key = tuple(self._template(t) for t in shape)
        index = self.shapes.get(key)
        if index is None:
            index = self.shapes[key] = len(self.shapes)
        return index

    def _template(self, tmpl: Template) -> int:
        index = self.templates.get(tmpl)
        if index is None:
            index = self.templates[tmpl] = len(self.templates)
            self.chars += 40
            for text in tmpl:
                if text not in self.strings:
                    self.strings[text] = len(self.strings)
                    self.chars += len(text) + 3
        return index

    def encode(self, component: str, at_ms: int) -> bytes:
        strings = self.strings
        return json.dumps({
            "f": FORMAT, "c": component, "at": at_ms, "s": list(strings),
            "t": [[strings[text] for text in tmpl] for tmpl in self.templates],
            "p": [list(shape) for shape in self.shapes], "e": self.ids, "x": self.indexes,
        }, ensure_ascii=False, separators=(",", ":")).encode()


def encode_decisions(decisions: Sequence[DecisionRecord]) -> list[bytes]:
    """Compact records for DecisionRecords of processors (one component and instant per record, no actor)."""
    groups: dict[tuple[str, int], list[tuple[str, Shape]]] = {}
    for d in decisions:
        if d.actor:
            raise ValueError("decisions of people stay JSON arrays (record_decision)")
        groups.setdefault((d.component, d.at_ms), []).append((d.event_id, (template(
            d.event_type, d.dept, d.grade, d.rules_version, d.destination, d.topic, d.verdict, d.reason),)))
    return [record for (component, at_ms), rows in groups.items() for record in encode_rows(component, at_ms, rows)]


def decode_record(key: bytes | None, value: bytes | None) -> list[dict[str, Any]]:
    """The decisions of one `_hbus.decisions` record, compact or a JSON array, as DecisionRecord dicts.

    An unreadable record is returned as one 'unreadable' decision, so the audit chain records it, never skips it.
    """
    try:
        data = json.loads(value or b"")
        if isinstance(data, list) and all(isinstance(item, dict) for item in data):
            return data
        if isinstance(data, dict) and data.get("f") == FORMAT:
            return _expand(data)
    except (ValueError, TypeError, KeyError, IndexError, RecursionError):
        pass  # not JSON, or a compact record whose tables do not hold together: unreadable as a whole
    component = (key or b"").decode("utf-8", "replace")
    return [{"component": component, "verdict": "unreadable", "reason": UNREADABLE_REASON}]


def _expand(data: dict[str, Any]) -> list[dict[str, Any]]:
    component, at_ms, strings, ids, indexes = data["c"], data["at"], data["s"], data["e"], data["x"]
    if (not isinstance(component, str) or type(at_ms) is not int or not _list_of(strings, str)
            or not _list_of(data["t"], list) or not _list_of(data["p"], list) or not _list_of(ids, str)
            or not _list_of(indexes, int) or len(ids) != len(indexes)):
        raise ValueError("malformed compact decision record")
    templates = []
    for row in data["t"]:
        if len(row) != len(TEMPLATE_FIELDS) or not _list_of(row, int):
            raise ValueError("malformed template")
        templates.append({**dict(zip(TEMPLATE_FIELDS, (strings[i] for i in row))), "at_ms": at_ms, "actor": ""})
    shapes = []
    for row in data["p"]:
        if not _list_of(row, int):
            raise ValueError("malformed shape")
        shapes.append([templates[i] for i in row])
    out: list[dict[str, Any]] = []
    for event_id, index in zip(ids, indexes):
        for tmpl in shapes[index]:
            decision = {"component": component, "event_id": event_id}
            decision.update(tmpl)
            out.append(decision)
    return out


def _list_of(items: Any, kind: type) -> bool:
    """A JSON list of `kind` only (indexes: non-negative ints, a negative one would read from the end)."""
    if type(items) is not list:
        return False
    if kind is int:
        return all(type(i) is int and i >= 0 for i in items)
    return all(type(i) is kind for i in items)
