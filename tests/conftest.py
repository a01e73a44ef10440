"""Test-wide settings: integration tests are marked by folder; `bulk` tests run after the others, and `after_all`
tests after every other test."""
from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
    # Tests that put tens of thousands of events on the bus go after the others, whose scans of whole topics and
    # buckets (leak scan, drill tallies, subscribers reading from the start) would otherwise read them all too.
    # Checks over what the whole run left behind (logs, metrics, DLQ) go last, whatever their file names.
    items.sort(key=lambda item: 2 if item.get_closest_marker("after_all") else 1 if item.get_closest_marker("bulk") else 0)
