"""Names of the Kafka record headers hybridbus reads and writes.

Producers set the first group; only the router stamps grade, rule-set version and destinations, and the
boundary guard never trusts any of them to widen what may leave.
"""
from __future__ import annotations

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
