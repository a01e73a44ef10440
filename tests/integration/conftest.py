"""Integration fixtures: the real local stack, started once per test session (idempotent `up`)."""
from __future__ import annotations

import pytest

from hybridbus.config import Settings, settings
from hybridbus.stack import manager


@pytest.fixture(scope="session")
def stack() -> Settings:
    cfg = settings()
    statuses = manager.up(cfg)
    unhealthy = [s.name for s in statuses if not s.healthy]
    assert not unhealthy, f"stack components not healthy: {unhealthy}"
    return cfg
