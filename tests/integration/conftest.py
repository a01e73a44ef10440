"""Integration fixtures: the real local stack, started once per test session (idempotent `up`)."""
from __future__ import annotations

import os

import pytest

from hybridbus.adapters.config import Settings, settings
from hybridbus.ops.stack import manager

# Processors started by the tests give up an unknown schema fingerprint after 10 s, not production's 120 s: the
# hostile-input and DLQ tests wait for those records in the DLQ (README, "Held back, not DLQ'd").
os.environ.setdefault("HBUS_UNKNOWN_SCHEMA_HOLD_S", "10")


@pytest.fixture(scope="session")
def stack() -> Settings:
    cfg = settings()
    statuses = manager.up(cfg)
    unhealthy = [s.name for s in statuses if not s.healthy]
    assert not unhealthy, f"stack components not healthy: {unhealthy}"
    return cfg


def start_bus(stack: Settings) -> Settings:
    """The shipped rules live and the processors running (started if they are not, kept)."""
    from hybridbus.ops.demo import ensure_live_rules
    from hybridbus.ops.stack import workers

    ensure_live_rules(stack)
    workers.start(stack)
    return stack


@pytest.fixture()
def bus(stack: Settings) -> Settings:
    """The stack with the shipped rules live and router, egress and archiver running (started once, kept)."""
    return start_bus(stack)
