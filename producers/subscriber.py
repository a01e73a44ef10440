"""Subscribe a department to the graded topics it is cleared for, decoded and decrypted, committed only after handling.

The consumer group is `dept-<dept>.<name>` because the brokers' ACLs allow a department that prefix only. Encrypted
fields open where Vault lets this identity unwrap their data keys; elsewhere they stay sealed and are marked.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException

from hybridbus.adapters import kafka
from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.exceptions import CodecError, KeyServiceUnavailable
from hybridbus.adapters.fieldcrypt import FieldOpener, SealedField, TransitKeyService, open_payload
from hybridbus.adapters.loaders import load_catalog
from hybridbus.adapters.metrics import FIELD_DECRYPT_FAILURES, child
from hybridbus.adapters.secrets import KafkaCredentials
from hybridbus.adapters.topology import PRIVATE
from hybridbus.adapters.vault import VaultSession
from producers.exceptions import ProducerError
from routing.catalog import Catalog
from routing.grades import Grade

log = logging.getLogger("hybridbus.producers.subscriber")


@dataclass(frozen=True)
class ReceivedEvent:
    """One decoded event as a subscriber sees it."""

    event_type: str  # "<dept>.<event>"
    version: int
    payload: Mapping[str, Any] = field(repr=False)  # graded data: kept out of reprs and logs
    headers: Mapping[str, bytes] = field(repr=False)
    topic: str
    partition: int
    offset: int
    # Encrypted fields left sealed in `payload` (their envelope, never garbage), with the reason: "not-cleared" for an
    # identity Vault does not let decrypt them, or a typed decryption error (tampered, unknown key version, malformed).
    sealed: tuple[SealedField, ...] = ()

    @property
    def decrypt_errors(self) -> tuple[SealedField, ...]:
        """The sealed fields that should have opened for this identity and did not."""
        return tuple(s for s in self.sealed if s.reason != "not-cleared")

    @property
    def event_id(self) -> str | None:
        from routing import headers as h

        raw = self.headers.get(h.EVENT_ID)
        return raw.decode("ascii", "replace") if raw is not None else None


class SubscribeError(ProducerError):
    """A record could not be consumed or decoded; its offset is not committed."""


def cleared_topics(catalog: Catalog, dept: str) -> list[str]:
    """The graded topics `dept` may read: open and internal data of everyone, its own data up to its clearance.

    Mirrors the ACLs of `hybridbus.adapters.topology` so that a default subscription never asks for a refused topic.
    """
    clearance = catalog.departments[dept].clearance
    topics = []
    for event_type in catalog.latest():
        for grade in Grade:
            if not event_type.record_grade <= grade <= event_type.schema_grade or grade > clearance:
                continue
            if grade <= Grade.INTERNAL or event_type.dept == dept:
                topics.append(event_type.graded_topic(grade))
    return sorted(topics)


class Subscriber:
    """A department's consumer of graded topics; `run(handler)` commits each record after its handler returns."""

    def __init__(self, dept: str, consumer: Consumer, codec: AvroCodec, topics: Iterable[str],
                 opener: FieldOpener | None = None) -> None:
        self.dept = dept
        self.topics = list(topics)
        self._consumer = consumer
        self._codec = codec
        self._opener = opener
        self._consumer.subscribe(self.topics)

    def __repr__(self) -> str:
        return f"Subscriber(dept={self.dept!r}, topics={len(self.topics)})"

    @classmethod
    def for_department(cls, dept: str, *, name: str = "default", topics: Iterable[str] | None = None,
                       catalog: Catalog | None = None, **kafka_overrides: Any) -> Subscriber:
        session = VaultSession(dept)
        creds = session.kafka_credentials(PRIVATE)
        return cls.with_credentials(dept, creds, name=name, topics=topics, catalog=catalog,
                                    opener=FieldOpener(TransitKeyService(session)), **kafka_overrides)

    @classmethod
    def with_credentials(cls, dept: str, creds: KafkaCredentials, *, name: str = "default",
                         topics: Iterable[str] | None = None, catalog: Catalog | None = None,
                         opener: FieldOpener | None = None, **kafka_overrides: Any) -> Subscriber:
        catalog = catalog or load_catalog()
        group = f"dept-{dept}.{name}"
        # At least once without a broker round trip per record: `run` stores a record's offset after its handler
        # returned, and the consumer commits what is stored every few seconds and when the run ends.
        conf = {"enable.auto.commit": True, "enable.auto.offset.store": False, **kafka_overrides}
        consumer = kafka.consumer(PRIVATE, creds, group, **conf)
        chosen = list(topics) if topics is not None else cleared_topics(catalog, dept)
        return cls(dept, consumer, AvroCodec.for_catalog(catalog), chosen, opener)

    def run(self, handler: Callable[[ReceivedEvent], None], max_events: int | None = None,
            timeout: float = 10.0, skip_undecodable: bool = False) -> int:
        """Hand each event to `handler`, then commit it; stop after `max_events` or `timeout` s with nothing new.

        A handler that raises stops the run with that record uncommitted, so it is read again next time.
        A record that does not decode stops the run too, unless `skip_undecodable` (then it is logged and
        committed: the router's DLQ, not a subscriber, is where bad input is kept).
        """
        handled = 0
        idle_since = time.monotonic()
        while max_events is None or handled < max_events:
            msg = self._consumer.poll(0.5)
            if msg is None:
                if time.monotonic() - idle_since >= timeout:
                    break
                continue
            if msg.error():
                if msg.error().code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                    continue
                raise SubscribeError(f"consuming failed: {msg.error().name()}")
            try:
                event = self._decode(msg)
            except SubscribeError as exc:
                if not skip_undecodable:
                    raise
                log.warning("skipped undecodable record topic=%s partition=%d offset=%d reason=%s",
                            msg.topic(), msg.partition(), msg.offset(), exc.reason)
                self._consumer.store_offsets(message=msg)
                continue
            handler(event)
            # Stored only after the handler returned, committed with the next periodic commit: a crash before that
            # replays the record. (A commit per record waited on the broker: 150 records/s, against 17,000 now.)
            self._consumer.store_offsets(message=msg)
            handled += 1
            idle_since = time.monotonic()
        try:
            self._consumer.commit(asynchronous=False)  # what was handled is durable before the run returns
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                raise SubscribeError(f"commit failed: {exc.args[0].name()}") from None
        return handled

    def _decode(self, msg: Any) -> ReceivedEvent:
        try:
            event_type, payload = self._codec.decode(msg.value())
        except CodecError as exc:
            raise SubscribeError(f"{msg.topic()}[{msg.partition()}]@{msg.offset()} does not decode: {exc.reason}") from None
        try:
            payload, sealed = open_payload(event_type, payload, self._opener)
        except KeyServiceUnavailable as exc:
            # Not handed over half-read, and not committed: read again once Vault answers.
            raise SubscribeError(f"{msg.topic()}[{msg.partition()}]@{msg.offset()}: {exc}") from None
        for mark in sealed:
            if mark.reason != "not-cleared":
                child(FIELD_DECRYPT_FAILURES, (self.dept, event_type.key, mark.reason)).inc()
                log.warning("field did not decrypt topic=%s partition=%d offset=%d event_type=%s field=%s reason=%s",
                            msg.topic(), msg.partition(), msg.offset(), event_type.key, mark.field, mark.reason)
        return ReceivedEvent(event_type.key, event_type.version, payload, dict(msg.headers() or []),
                             msg.topic(), msg.partition(), msg.offset(), sealed)

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
