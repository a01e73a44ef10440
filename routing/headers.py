"""Names of the Kafka record headers hybridbus reads and writes.

Producers set the first group; only the router stamps grade, rule-set version and destinations, and the
boundary guard never trusts any of them to widen what may leave.
"""
from __future__ import annotations

from routing.grades import Grade

EVENT_ID = "hbus-event-id"
DEPT = "hbus-dept"
EVENT_TYPE = "hbus-event-type"  # "<dept>.<event>"
SCHEMA_VERSION = "hbus-schema-version"
OCCURRED_AT = "hbus-occurred-at"  # epoch milliseconds, decimal ASCII
TRACE_ID = "hbus-trace-id"
CLAIMED_GRADE = "hbus-claimed-grade"  # a producer's word; never believed, only compared

# Stamped by the router.
GRADE = "hbus-grade"
RULES_VERSION = "hbus-rules-version"
DESTINATIONS = "hbus-destinations"  # comma-separated: public_cloud,archive
ROUTED_AT = "hbus-routed-at"  # epoch milliseconds
DLQ_REASON = "hbus-dlq-reason"
SOURCE_TOPIC = "hbus-source-topic"

# Headers only the router may set: a producer's copy is dropped before the router stamps its own.
ROUTER_HEADERS = frozenset({GRADE, RULES_VERSION, DESTINATIONS, ROUTED_AT, DLQ_REASON, SOURCE_TOPIC})


def is_forged_claim(claimed: str | None, true_grade: Grade) -> bool:
    """A producer's claim of a lower grade than the schema gives is a forgery (an unreadable claim is too)."""
    if not claimed:
        return False
    try:
        return Grade.parse(claimed) < true_grade
    except Exception:  # noqa: BLE001 - any unreadable claim is treated as an attempt
        return True
