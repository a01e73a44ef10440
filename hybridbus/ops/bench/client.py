"""`hbus bench client`: the department client's batched publish rate, `publish_many` (or `publish_async`) then
`flush()`, on the stack. The events are the bench's 1 KB mix of one department, published under its own login.
"""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

from hybridbus.adapters.config import Settings, settings
from hybridbus.adapters.fieldcrypt import FieldSealer, TransitKeyService
from hybridbus.adapters.loaders import load_catalog
from hybridbus.adapters.topology import PRIVATE
from hybridbus.adapters.vault import VaultSession
from hybridbus.ops.bench.workload import Workload
from producers.exceptions import ProducerError
from producers.publisher import Delivery, Publisher

# Events per run: a sustained rate. A run of 20,000 lasted under a second, so its figure was as much its first
# batches and its last flush's wait as the rate (37,372 against 44,688 events/s, 5 runs each, same stack).
EVENTS = 100_000
DEPT = "transport"  # bus arrivals and road closures: 40 % of the mix, and int, long, text and defaulted fields
TARGET_EVENTS_PER_S = 30_000.0
FLUSH_TIMEOUT = 120.0
BATCH = 1_000  # events per publish_many call: the batch a client holds, small enough for librdkafka to send meanwhile
APIS = ("many", "async")  # publish_many in batches, or publish_async one event at a time with a callback each


@dataclass(frozen=True)
class ClientFigures:
    """One run: how many events, in how long (first publish_async to flush() returning), and the CPU it took."""

    dept: str
    events: int
    api: str
    seconds: float
    cpu_seconds: float  # the whole process: Python and librdkafka's threads
    caller_cpu_seconds: float  # the calling thread alone: the serial part, which bounds one process's rate
    mean_bytes: float

    @property
    def events_per_s(self) -> float:
        return self.events / max(self.seconds, 1e-9)

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_seconds / self.events * 1e6

    @property
    def caller_cpu_us_per_event(self) -> float:
        return self.caller_cpu_seconds / self.events * 1e6

    def as_json(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 3), "events_per_s": round(self.events_per_s, 1),
                "cpu_us_per_event": round(self.cpu_us_per_event, 2),
                "caller_cpu_us_per_event": round(self.caller_cpu_us_per_event, 2)}


def department_payloads(workload: Workload, dept: str) -> list[tuple[str, int, dict[str, Any]]]:
    """(event type, version, payload) of the department's share of the workload, in the workload's order."""
    payloads = []
    for template in workload.cycle:
        if template.dept == dept:
            event_type, payload = workload.codec.decode(template.value)
            payloads.append((event_type.key, event_type.version, payload))
    if not payloads:
        raise ValueError(f"the bench workload has no events of department {dept!r}")
    return payloads


def measure(cfg: Settings | None = None, events: int = EVENTS, dept: str = DEPT, api: str = "many") -> ClientFigures:
    """Publish `events` events with `publish_many` in batches of BATCH (api "many") or with `publish_async`, each
    with a delivery callback (api "async"), and wait for every acknowledgement with `flush()`."""
    if api not in APIS:
        raise ValueError(f"api must be one of {', '.join(APIS)}, not {api!r}")
    cfg = cfg or settings()
    catalog = load_catalog(cfg)
    workload = Workload(catalog)
    payloads = department_payloads(workload, dept)
    session = VaultSession(dept, cfg)
    creds = session.kafka_credentials(PRIVATE)
    # The department's own data keys, as its client has them: a department with encrypted fields seals them.
    publisher = Publisher.with_credentials(dept, creds, catalog=catalog, sealer=FieldSealer(TransitKeyService(session)))
    for key in {key: None for key, _, _ in payloads}:  # connection and topic metadata before the clock starts
        _, version, payload = next(p for p in payloads if p[0] == key)
        publisher.publish(key, payload, version=version)
    failures: list[ProducerError] = []

    def on_delivery(_delivery: Delivery | None, error: ProducerError | None) -> None:
        if error is not None:
            failures.append(error)

    sizes = [len(publisher.prepare(key, payload, version=version).value) for key, version, payload in payloads]
    # The batches as a client holds them, made before the clock starts: (event type, payload, version) each.
    batches = [[(key, payload, version) for key, version, payload in
                (payloads[n % len(payloads)] for n in range(start, min(start + BATCH, events)))]
               for start in range(0, events, BATCH)] if api == "many" else []
    failed_before = publisher.failed_without_callback
    cpu, caller_cpu, started = time.process_time(), time.thread_time(), time.perf_counter()
    if api == "many":
        for batch in batches:
            publisher.publish_many(batch)  # failures are counted by the publisher, no callback per event
    else:
        for n in range(events):
            key, version, payload = payloads[n % len(payloads)]
            publisher.publish_async(key, payload, version=version, on_delivery=on_delivery)
    outstanding = publisher.flush(FLUSH_TIMEOUT)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    caller_cpu_seconds = time.thread_time() - caller_cpu
    failed = len(failures) + publisher.failed_without_callback - failed_before
    if outstanding or failed:
        reason = failures[0].reason if failures else (f"{failed} reported failed (see the log)" if failed else
                                                      f"{outstanding} not acknowledged in {FLUSH_TIMEOUT:.0f} s")
        raise RuntimeError(f"bench client: {failed + outstanding} of {events} events not delivered: {reason}")
    return ClientFigures(dept, events, api, seconds, cpu_seconds, caller_cpu_seconds, sum(sizes) / len(sizes))


def summary(runs: list[ClientFigures]) -> dict[str, Any]:
    """The median of the runs, their spread, and every run."""
    rates = [r.events_per_s for r in runs]
    median = statistics.median(rates)
    return {"dept": runs[0].dept, "events": runs[0].events, "api": runs[0].api, "events_per_s": round(median, 1),
            "min": round(min(rates), 1), "max": round(max(rates), 1),
            "cpu_us_per_event": round(statistics.median(r.cpu_us_per_event for r in runs), 2),
            "caller_cpu_us_per_event": round(statistics.median(r.caller_cpu_us_per_event for r in runs), 2),
            "load_average": round(os.getloadavg()[0], 2),
            "mean_event_bytes": round(runs[0].mean_bytes, 1), "target_events_per_s": TARGET_EVENTS_PER_S,
            "met": median >= TARGET_EVENTS_PER_S, "runs": [r.as_json() for r in runs]}


def table(data: dict[str, Any]) -> str:
    mark = "met" if data["met"] else "missed"
    runs = len(data["runs"])
    return "\n".join([
        f"{'client':<34} {'events/s':>9} {'min–max':>15} {'CPU µs/event':>13} {'caller µs':>10} {'events':>8}"
        f" {'bytes':>6}",
        f"{_API_LABEL[data.get('api', 'async')] + ', ' + data['dept']:<34} {data['events_per_s']:>9,.0f} "
        f"{data['min']:>7,.0f}–{data['max']:<7,.0f} {data['cpu_us_per_event']:>13.1f} "
        f"{data['caller_cpu_us_per_event']:>10.1f} {data['events']:>8,} {data['mean_event_bytes']:>6.0f}",
        f"target ≥ {TARGET_EVENTS_PER_S:,.0f} events/s: {mark}; median of {runs} run{'s' if runs > 1 else ''}, "
        "wall time from the first publish to flush() returning; CPU of the whole process (Python and "
        f"librdkafka's threads) and of the calling thread alone; load average {data['load_average']}",
    ])


_API_LABEL = {"many": f"publish_many ×{BATCH:,} + flush", "async": "publish_async + flush"}
