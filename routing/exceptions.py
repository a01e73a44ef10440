"""Errors raised by the routing core.

Each carries a reason a person can act on; none ever carries a field value above `public`.
"""
from __future__ import annotations


class HybridbusError(Exception):
    """Root of every error hybridbus raises on purpose. The families are declared beside the code that raises them:
    `RoutingError` here (grades, schemas, rules); `CodecError`, `DeliveryError` and `VaultError` in
    `hybridbus.adapters.exceptions`; `StackError` in `hybridbus.ops.stack.exceptions`; `ProducerError` in
    `producers.exceptions`. It lives in the core so that every layer can name it."""


class RoutingError(HybridbusError):
    """Base of every error raised by `routing`."""


class GradeError(RoutingError):
    """A grade name is unknown, missing, or above what the bus carries."""


class SchemaError(RoutingError):
    """A schema of the catalog is invalid; `path` names the file when known."""

    def __init__(self, reason: str, path: str | None = None) -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path else reason)


class RuleError(RoutingError):
    """A rules file is invalid; carries file and line so the author can go straight to it."""

    def __init__(self, reason: str, path: str | None = None, line: int | None = None) -> None:
        self.reason = reason
        self.path = path
        self.line = line
        where = f"{path}:{line}" if path and line else (path or "")
        super().__init__(f"{where}: {reason}" if where else reason)
