"""How fast the audit writer works off a backlog of `_hbus.decisions`, and what that costs it in CPU and memory.

`python -m hybridbus.ops.bench.audit_probe --events N` stops the writer, puts N events' worth of decisions on the
topic (as the processors write them), starts the writer and prints one JSON object once it has caught up.
"""
from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Iterator
from itertools import groupby
from dataclasses import asdict, dataclass

from hybridbus.adapters import kafka
from hybridbus.adapters.config import Settings, settings
from hybridbus.adapters.topology import AUDIT_TOPIC, DECISIONS_TOPIC, PRIVATE
from hybridbus.ops.bench.probes import OffsetCounter, await_records, group_lag, sample_process
from hybridbus.ops.stack import workers
from hybridbus.runtime.decisions import DecisionBatch, DecisionRecord, Template, decisions_batch, template

WRITER = "audit"
WRITER_GROUP = "hbus-audit"
PUBLIC_SHARE = 3  # of every 8 events: public ones get five decisions, the others one, so 2.5 per event on average
BATCH_EVENTS = 1_000  # events per processor batch: each batch writes its own records
ARRAY, COMPACT = "array", "compact"  # the two forms of a `_hbus.decisions` record (`decode_record` reads both)


@dataclass(frozen=True)
class Result:
    form: str
    events: int
    decisions: int
    records: int
    entries: int  # decisions and checkpoints chained after the first one was seen
    seconds: float
    entries_per_s: float
    cpu_seconds: float
    cpu_seconds_per_100k_events: float
    peak_rss_mb: float  # VmHWM of the writer over its whole life, start-up and catch-up included
    settled_rss_mb: float  # VmRSS once caught up and idle for `settle` seconds
    lag_after: int  # decisions the writer's group had not committed when measured


def event_decisions(tag: str, i: int, at_ms: int) -> Iterator[DecisionRecord]:
    """The decisions the bus takes about one event: routed (and, when public, exported and archived)."""
    event_id = f"{tag}-{i}"
    if i % 8 >= PUBLIC_SHARE:
        yield DecisionRecord("router", event_id, "health.admission", "health", "restricted", "v1", "graded",
                             "restricted.health.admission", "routed", "rule health-private", at_ms)
        return
    for destination, topic in (("graded", "public.market.licence_granted"), ("public_cloud", "public.market.licence_granted"),
                               ("archive", "hbus-open-data")):
        yield DecisionRecord("router", event_id, "market.licence_granted", "market", "public", "v1", destination,
                             topic, "routed", "rule market-open", at_ms)
    yield DecisionRecord("egress", event_id, "market.licence_granted", "market", "public", "v1", "public_cloud",
                         "public.market.licence_granted", "exported", "grade public", at_ms)
    yield DecisionRecord("archiver", event_id, "market.licence_granted", "market", "public", "v1", "archive",
                         "hbus-open-data", "archived", "grade public", at_ms)


def produce_backlog(events: int, form: str = ARRAY, batch_events: int = BATCH_EVENTS) -> tuple[int, int]:
    """`_hbus.decisions` records for `events` events as the processors write them: per batch of `batch_events`
    events, each component's decisions in JSON arrays of up to 400 or in one compact record, keyed by component.
    Returns (decisions, records)."""
    producer = kafka.producer(PRIVATE, kafka.admin_credentials(PRIVATE),
                              **{"linger.ms": 20, "queue.buffering.max.kbytes": 256 * 1024})
    tag, at_ms = uuid.uuid4().hex, int(time.time() * 1000)
    decisions = records = 0
    errors: list[str] = []
    for first in range(0, events, batch_events):
        per_component: dict[str, list[DecisionRecord]] = {}
        for i in range(first, min(events, first + batch_events)):
            for decision in event_decisions(tag, i, at_ms):
                per_component.setdefault(decision.component, []).append(decision)
        for component, batch in per_component.items():
            decisions += len(batch)
            for value in (decisions_batch(batch) if form == ARRAY else compact_records(component, at_ms, batch)):
                while True:
                    try:
                        producer.produce(DECISIONS_TOPIC, value, component.encode(),
                                         on_delivery=lambda err, _m: err is None or errors.append(str(err)))
                        break
                    except BufferError:
                        producer.poll(0.1)
                records += 1
        producer.poll(0)
    if producer.flush(120) or errors:
        raise RuntimeError(f"the backlog was not acknowledged: {errors[:1] or 'timeout'}")
    return decisions, records


def compact_records(component: str, at_ms: int, batch: list[DecisionRecord]) -> list[bytes]:
    """One component's decisions of a batch as a compact record: each event's decisions are its shape."""
    shapes: dict[tuple[Template, ...], tuple[Template, ...]] = {}  # shared shape objects, as a step's plans share them
    out = DecisionBatch(component, at_ms)
    for event_id, items in groupby(batch, key=lambda d: d.event_id):
        shape = tuple(template(d.event_type, d.dept, d.grade, d.rules_version, d.destination, d.topic, d.verdict,
                               d.reason) for d in items)
        out.add(event_id, shapes.setdefault(shape, shape))
    return out.records()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        return next(int(line.split()[1]) / 1024 for line in handle if line.startswith("VmRSS:"))


def drain(cfg: Settings, timeout: float) -> None:
    """Let the writer chain whatever already waits, so that the backlog measured is exactly the one produced."""
    if group_lag(PRIVATE, WRITER_GROUP, [DECISIONS_TOPIC]) == 0:
        return
    workers.start(cfg, (WRITER,))
    deadline = time.monotonic() + timeout
    while group_lag(PRIVATE, WRITER_GROUP, [DECISIONS_TOPIC]) > 0:
        if time.monotonic() > deadline:
            raise TimeoutError("the audit writer did not work off the decisions already waiting")
        time.sleep(2)


def measure(cfg: Settings, events: int, form: str, settle: float, timeout: float) -> Result:
    was_running = workers.process(cfg, WRITER).running()
    drain(cfg, timeout)
    workers.stop(cfg, (WRITER,))
    counter = OffsetCounter(PRIVATE, [AUDIT_TOPIC])
    baseline = counter.total()
    decisions, records = produce_backlog(events, form)
    workers.start(cfg, (WRITER,))
    pid = workers.process(cfg, WRITER).pid()
    assert pid is not None
    try:
        # As many entries as decisions: the checkpoints among them leave the last few decisions out of the span.
        span = await_records(counter, baseline, decisions, timeout, watched={WRITER: pid}, interval=0.5)
        time.sleep(settle)
        settled = rss_mb(pid)
        peak = sample_process(pid).peak_rss_mb
        lag = group_lag(PRIVATE, WRITER_GROUP, [DECISIONS_TOPIC])
    finally:
        if not was_running:
            workers.stop(cfg, (WRITER,))
    cpu = span.cpu_seconds[WRITER]
    return Result(form, events, decisions, records, span.count, round(span.seconds, 2), round(span.rate),
                  round(cpu, 2), round(cpu * 100_000 / events, 2), round(peak, 1), round(settled, 1), lag)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events whose decisions make the backlog")
    parser.add_argument("--form", choices=(ARRAY, COMPACT), default=ARRAY, help="how the records are written")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds idle before reading the settled RSS")
    parser.add_argument("--timeout", type=float, default=None, help="seconds to catch up (default: by size)")
    args = parser.parse_args(argv)
    timeout = args.timeout or 120 + args.events * 2.5 / 1000  # a floor of 1,000 entries/s
    print(json.dumps(asdict(measure(settings(), args.events, args.form, args.settle, timeout))))


if __name__ == "__main__":
    main()
