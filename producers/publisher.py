"""Publish a department's events onto its ingress topics: validated, encrypted where the catalog says, Avro-encoded,
acknowledged by acks=all.

Nothing is sent before the catalog accepts the event, and no field marked encrypted ever leaves in plain text; the event
id is both the key and a header, so a re-send is a duplicate downstream can drop.
"""
from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from confluent_kafka import KafkaError, KafkaException

from hybridbus.adapters import kafka
from hybridbus.adapters.codec import MARKER, AvroCodec
from hybridbus.adapters.exceptions import CodecError, EncodeError, UnknownSchemaError, VaultError
from hybridbus.adapters.fieldcrypt import DEFAULT_VAULT_TIMEOUT, FieldSealer, TransitKeyService, seal_payload
from hybridbus.adapters.loaders import load_catalog
from hybridbus.adapters.recordwriter import RecordWriter, compile_writer
from hybridbus.adapters.secrets import KafkaCredentials
from hybridbus.adapters.topology import PRIVATE
from hybridbus.adapters.vault import VaultSession
from producers.exceptions import (
    DeliveryFailed,
    DeliveryTimeout,
    EncryptionUnavailable,
    EventTooLarge,
    InvalidEvent,
    NotOwner,
    Problem,
    ProducerError,
    UnknownEventType,
)
from routing import headers as h
from routing.catalog import Catalog, EventType, FieldSpec
from routing.exceptions import SchemaError

log = logging.getLogger("hybridbus.producers.publisher")

DEFAULT_MAX_BYTES = 1024 * 1024
DEFAULT_ACK_TIMEOUT = 30.0
_MAX_ID_LENGTH = 128

DeliveryCallback = Callable[["Delivery | None", "ProducerError | None"], None]


class KafkaProducerLike(Protocol):
    """What the publisher needs of a confluent-kafka Producer (a fake one in unit tests)."""

    def produce(self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]],
                on_delivery: Callable[[Any, Any], None]) -> None: ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...


@dataclass(frozen=True)
class Delivery:
    """Where Kafka acknowledged one event."""

    event_id: str
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Envelope:
    """One event ready for the wire: validated, encoded, with its key, topic and headers."""

    event_type: str  # "<dept>.<event>"
    version: int
    dept: str
    event_id: str
    occurred_at_ms: int
    trace_id: str
    topic: str
    value: bytes

    @property
    def key(self) -> bytes:
        return self.event_id.encode("ascii")

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        return _headers(self.key, _type_headers(self.dept, self.event_type, self.version),
                        str(self.occurred_at_ms).encode("ascii"), self.trace_id.encode("ascii"))


@functools.lru_cache(maxsize=1024)
def _type_headers(dept: str, event_type: str, version: int) -> tuple[tuple[str, bytes], ...]:
    """The headers every event of one type and version carries alike: encoded once, not per event."""
    return ((h.DEPT, dept.encode("ascii")), (h.EVENT_TYPE, event_type.encode("ascii")),
            (h.SCHEMA_VERSION, str(version).encode("ascii")))


@dataclass(frozen=True)
class _TypePlan:
    event_type: EventType
    key: str
    topic: str
    # A field that takes text or bytes alike: the codec would take bytes there, the client names them (failure path).
    names_bytes_apart: bool
    encrypted: tuple[FieldSpec, ...] = ()  # sealed before encoding
    # Writes a payload of exactly the schema's types (fastavro's bytes); None: the codec writes every payload.
    writer: RecordWriter | None = None
    type_headers: tuple[tuple[str, bytes], ...] = ()  # the headers every event of the type carries alike

    @functools.cached_property
    def plain_writer(self) -> RecordWriter | None:
        """The writer, when nothing comes before it for this type (no field to seal, no text-or-bytes union)."""
        return self.writer if not self.encrypted and not self.names_bytes_apart else None


class OutgoingEvent(NamedTuple):
    """One event of a `publish_many` batch; a plain tuple `(event type, payload[, version])` does as well."""

    event_type: str
    payload: Any
    version: int | None = None
    event_id: str | None = None
    occurred_at_ms: int | None = None
    trace_id: str | None = None


class EventEncoder:
    """The pure half of publishing: catalog checks, Avro encoding and the envelope; no Kafka.

    Shared by the publisher, the outbox (which encodes inside the caller's transaction) and the gateway. Fields the
    catalog marks encrypted are sealed with `sealer` first; without one, an event carrying such a field is refused.
    """

    def __init__(self, catalog: Catalog, codec: AvroCodec | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
                 sealer: FieldSealer | None = None) -> None:
        self.catalog = catalog
        self.codec = codec or AvroCodec.for_catalog(catalog)
        self.max_bytes = max_bytes
        self.sealer = sealer
        self._plans: dict[tuple[str, int | None], _TypePlan] = {}
        self.type_by_topic: dict[str, str] = {}  # ingress topic -> event type, to name a failed delivery

    def event_type(self, key: str, version: int | None = None) -> EventType:
        if not isinstance(key, str) or key not in self.catalog:
            raise UnknownEventType(str(key), version)
        try:
            return self.catalog.get(key, version)
        except SchemaError:
            raise UnknownEventType(key, version) from None

    def encode(
        self,
        dept: str,
        event_type_key: str,
        payload: Any,
        *,
        event_id: str | None = None,
        occurred_at_ms: int | None = None,
        trace_id: str | None = None,
        version: int | None = None,
    ) -> Envelope:
        """Check and encode one event for `dept`; raises a ProducerError naming the field at fault."""
        plan = self.plan(event_type_key, version)
        value = self.value(plan, dept, payload, event_id, occurred_at_ms, trace_id)
        if not event_id or not trace_id:
            new_event_id, new_trace_id = _new_ids()
            event_id, trace_id = event_id or new_event_id, trace_id or new_trace_id
        return Envelope(
            event_type=plan.key,
            version=plan.event_type.version,
            dept=dept,
            event_id=event_id,
            occurred_at_ms=int(time.time() * 1000) if occurred_at_ms is None else occurred_at_ms,
            trace_id=trace_id,
            topic=plan.topic,
            value=value,
        )

    def value(self, plan: _TypePlan, dept: str, payload: Any, event_id: str | None = None,
              occurred_at_ms: int | None = None, trace_id: str | None = None) -> bytes:
        """The checked, sealed and encoded record of one event of `plan`'s type; raises a typed ProducerError."""
        event_type = plan.event_type
        if event_type.dept != dept:
            raise NotOwner(dept, event_type.key, event_type.dept)
        meta = (_meta_problems(event_id, occurred_at_ms, trace_id)
                if event_id is not None or occurred_at_ms is not None or trace_id is not None else None)
        if plan.encrypted:
            try:
                payload = seal_payload(event_type, payload, self.sealer, plan.encrypted)
            except VaultError as exc:
                raise EncryptionUnavailable(event_type.key, str(exc)) from None
        value = None
        if not meta and not plan.names_bytes_apart:
            # The fast path: the compiled writer takes exactly the schema's types; the codec's writer, with its
            # exact type check, takes only what validate() would.
            value = plan.writer.write(payload) if plan.writer is not None else None
            if value is None:
                try:
                    value = self.codec.encode(event_type, payload)
                except (CodecError, ValueError, TypeError, OverflowError):
                    value = None  # told field by field below
        if value is None:
            value = self._encode_or_explain(event_type, payload, meta or [])
        if len(value) > self.max_bytes:
            raise EventTooLarge(event_type.key, len(value), self.max_bytes, _largest_field(payload))
        return value

    def plan(self, key: str, version: int | None = None) -> _TypePlan:
        """What every event of one (type, version) shares, worked out on its first event."""
        try:
            plan = self._plans.get((key, version))
        except TypeError:  # an unhashable key or version: event_type() says what is wrong with it
            plan = None
        if plan is None:
            event_type = self.event_type(key, version)
            plan = self._plans[(key, version)] = _TypePlan(
                event_type, event_type.key, event_type.ingress_topic,
                any("string" in _types(f.avro_type) and any(t not in ("null", "string") for t in f.avro_type)
                    for f in event_type.fields if isinstance(f.avro_type, list)),
                event_type.encrypted_fields,
                compile_writer(event_type, MARKER + self.codec.fingerprint(event_type)),
                _type_headers(event_type.dept, event_type.key, event_type.version))
            self.type_by_topic[plan.topic] = plan.key
        return plan

    def _encode_or_explain(self, event_type: EventType, payload: Any, meta: list[Problem]) -> bytes:
        """The failure path: every problem, field by field, as typed reasons (or the bytes, if there is none)."""
        problems = meta + _bytes_problems(event_type, payload)
        problems += [Problem(p.field, p.reason) for p in self.codec.validate(event_type, payload)
                     if p.field not in {q.field for q in problems}]
        if problems:
            raise InvalidEvent(event_type.key, problems)
        try:
            return self.codec.encode(event_type, payload)
        except EncodeError as exc:  # the codec found what validate() did not; keep its field
            raise InvalidEvent(event_type.key, [Problem(exc.field, exc.reason)]) from None
        except (UnknownSchemaError, ValueError, TypeError, OverflowError) as exc:
            raise InvalidEvent(event_type.key, [Problem("", f"does not encode ({type(exc).__name__})")]) from None


class Publisher:
    """A department's (or the gateway's) producer onto the private cluster's ingress topics.

    `dept=None` is the gateway: it may write every ingress topic and names the department per call,
    always the one it authenticated, never one taken from a request body.
    """

    def __init__(
        self,
        dept: str | None,
        producer: KafkaProducerLike,
        encoder: EventEncoder,
        ack_timeout: float = DEFAULT_ACK_TIMEOUT,
    ) -> None:
        self.dept = dept
        self.encoder = encoder
        self.ack_timeout = ack_timeout
        self._producer = producer
        self._lock = threading.Lock()
        self._failed_async = 0

    def __repr__(self) -> str:
        return f"Publisher(dept={self.dept!r})"

    @classmethod
    def for_department(cls, dept: str, *, catalog: Catalog | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
                       ack_timeout: float = DEFAULT_ACK_TIMEOUT, **kafka_overrides: Any) -> Publisher:
        """Log in with the department's AppRole and publish with its own Kafka identity and its own data keys."""
        session = VaultSession(dept)
        creds = session.kafka_credentials(PRIVATE)
        return cls.with_credentials(dept, creds, catalog=catalog, max_bytes=max_bytes, ack_timeout=ack_timeout,
                                    sealer=_sealer(session, ack_timeout), **kafka_overrides)

    @classmethod
    def for_gateway(cls, *, catalog: Catalog | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
                    ack_timeout: float = DEFAULT_ACK_TIMEOUT, **kafka_overrides: Any) -> Publisher:
        session = VaultSession("gateway")
        creds = session.kafka_credentials(PRIVATE)
        return cls.with_credentials(None, creds, catalog=catalog, max_bytes=max_bytes, ack_timeout=ack_timeout,
                                    sealer=_sealer(session, ack_timeout), **kafka_overrides)

    @classmethod
    def with_credentials(cls, dept: str | None, creds: KafkaCredentials, *, catalog: Catalog | None = None,
                         max_bytes: int = DEFAULT_MAX_BYTES, ack_timeout: float = DEFAULT_ACK_TIMEOUT,
                         sealer: FieldSealer | None = None, **kafka_overrides: Any) -> Publisher:
        # librdkafka gives up on a message after message.timeout.ms; keep it near the ack timeout so a
        # caller that was told "timed out" is not surprised by a much later delivery.
        conf: dict[str, Any] = {"message.timeout.ms": int(max(ack_timeout, 1.0) * 1000),
                                "message.max.bytes": max(max_bytes + 64 * 1024, 1_000_000)}
        conf.update(kafka_overrides)
        encoder = EventEncoder(catalog or load_catalog(), max_bytes=max_bytes, sealer=sealer)
        return cls(dept, kafka.producer(PRIVATE, creds, **conf), encoder, ack_timeout)

    # -- encoding -----------------------------------------------------------------------------------

    def prepare(self, event_type_key: str, payload: Any, *, event_id: str | None = None,
                occurred_at_ms: int | None = None, trace_id: str | None = None, version: int | None = None,
                on_behalf_of: str | None = None) -> Envelope:
        """Validate and encode without sending (what the outbox stores)."""
        dept = self._dept_for(event_type_key, on_behalf_of)
        return self.encoder.encode(dept, event_type_key, payload, event_id=event_id, occurred_at_ms=occurred_at_ms,
                                   trace_id=trace_id, version=version)

    def _dept_for(self, event_type_key: str, on_behalf_of: str | None) -> str:
        if self.dept is None:
            if on_behalf_of is None:
                raise ProducerError("the gateway publisher must name the authenticated department", event_type_key)
            return on_behalf_of
        if on_behalf_of is not None and on_behalf_of != self.dept:
            raise ProducerError(f"publisher of {self.dept!r} cannot publish on behalf of {on_behalf_of!r}",
                                event_type_key)
        return self.dept

    # -- sending ------------------------------------------------------------------------------------

    def publish(self, event_type_key: str, payload: Any, *, event_id: str | None = None,
                occurred_at_ms: int | None = None, trace_id: str | None = None, version: int | None = None,
                on_behalf_of: str | None = None, timeout: float | None = None) -> Delivery:
        """Send one event and wait until every in-sync replica has it."""
        envelope = self.prepare(event_type_key, payload, event_id=event_id, occurred_at_ms=occurred_at_ms,
                                trace_id=trace_id, version=version, on_behalf_of=on_behalf_of)
        return self.send(envelope, timeout=timeout)

    def send(self, envelope: Envelope, timeout: float | None = None) -> Delivery:
        """Send an already encoded event and wait for its acknowledgement."""
        done = threading.Event()
        outcome: list[tuple[Delivery | None, ProducerError | None]] = []

        def on_done(delivery: Delivery | None, error: ProducerError | None) -> None:
            outcome.append((delivery, error))
            done.set()

        self.send_async(envelope, on_done)
        deadline = time.monotonic() + (self.ack_timeout if timeout is None else timeout)
        while not done.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeliveryTimeout(envelope.event_type, envelope.event_id, envelope.topic,
                                      "no acknowledgement in time")
            # Several threads may poll at once (the gateway); each waits for its own event.
            self._producer.poll(min(0.05, remaining))
        delivery, error = outcome[0]
        if error is not None:
            raise error
        assert delivery is not None
        return delivery

    def publish_async(self, event_type_key: str, payload: Any, *, event_id: str | None = None,
                      occurred_at_ms: int | None = None, trace_id: str | None = None, version: int | None = None,
                      on_behalf_of: str | None = None, on_delivery: DeliveryCallback | None = None) -> str:
        """Queue one event (validated first) and return its event id; `on_delivery` reports the outcome.

        Call `flush()` to wait for every queued event. Without a callback, failures are logged and counted.
        """
        dept = self._dept_for(event_type_key, on_behalf_of)
        plan = self.encoder.plan(event_type_key, version)
        value = self.encoder.value(plan, dept, payload, event_id, occurred_at_ms, trace_id)
        if not event_id or not trace_id:
            new_event_id, new_trace_id = _new_ids()
            event_id, trace_id = event_id or new_event_id, trace_id or new_trace_id
        occurred = int(time.time() * 1000) if occurred_at_ms is None else occurred_at_ms
        key = event_id.encode("ascii")
        self._produce(plan.topic, value, key,
                      _headers(key, plan.type_headers, str(occurred).encode("ascii"), trace_id.encode("ascii")),
                      self._reporter(on_delivery))
        return event_id

    def publish_many(self, events: Iterable[OutgoingEvent | tuple[Any, ...]], *, on_behalf_of: str | None = None,
                     on_delivery: DeliveryCallback | None = None) -> list[str]:
        """Queue a batch of events and return their event ids in order; `flush()` waits for the acknowledgements.

        Every event is checked and encoded before any is queued: one that is refused raises its typed
        ProducerError, with a note naming its place in the batch, and nothing of the batch is sent. `on_delivery`
        reports each outcome; without it, failures are logged and counted as for `publish_async`.
        """
        dept = self._dept_for("", on_behalf_of)
        encoder, plan_of, max_bytes = self.encoder, self.encoder.plan, self.encoder.max_bytes
        # Held between checking and sending as columns of bytes and text, which the garbage collector does not
        # track: a batch of tuples and header lists held that long would make it walk them again and again.
        plans: list[_TypePlan] = []
        values: list[bytes] = []
        ids: list[str | None] = []
        traces: list[str | None] = []
        stamps: list[bytes] = []
        last_ms, stamp = -1, b""
        for index, event in enumerate(events):
            try:
                if len(event) != 6:
                    event = OutgoingEvent(*event)
                key, payload, version, event_id, occurred_at_ms, trace_id = event
                plan = plan_of(key, version)
                # What `encoder.value` does first for an event with nothing to check but its payload, without the
                # call; whatever this does not take, `value` decides (and refuses with the typed error).
                writer = plan.plain_writer
                value = (writer.write(payload) if writer is not None and plan.event_type.dept == dept
                         and event_id is None and occurred_at_ms is None and trace_id is None else None)
                if value is None or len(value) > max_bytes:
                    value = encoder.value(plan, dept, payload, event_id, occurred_at_ms, trace_id)
                values.append(value)
            except ProducerError as exc:
                exc.add_note(f"event {index} of the batch; no event of the batch was queued")
                raise
            plans.append(plan)
            ids.append(event_id or None)
            traces.append(trace_id or None)
            if occurred_at_ms is None:
                now_ms = int(time.time() * 1000)
                if now_ms != last_ms:  # the same stamp serves every event of the same millisecond
                    last_ms, stamp = now_ms, str(now_ms).encode("ascii")
                stamps.append(stamp)
            else:
                stamps.append(str(occurred_at_ms).encode("ascii"))
        fresh = _uuid4_hexes(2 * len(values))  # an event id and a trace id per event, used where none was given
        report = self._reporter(on_delivery)
        produce = self._producer.produce
        for i, plan in enumerate(plans):
            event_id, trace_id = ids[i], traces[i]
            if event_id is None:
                event_id = ids[i] = fresh[64 * i:64 * i + 32]
            if trace_id is None:
                trace_id = fresh[64 * i + 32:64 * i + 64]
            key_bytes = event_id.encode("ascii")
            headers = _headers(key_bytes, plan.type_headers, stamps[i], trace_id.encode("ascii"))
            try:
                produce(plan.topic, value=values[i], key=key_bytes, headers=headers, on_delivery=report)
            except (BufferError, KafkaException):  # a full local queue, or a refusal: the one-by-one path says which
                self._produce(plan.topic, values[i], key_bytes, headers, report)
        return ids  # type: ignore[return-value]  # every None was filled above

    def send_async(self, envelope: Envelope, on_delivery: DeliveryCallback | None = None) -> None:
        if self.dept is not None and envelope.dept != self.dept:
            raise NotOwner(self.dept, envelope.event_type, envelope.dept)
        self._produce(envelope.topic, envelope.value, envelope.key, envelope.headers, self._reporter(on_delivery))

    def _produce(self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]],
                 report: Callable[[Any, Any], None]) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=headers, on_delivery=report)
                return
            except BufferError:
                # The local queue is full: serve delivery reports to make room, then try again.
                self._producer.poll(0.1)
            except KafkaException as exc:
                raise _delivery_error(self._type_of(topic), key.decode("ascii"), topic, exc.args[0]) from None

    def _reporter(self, on_delivery: DeliveryCallback | None) -> Callable[[Any, Any], None]:
        # One callback for every event that has no callback of its own: nothing is made per event to report it.
        return self._report_unwatched if on_delivery is None else functools.partial(self._report, on_delivery)

    def _report_unwatched(self, err: KafkaError | None, msg: Any) -> None:
        # Most reports of a batch: a delivered event nobody asked about costs this test and nothing more.
        if err is not None or log.isEnabledFor(logging.DEBUG):
            self._report(None, err, msg)

    def _report(self, on_delivery: DeliveryCallback | None, err: KafkaError | None, msg: Any) -> None:
        """A delivery report: the event id is the record's key, the event type follows from the ingress topic."""
        if err is None:
            # Served once per event: no Delivery is made, nor a log line formatted, that nobody will see.
            if on_delivery is not None:
                on_delivery(Delivery(msg.key().decode("ascii"), msg.topic(), msg.partition(), msg.offset()), None)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("delivered event_id=%s event_type=%s topic=%s partition=%d offset=%d",
                          msg.key().decode("ascii"), self._type_of(msg.topic()), msg.topic(), msg.partition(),
                          msg.offset())
            return
        topic, event_id = msg.topic(), msg.key().decode("ascii")
        failure = _delivery_error(self._type_of(topic), event_id, topic, err)
        log.warning("not delivered event_id=%s event_type=%s topic=%s reason=%s",
                    event_id, failure.event_type, topic, err.name())
        if on_delivery is not None:
            on_delivery(None, failure)
        else:
            with self._lock:
                self._failed_async += 1

    def _type_of(self, topic: str) -> str:
        known = self.encoder.type_by_topic.get(topic)
        if known is not None:
            return known
        # An envelope encoded elsewhere (the outbox): its ingress topic names the type, ingress.<dept>.<event>.
        return topic.removeprefix("ingress.")

    def flush(self, timeout: float | None = None) -> int:
        """Wait for every queued event's report; returns how many are still outstanding (0 when done)."""
        return int(self._producer.flush(self.ack_timeout if timeout is None else timeout))

    def poll(self, timeout: float = 0.0) -> int:
        return int(self._producer.poll(timeout))

    @property
    def failed_without_callback(self) -> int:
        """Async events that failed and had no callback to tell; they are in the log too."""
        return self._failed_async


def _sealer(session: VaultSession, ack_timeout: float) -> FieldSealer:
    """Data keys of the identity's own Transit policy; an unreachable Vault is waited for no longer than an ack."""
    return FieldSealer(TransitKeyService(session, timeout=min(ack_timeout, DEFAULT_VAULT_TIMEOUT)))


def _delivery_error(event_type: str, event_id: str, topic: str, err: Any) -> DeliveryFailed:
    name = err.name() if hasattr(err, "name") else type(err).__name__
    code = err.code() if hasattr(err, "code") else None
    if code == KafkaError._MSG_TIMED_OUT:
        return DeliveryTimeout(event_type, event_id, topic, f"Kafka did not acknowledge ({name})")
    if code == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        return DeliveryFailed(event_type, event_id, topic, "refused by the broker's ACLs")
    return DeliveryFailed(event_type, event_id, topic, name)


def _headers(event_id: bytes, type_headers: tuple[tuple[str, bytes], ...], occurred_at: bytes,
             trace_id: bytes) -> list[tuple[str, bytes]]:
    """An event's headers, in the order `Envelope.headers` gives them."""
    return [(h.EVENT_ID, event_id), *type_headers, (h.OCCURRED_AT, occurred_at), (h.TRACE_ID, trace_id)]


_VERSION_4 = bytes((b & 0x0F) | 0x40 for b in range(256))  # RFC 4122: the version nibble is 4
_VARIANT_10 = bytes((b & 0x3F) | 0x80 for b in range(256))  # and the variant's two top bits are 10


def _uuid4_hexes(count: int) -> str:
    """`count` random version-4 UUIDs in hex, end to end (32 digits each), from one read of the OS's random source.

    The same as `uuid.uuid4().hex` `count` times: the version and variant bits are set for all of them at once.
    """
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_VARIANT_10)
    return raw.hex()


class _IdPool:
    """Event and trace ids for events published one by one: 256 pairs from one read of the OS's random source.

    Shared by threads (a lock hands each pair out once) and renewed in a forked child, which must never hand out
    its parent's ids again.
    """

    _PAIRS = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._digits = ""
        self._at = 0
        self._pid = -1

    def pair(self) -> tuple[str, str]:
        with self._lock:
            at = self._at
            if at >= len(self._digits) or self._pid != os.getpid():
                self._digits, at, self._pid = _uuid4_hexes(2 * self._PAIRS), 0, os.getpid()
            self._at = at + 64
            digits = self._digits
        return digits[at:at + 32], digits[at + 32:at + 64]


_new_ids = _IdPool().pair  # two random version-4 UUIDs in hex: an event id and a trace id


def _meta_problems(event_id: str | None, occurred_at_ms: int | None, trace_id: str | None) -> list[Problem]:
    problems = []
    for name, value in (("event_id", event_id), ("trace_id", trace_id)):
        if value is None:
            continue
        if not isinstance(value, str) or not value or len(value) > _MAX_ID_LENGTH or not _printable_ascii(value):
            problems.append(Problem(name, f"must be 1 to {_MAX_ID_LENGTH} printable ASCII characters"))
    if occurred_at_ms is not None and (isinstance(occurred_at_ms, bool) or not isinstance(occurred_at_ms, int)
                                       or not 0 <= occurred_at_ms < 2**63):
        problems.append(Problem("occurred_at_ms", "must be a non-negative integer (epoch milliseconds)"))
    return problems


def _printable_ascii(text: str) -> bool:
    return all(0x21 <= ord(ch) <= 0x7E for ch in text)


def _bytes_problems(event_type: EventType, payload: Any) -> list[Problem]:
    """Text handed in as bytes: name bad UTF-8 for what it is rather than as a type mismatch."""
    if not isinstance(payload, Mapping):
        return []
    problems = []
    for spec in event_type.fields:
        value = payload.get(spec.name)
        if isinstance(value, (bytes, bytearray)) and "string" in _types(spec.avro_type):
            try:
                bytes(value).decode("utf-8")
                problems.append(Problem(spec.name, "expected text (str), got bytes"))
            except UnicodeDecodeError:
                problems.append(Problem(spec.name, "not valid UTF-8 text"))
    return problems


def _types(avro_type: object) -> Sequence[str]:
    if isinstance(avro_type, str):
        return [avro_type]
    if isinstance(avro_type, list):
        return [t for t in avro_type if isinstance(t, str)]
    return []


def _largest_field(payload: Mapping[str, Any]) -> str:
    def size(value: Any) -> int:
        if isinstance(value, (bytes, bytearray)):
            return len(value)
        return len(str(value).encode("utf-8", "replace"))

    return max(payload, key=lambda name: size(payload[name]), default="")
