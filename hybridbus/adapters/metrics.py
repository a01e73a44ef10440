"""Every Prometheus metric hybridbus exports, declared once so processors and dashboards agree on names.

Labels stay low-cardinality: department, event type, grade, destination, reason class — never an event
id, a person or a secret.
"""
from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

EVENTS_IN = Counter("hbus_events_in_total", "Events consumed by a processor.", ["component", "dept", "event_type"])
EVENTS_OUT = Counter(
    "hbus_events_out_total", "Events written, per destination.",
    ["component", "dept", "event_type", "grade", "destination"],
)
DLQ = Counter("hbus_dlq_total", "Records sent to the dead-letter queue, per reason class.", ["component", "reason"])
BOUNDARY_BLOCKED = Counter(
    "hbus_boundary_blocked_total", "Records stopped at the boundary because their grade is not public.",
    ["component", "dept", "event_type", "grade"],
)
FORGED_HEADERS = Counter(
    "hbus_forged_headers_total", "Events whose producer claimed a lower grade than the schema gives.",
    ["dept", "event_type"],
)
LATENCY = Histogram(
    "hbus_latency_seconds", "End-to-end latency per stage (occurred-at to routed, exported, archived).",
    ["stage"], buckets=LATENCY_BUCKETS,
)
RULES_VERSION = Gauge("hbus_rules_info", "Rule-set version in force (value 1), per role live/shadow.",
                      ["component", "role", "version"])
RULES_REFUSED = Counter("hbus_rules_refused_total", "Rule sets on _hbus.rules a processor refused to follow (bad or "
                        "missing signature, digest mismatch, replay, unapproved widening).", ["component", "reason"])
SHADOW_MOVES = Counter("hbus_shadow_moves_total", "Decisions the shadow rule set would change.",
                       ["rule", "change"])
CONSUMER_LAG = Gauge("hbus_consumer_lag", "Records not yet consumed.", ["component", "topic", "partition"])
VAULT_TOKEN_TTL = Gauge("hbus_vault_token_ttl_seconds", "Seconds left on the processor's Vault token.", ["component"])
SECRET_AGE = Gauge("hbus_secret_age_seconds", "Seconds since the credentials in use were read from Vault.",
                   ["component", "secret"])
ARCHIVE_OBJECTS = Counter("hbus_archive_objects_total", "Objects written to the open-data bucket.", ["dept", "event_type"])
ARCHIVE_BYTES = Counter("hbus_archive_bytes_total", "Bytes written to the open-data bucket.", ["dept", "event_type"])
LAST_ARCHIVE = Gauge("hbus_archive_last_object_timestamp_seconds", "Unix time of the last archived object.")
AUDIT_ENTRIES = Counter("hbus_audit_entries_total", "Entries appended to the audit chain, per kind.", ["kind"])
AUDIT_LAST_CHECKPOINT = Gauge("hbus_audit_last_checkpoint_timestamp_seconds", "Unix time of the last signed checkpoint.")
BOUNDARY_CLOSED = Gauge("hbus_boundary_closed", "1 while the boundary is closed by the emergency stop (nothing leaves).",
                        ["component"])
FIELD_DECRYPT_FAILURES = Counter(
    "hbus_field_decrypt_failures_total",
    "Encrypted fields a cleared subscriber could not open, per reason (tampered, unknown-key-version, malformed).",
    ["dept", "event_type", "reason"],
)
PAUSED = Gauge("hbus_paused", "1 while a processor waits for a dependency.", ["component", "dependency"])
CATALOG_INFO = Gauge("hbus_catalog_info", "Catalog in force (value 1): its digest, and whether it came from "
                     "_hbus.catalog (topic) or the schema files (files).", ["component", "digest", "source"])
CATALOG_REFUSED = Counter("hbus_catalog_refused_total", "Catalog snapshots on _hbus.catalog a processor refused "
                          "(undecodable, or failing the catalog checks); the catalog in force stayed.",
                          ["component", "reason"])
HELD_BACK = Counter("hbus_held_back_total", "Records held back (not handled, not committed past) because their "
                    "schema fingerprint was not yet in the processor's catalog, each counted once.", ["component"])
HELD_BACK_PARTITIONS = Gauge("hbus_held_back_partitions", "Partitions waiting at a record of a schema fingerprint "
                             "not yet known.", ["component"])


# Label children looked up once per process: `labels()` takes a lock and checks its arguments on every call, which
# costs more than the event it counts. Never `clear()` a metric whose children are cached here.
_CHILDREN: dict[Any, dict[tuple[str, ...], Any]] = {}


def child(metric: Any, labels: tuple[str, ...]) -> Any:
    """The child of `metric` for the label values `labels`, cached."""
    cache = _CHILDREN.setdefault(metric, {})  # by the metric itself: an id could be reused by a later metric
    found = cache.get(labels)
    if found is None:
        found = cache[labels] = metric.labels(*labels)
    return found


def add_counts(counter: Counter, counts: Mapping[tuple[str, ...], float]) -> None:
    """Add a batch's counts, kept in a plain dict by label values while the batch ran, to `counter` at once."""
    for labels, amount in counts.items():
        if amount:
            child(counter, labels).inc(amount)


def observe_many(histogram: Any, amounts: Sequence[float]) -> None:
    """Observe every amount on a histogram (child): binned here, then one add per bucket and one to the sum.

    Same samples as calling `observe` for each amount; falls back to that if the client's internals change.
    """
    bounds, buckets, total = (getattr(histogram, name, None) for name in ("_upper_bounds", "_buckets", "_sum"))
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for amount in amounts:
            histogram.observe(amount)
        return
    counts = [0] * len(bounds)
    for amount in amounts:
        counts[bisect_left(bounds, amount)] += 1  # the first bucket whose bound is >= amount, as observe() picks
    total.inc(sum(amounts))
    for index, count in enumerate(counts):
        if count:
            buckets[index].inc(count)


def observe_latencies(stage: str, occurred_ms: Iterable[bytes | int | None], now_ms: float) -> None:
    """Time from each event's occurred-at (header value or int, epoch ms) to `now_ms`, for `stage`, once a batch."""
    amounts = []
    for value in occurred_ms:
        try:
            amounts.append(max(0.0, (now_ms - int(value)) / 1000))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            pass  # absent or not a number: not observed, as per event
    if amounts:
        observe_many(child(LATENCY, (stage,)), amounts)


def observe_latency(stage: str, headers, now_ms: float) -> None:  # type: ignore[no-untyped-def]
    """Time from the event's occurred-at header to now, for `stage` (routed, exported, archived)."""
    for key, value in headers or ():
        if key == "hbus-occurred-at" and value:
            try:
                LATENCY.labels(stage).observe(max(0.0, (now_ms - int(value)) / 1000))
            except ValueError:
                pass
            return


def secret_read(component: str, secret: str) -> None:
    """Record that `component` just read `secret` (a kind, e.g. `kafka-private`) from Vault.

    The age is computed when Prometheus scrapes, so it grows between reads without a timer.
    """
    read_at = time.time()
    SECRET_AGE.labels(component, secret).set_function(lambda: time.time() - read_at)


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Expose /metrics for Prometheus on host:port (a daemon thread)."""
    start_http_server(port, addr=host)
