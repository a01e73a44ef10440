"""The boundary guard: the last, independent check before a record leaves the private cloud.

It shares only the catalog and the grade function with the router — never the router's decision or a
header's word — and lets a record out only when its own recomputed grade is `public`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from routing.catalog import EventType, effective_grade
from routing.grades import Grade

PUBLIC_CLOUD = "public_cloud"
ARCHIVE = "archive"


@dataclass(frozen=True)
class Verdict:
    """`allowed` records leave; a refused record is a `leak` (quarantine it) unless it was simply not
    meant for this destination."""

    allowed: bool
    grade: Grade
    reason: str
    leak: bool = False


# Every record let out gets the same verdict: one shared (frozen) object, not a new one per record.
ALLOWED = Verdict(True, Grade.PUBLIC, "public")


@lru_cache(maxsize=256)
def _wanted(destinations: str) -> frozenset[str]:
    """The destinations a router header names (few distinct values: parsed once each)."""
    return frozenset(d.strip() for d in destinations.split(",") if d.strip())


def export_refusal(event_type: EventType, grade: Grade) -> str | None:
    """Why a record of `event_type` whose effective grade is `grade` may not leave the private cloud; None when
    it may. The one answer to "may this leave?": the engine asks it before it decides to export a record or a
    view, and the boundary guard asks it again, on its own decoding, for every record it reads.
    """
    # The grade is the event's own (high-water mark of the fields it carries), not its schema's upper bound: a
    # public type with an optional field of a higher grade leaves when that field is empty and stays private when
    # it is set. The field's definition is no secret (the schema is published); only a value could be.
    if grade is not Grade.PUBLIC:
        return f"{event_type.key} is {grade.id}: only public events leave"
    return None


def check_export(
    event_type: EventType, payload: Mapping[str, Any], source_topic: str, destinations: str | None, destination: str
) -> Verdict:
    """May this decoded record go to `destination` (`public_cloud` or `archive`)?

    `destinations` is the router's stamped header: it can only narrow what leaves, never widen it.
    """
    grade = effective_grade(event_type, payload)
    refusal = export_refusal(event_type, grade)
    if refusal is not None:
        return Verdict(False, max(grade, event_type.schema_grade), refusal, leak=True)
    expected = event_type.graded_topic(Grade.PUBLIC)
    if source_topic != expected:
        return Verdict(False, grade, f"record of {event_type.key} found on {source_topic}, expected {expected}", leak=True)
    if destination not in _wanted(destinations or ""):
        return Verdict(False, grade, f"no rule sends this record to {destination}")
    return ALLOWED  # grade is public here: export_refusal let nothing else through
