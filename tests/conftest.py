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
    items.sort(key=_turn)


def _turn(item: pytest.Item) -> int:
    """0 for most tests, then 1 for `bulk` ones, then 2 for `after_all` ones (the sort keeps file order within)."""
    if item.get_closest_marker("after_all"):
        return 2
    return 1 if item.get_closest_marker("bulk") else 0
