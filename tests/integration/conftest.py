"""Integration fixtures: the real local stack, started once per test session (idempotent `up`)."""
from __future__ import annotations

import pytest

from hybridbus.adapters.config import Settings, settings
from hybridbus.ops.stack import manager


@pytest.fixture(scope="session")
def stack() -> Settings:
    cfg = settings()
    statuses = manager.up(cfg)
    unhealthy = [s.name for s in statuses if not s.healthy]
    assert not unhealthy, f"stack components not healthy: {unhealthy}"
    return cfg


@pytest.fixture()
def bus(stack: Settings) -> Settings:
    """The stack with the shipped rules live and router, egress and archiver running (started once, kept)."""
    from hybridbus.ops.demo import ensure_live_rules
    from hybridbus.ops.stack import workers

    ensure_live_rules(stack)
    workers.start(stack)
    return stack
