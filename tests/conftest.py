"""Test-wide settings: integration tests are marked by folder; `after_all` tests run after every other test."""
from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
    # Checks over what the whole run left behind (logs, metrics, DLQ) go last, whatever their file names.
    items.sort(key=lambda item: item.get_closest_marker("after_all") is not None)
