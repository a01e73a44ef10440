"""The production shape: a three-broker private cluster (RF 3, min ISR 2) loses a broker and is restarted broker by
broker under a stream of events; nothing acknowledged is lost, nothing is duplicated outside, nothing leaks.

Runs on a stack brought up with `hbus stack up --brokers 3` (`make test-production-shape`, which the test command
runs after the main suite in its own state dir); skipped on the default single-broker stack.
"""
from __future__ import annotations

import pytest

from hybridbus.adapters.config import Settings, settings
from hybridbus.adapters.topology import PRIVATE
from hybridbus.ops.drills import DrillOptions, run
from hybridbus.ops.stack import health, manager, workers

pytestmark = pytest.mark.skipif(settings().private_brokers < 3,
                                reason="needs a three-broker stack: make test-production-shape")

# A few thousand events: long enough that the fault lands mid-stream; `hbus drill all --brokers 3` runs 100,000.
OPTIONS = DrillOptions(events=3000, rate=500.0, outage=20.0, recovery_timeout=300.0)


def test_every_topic_of_the_model_has_three_copies_acknowledged_on_two(stack: Settings) -> None:
    metadata = health.admin(stack, PRIVATE).list_topics(timeout=10)
    model = {t.name for t in manager.load_topology(stack).topics_on(PRIVATE)}
    replicas = {len(p.replicas) for p in health.partitions_of(metadata) if p.topic in model}
    assert replicas == {3}
    assert health.read(stack, PRIVATE).in_sync


@pytest.mark.parametrize("name", ["broker-kill", "rolling-restart"])
def test_losing_or_restarting_brokers_loses_duplicates_and_leaks_nothing(bus: Settings, name: str) -> None:
    result = run(name, bus, OPTIONS)
    figures = result.as_dict()
    assert result.published == OPTIONS.events + 1, figures  # the stream and the probe, all acknowledged
    assert result.lost == 0 and result.duplicated == 0 and result.unexpected_outside == 0, figures
    assert result.leaked == 0 and result.details["public_canaries_found"] > 0, figures
    assert result.recovery_s is not None, figures
    # The fault ends only once all three brokers are back and every partition is fully in sync.
    assert health.read(bus, PRIVATE).in_sync, figures
    assert all(s.healthy for s in manager.status(bus))
    assert all(s.healthy for s in workers.status(bus))
