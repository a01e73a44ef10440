"""Errors of the department client, declared beside the code that raises them.

Each names the event type and, where one is at fault, the field; none ever carries a field value or a secret.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from routing.exceptions import HybridbusError


class ProducerError(HybridbusError):
    """Base of every error the department client raises; `event_type` names the type concerned."""

    def __init__(self, reason: str, event_type: str = "", field: str = "") -> None:
        self.reason = reason
        self.event_type = event_type
        self.field = field
        super().__init__(reason)


class UnknownEventType(ProducerError):
    """The catalog has no such event type (or no such version of it)."""

    def __init__(self, event_type: str, version: int | None = None) -> None:
        which = f"{event_type!r} v{version}" if version is not None else repr(event_type)
        super().__init__(f"unknown event type {which}: not in the schema catalog", event_type)


class NotOwner(ProducerError):
    """A department tried to publish an event type of another department."""

    def __init__(self, dept: str, event_type: str, owner: str) -> None:
        self.dept = dept
        self.owner = owner
        super().__init__(
            f"department {dept!r} may not publish {event_type!r}: it belongs to department {owner!r}", event_type
        )


@dataclass(frozen=True)
class Problem:
    """One field-level reason an event is refused; never the value itself."""

    field: str
    reason: str


class InvalidEvent(ProducerError):
    """The payload does not fit the schema of its event type; `problems` lists every field at fault."""

    def __init__(self, event_type: str, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        first = self.problems[0] if self.problems else Problem("", "invalid")
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        where = f"field {first.field!r}: " if first.field else ""
        super().__init__(f"{event_type}: {where}{first.reason}{more}", event_type, first.field)


class EventTooLarge(ProducerError):
    """The encoded event is over the size limit; `field` names the largest field."""

    def __init__(self, event_type: str, size: int, limit: int, largest_field: str) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"{event_type}: encoded event is {size} bytes, over the {limit}-byte limit"
            f" (largest field {largest_field!r})",
            event_type,
            largest_field,
        )


class DeliveryFailed(ProducerError):
    """Kafka refused the event or did not take it; re-sending with the same event id is safe."""

    def __init__(self, event_type: str, event_id: str, topic: str, reason: str) -> None:
        self.event_id = event_id
        self.topic = topic
        super().__init__(f"{event_type}: event {event_id} to {topic} not delivered: {reason}", event_type)


class DeliveryTimeout(DeliveryFailed):
    """No acknowledgement in time; the event may still arrive, so retry with the same event id."""


class EncryptionUnavailable(ProducerError):
    """A field that must be encrypted could not be (no data key from Vault in time, or no key service): the event
    was not sent, and never is in plain text. Retrying later is safe."""

    def __init__(self, event_type: str, reason: str) -> None:
        super().__init__(f"{event_type}: not sent, its encrypted fields could not be sealed: {reason}", event_type)


class OutboxError(ProducerError):
    """The outbox database is not usable as asked (wrong connection, wrong department)."""
