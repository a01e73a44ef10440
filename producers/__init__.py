"""The department client of hybridbus: publish, subscribe, a SQLite outbox, and the HTTP ingest gateway.

Every path onto the bus validates against the schema catalog before a byte reaches Kafka.
"""
from __future__ import annotations

from producers.exceptions import (
    DeliveryFailed,
    DeliveryTimeout,
    EventTooLarge,
    InvalidEvent,
    NotOwner,
    ProducerError,
    UnknownEventType,
)
from producers.publisher import Delivery, Envelope, OutgoingEvent, Publisher

__all__ = [
    "Delivery",
    "DeliveryFailed",
    "DeliveryTimeout",
    "Envelope",
    "EventTooLarge",
    "InvalidEvent",
    "NotOwner",
    "OutgoingEvent",
    "ProducerError",
    "Publisher",
    "UnknownEventType",
]
