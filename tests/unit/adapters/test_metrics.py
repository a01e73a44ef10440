"""Batch metrics: counts added once a batch through cached label children, and latencies binned here, give the
same samples as counting and observing every event on its own."""
from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from hybridbus.adapters import metrics


def test_observe_many_gives_the_samples_of_one_observe_each() -> None:
    rng = random.Random(2)
    amounts = [rng.choice([0.0, 0.005, 0.01, 1.0, 30.0, 31.0]) for _ in range(50)]
    amounts += [rng.expovariate(2) for _ in range(500)]
    one, many = CollectorRegistry(), CollectorRegistry()
    each = Histogram("lat", "t", ["stage"], buckets=metrics.LATENCY_BUCKETS, registry=one)
    batched = Histogram("lat", "t", ["stage"], buckets=metrics.LATENCY_BUCKETS, registry=many)
    for amount in amounts:
        each.labels("routed").observe(amount)
    metrics.observe_many(batched.labels("routed"), amounts)
    lines = [generate_latest(r).decode().splitlines() for r in (one, many)]
    assert [line for line in lines[0] if "_sum" not in line and "_created" not in line] == \
        [line for line in lines[1] if "_sum" not in line and "_created" not in line]
    sums = [float(next(line for line in ls if line.startswith("lat_sum")).split()[-1]) for ls in lines]
    assert abs(sums[0] - sums[1]) < 1e-9


def test_add_counts_adds_each_label_set_once_and_keeps_the_child() -> None:
    registry = CollectorRegistry()
    counter = Counter("things", "t", ["a", "b"], registry=registry)
    metrics.add_counts(counter, {("x", "y"): 3, ("x", "z"): 0})
    metrics.add_counts(counter, {("x", "y"): 2})
    assert registry.get_sample_value("things_total", {"a": "x", "b": "y"}) == 5
    assert registry.get_sample_value("things_total", {"a": "x", "b": "z"}) is None  # nothing counted: no series
    assert metrics.child(counter, ("x", "y")) is counter.labels("x", "y")


def test_latencies_are_taken_from_occurred_at_values_and_bad_ones_skipped() -> None:
    child = metrics.child(metrics.LATENCY, ("unit-test",))
    before = child._sum.get(), sum(b.get() for b in child._buckets)
    metrics.observe_latencies("unit-test", [b"1000", 2500, b"", None, b"not a number", b"9000"], 3000)
    after = child._sum.get(), sum(b.get() for b in child._buckets)
    assert after[1] - before[1] == 3  # 2.0 s, 0.5 s and 0 (occurred after now: clamped)
    assert abs((after[0] - before[0]) - 2.5) < 1e-9
