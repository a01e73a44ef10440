"""Errors of the local stack; each names the component and the log file a person should read."""
from __future__ import annotations

from pathlib import Path

from routing.exceptions import HybridbusError


class StackError(HybridbusError):
    """A component could not be installed, started, checked or bootstrapped."""

    def __init__(self, component: str, reason: str, log_file: Path | None = None) -> None:
        self.component = component
        self.reason = reason
        self.log_file = log_file
        where = f" (see {log_file})" if log_file else ""
        super().__init__(f"{component}: {reason}{where}")
