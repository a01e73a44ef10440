from __future__ import annotations

import json

import pytest

from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.config import REPO_ROOT
from hybridbus.adapters.fieldcrypt import FieldOpener, FieldSealer, LocalKeyService, is_sealed, open_payload
from hybridbus.adapters.loaders import load_catalog
from producers.exceptions import (
    DeliveryTimeout,
    EncryptionUnavailable,
    EventTooLarge,
    InvalidEvent,
    NotOwner,
    UnknownEventType,
)
from producers.publisher import Delivery, EventEncoder, OutgoingEvent, Publisher
from routing import headers as h
from tests.unit.producers.fakes import FakeProducer

SAMPLES = REPO_ROOT / "schemas" / "samples"
CATALOG = load_catalog()


def sample(name: str = "market.licence_granted.v1") -> dict:
    return json.loads((SAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def market(mode: str = "ack", max_bytes: int = 1024 * 1024) -> tuple[Publisher, FakeProducer]:
    producer = FakeProducer(mode)
    return Publisher("market", producer, EventEncoder(CATALOG, max_bytes=max_bytes), ack_timeout=0.3), producer


def test_publish_writes_avro_to_the_ingress_topic_with_every_header() -> None:
    publisher, producer = market()
    delivery = publisher.publish("market.licence_granted", sample(), trace_id="trace-1", occurred_at_ms=1700000000000)
    [msg] = producer.sent
    assert delivery == Delivery(delivery.event_id, "ingress.market.licence_granted", 0, 0)
    headers = dict(msg.headers())
    assert msg.key() == delivery.event_id.encode() == headers[h.EVENT_ID]
    assert len(delivery.event_id) == 32 and int(delivery.event_id, 16) >= 0
    assert headers[h.DEPT] == b"market"
    assert headers[h.EVENT_TYPE] == b"market.licence_granted"
    assert headers[h.SCHEMA_VERSION] == b"1"
    assert headers[h.OCCURRED_AT] == b"1700000000000"
    assert headers[h.TRACE_ID] == b"trace-1"
    event_type, payload = AvroCodec.for_catalog(CATALOG).decode(msg.value())
    assert (event_type.key, payload) == ("market.licence_granted", sample())


@pytest.mark.parametrize("sample_name", sorted(p.stem for p in SAMPLES.glob("*.json")))
def test_every_sample_encodes_for_its_own_department(sample_name: str) -> None:
    dept, event, version = sample_name.split(".")
    encoder = EventEncoder(CATALOG, sealer=FieldSealer(LocalKeyService()))
    envelope = encoder.encode(dept, f"{dept}.{event}", sample(sample_name), version=int(version[1:]))
    assert envelope.topic == f"ingress.{dept}.{event}" and envelope.version == int(version[1:])


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (lambda p: p.pop("district"), "district", "missing"),
        (lambda p: p.update(granted_on=20261120), "granted_on", "expected string"),
        (lambda p: p.update(company_name="\udcff"), "company_name", "UTF-8"),
        (lambda p: p.update(company_name=b"\xff\xfe"), "company_name", "UTF-8"),
        (lambda p: p.update(unknown_field="x"), "unknown_field", "not a field"),
    ],
)
def test_bad_payload_names_the_field_and_sends_nothing(change, field: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    publisher, producer = market()
    payload = sample()
    change(payload)
    with pytest.raises(InvalidEvent) as caught:
        publisher.publish("market.licence_granted", payload)
    assert caught.value.field == field and reason in str(caught.value)
    assert "market.licence_granted" in str(caught.value)
    assert producer.sent == [] and producer._queued == []


def test_an_int_field_given_a_string_is_refused() -> None:
    publisher, producer = market()
    payload = sample("transport.bus_arrival.v2")
    payload["delay_seconds"] = "12"
    transport = Publisher("transport", producer, publisher.encoder)
    with pytest.raises(InvalidEvent) as caught:
        transport.publish("transport.bus_arrival", payload)
    assert caught.value.field == "delay_seconds" and "12" not in str(caught.value)
    assert producer.sent == []


def test_error_messages_never_carry_the_value() -> None:
    publisher, _ = market()
    payload = sample()
    payload["granted_on"] = 424242
    with pytest.raises(InvalidEvent) as caught:
        publisher.publish("market.licence_granted", payload)
    assert "424242" not in str(caught.value) and "424242" not in repr(caught.value.problems)


def test_oversize_event_is_refused_naming_the_largest_field() -> None:
    publisher, producer = market(max_bytes=2048)
    payload = sample()
    payload["business_scope"] = "x" * 5000
    with pytest.raises(EventTooLarge) as caught:
        publisher.publish("market.licence_granted", payload)
    assert caught.value.field == "business_scope" and caught.value.limit == 2048
    with pytest.raises(EventTooLarge):
        publisher.publish_many([("market.licence_granted", sample()), ("market.licence_granted", payload)])
    assert producer.sent == [] and producer._queued == []


def test_unknown_type_and_another_departments_type_are_refused_client_side() -> None:
    publisher, producer = market()
    with pytest.raises(UnknownEventType):
        publisher.publish("market.no_such_event", {})
    with pytest.raises(UnknownEventType):
        publisher.publish("market.licence_granted", sample(), version=9)
    with pytest.raises(NotOwner) as caught:
        publisher.publish("health.hospital_admission", sample("health.hospital_admission.v1"))
    assert caught.value.owner == "health"
    assert producer.sent == []


def test_bad_event_id_is_refused() -> None:
    publisher, _ = market()
    with pytest.raises(InvalidEvent) as caught:
        publisher.publish("market.licence_granted", sample(), event_id="has space")
    assert caught.value.field == "event_id"


def test_older_version_is_published_with_its_version_header() -> None:
    producer = FakeProducer()
    transport = Publisher("transport", producer, EventEncoder(CATALOG))
    transport.publish("transport.bus_arrival", sample("transport.bus_arrival.v1"), version=1)
    assert dict(producer.sent[0].headers())[h.SCHEMA_VERSION] == b"1"


def test_publish_async_reports_every_delivery_on_flush() -> None:
    publisher, producer = market()
    seen: list[Delivery] = []
    ids = [publisher.publish_async("market.licence_granted", sample(), on_delivery=lambda d, e: seen.append(d))
           for _ in range(5)]
    assert seen == []
    assert publisher.flush(1) == 0
    assert [d.event_id for d in seen] == ids


def test_sync_publish_times_out_without_an_ack() -> None:
    publisher, _ = market(mode="silent")
    with pytest.raises(DeliveryTimeout) as caught:
        publisher.publish("market.licence_granted", sample(), event_id="fixed-id")
    assert caught.value.event_id == "fixed-id"


def test_repr_of_the_publisher_shows_no_credentials() -> None:
    publisher, _ = market()
    assert repr(publisher) == "Publisher(dept='market')"


# --- the fast path (the codec's writer with its exact type check) refuses exactly what the validator refuses ---

def transport() -> tuple[Publisher, FakeProducer]:
    producer = FakeProducer()
    return Publisher("transport", producer, EventEncoder(CATALOG), ack_timeout=0.3), producer


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("delay_seconds", True, "expected int, got a boolean"),  # the writer would write 1
        ("delay_seconds", 2**31, "out of range for int"),  # the writer would write a long
        ("delay_seconds", -(2**31) - 1, "out of range for int"),
        ("delay_seconds", 12.0, "expected int, got float"),  # the writer would write 12
        ("arrived_at", 2**63, "out of range for long"),
        ("arrived_at", False, "expected long, got a boolean"),
        ("stop_name", "人民\ud800广场", "not valid UTF-8 text"),
        ("stop_name", b"\xe4\xba\xba", "expected text (str), got bytes"),
        ("stop_name", bytearray(b"\xff"), "not valid UTF-8 text"),
        ("stop_name", None, "expected string, got NoneType"),
        ("occupancy", 3, "expected string, got int"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_what_the_writer_would_coerce_is_refused_naming_the_field(field: str, value: object, reason: str) -> None:
    publisher, producer = transport()
    payload = {**sample("transport.bus_arrival.v2"), field: value}
    with pytest.raises(InvalidEvent) as caught:
        publisher.publish_async("transport.bus_arrival", payload)
    assert caught.value.field == field and reason in str(caught.value)
    assert [(p.field, p.reason) for p in caught.value.problems] == [(field, reason)]
    assert producer._queued == [] and producer.sent == []


def test_every_problem_is_listed_on_the_failure_path() -> None:
    publisher, _ = transport()
    payload = {**sample("transport.bus_arrival.v2"), "delay_seconds": True, "stop_name": "\udcff", "bogus": 1}
    del payload["route"]
    with pytest.raises(InvalidEvent) as caught:
        publisher.publish_async("transport.bus_arrival", payload, trace_id="has space")
    assert {p.field: p.reason for p in caught.value.problems} == {
        "trace_id": "must be 1 to 128 printable ASCII characters",
        "bogus": "not a field of this event type",
        "route": "missing",
        "stop_name": "not valid UTF-8 text",
        "delay_seconds": "expected int, got a boolean",
    }


def test_the_fast_path_writes_the_same_bytes_as_before() -> None:
    # Optional fields left out take their default; None for a nullable field is written as null.
    publisher, producer = transport()
    payload = sample("transport.bus_arrival.v2")
    without_default = {k: v for k, v in payload.items() if k != "occupancy"}
    codec = AvroCodec.for_catalog(CATALOG)
    for body in (payload, without_default):
        publisher.publish_async("transport.bus_arrival", body)
    feedback = Publisher("govservice", producer, publisher.encoder)
    feedback.publish_async("govservice.citizen_feedback", {**sample("govservice.citizen_feedback.v1"), "contact": None})
    assert publisher.flush(1) == 0
    decoded = [codec.decode(msg.value())[1] for msg in producer.sent]
    assert decoded == [payload, {**without_default, "occupancy": "unknown"},
                       {**sample("govservice.citizen_feedback.v1"), "contact": None}]


def test_generated_event_and_trace_ids_are_distinct_uuid4_hex() -> None:
    import uuid

    publisher, producer = transport()
    for _ in range(50):
        publisher.publish_async("transport.bus_arrival", sample("transport.bus_arrival.v2"))
    publisher.flush(1)
    ids = [(dict(m.headers())[h.EVENT_ID].decode(), dict(m.headers())[h.TRACE_ID].decode()) for m in producer.sent]
    flat = [i for pair in ids for i in pair]
    assert len(set(flat)) == 100
    for value in flat:
        parsed = uuid.UUID(hex=value)
        assert parsed.hex == value and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_given_ids_are_kept_and_only_the_missing_one_is_made() -> None:
    publisher, producer = transport()
    publisher.publish_async("transport.bus_arrival", sample("transport.bus_arrival.v2"), event_id="evt-1")
    publisher.flush(1)
    headers = dict(producer.sent[0].headers())
    assert headers[h.EVENT_ID] == b"evt-1" == producer.sent[0].key()
    assert len(headers[h.TRACE_ID]) == 32 and headers[h.TRACE_ID] != b"evt-1"


def test_an_async_failure_goes_to_the_callback_or_is_counted_without_one() -> None:
    producer = FakeProducer("refuse")
    publisher = Publisher("market", producer, EventEncoder(CATALOG), ack_timeout=0.3)
    outcomes: list = []
    publisher.publish_async("market.licence_granted", sample(), on_delivery=lambda d, e: outcomes.append((d, e)))
    publisher.publish_async("market.licence_granted", sample())
    assert publisher.flush(1) == 0
    [(delivery, error)] = outcomes
    assert delivery is None and "refused by the broker's ACLs" in str(error)
    assert publisher.failed_without_callback == 1


def test_restricted_fields_leave_the_client_sealed_and_open_with_the_key() -> None:
    keys = LocalKeyService()
    producer = FakeProducer()
    publisher = Publisher("health", producer, EventEncoder(CATALOG, sealer=FieldSealer(keys)), ack_timeout=0.3)
    plain = sample("health.hospital_admission.v1")
    publisher.publish("health.hospital_admission", plain)
    [msg] = producer.sent
    assert plain["patient_id_number"].encode() not in msg.value() and plain["diagnosis_code"].encode() not in msg.value()
    assert plain["patient_name"].encode() in msg.value()  # sensitive: below the threshold, graded by presence only
    event_type, payload = AvroCodec.for_catalog(CATALOG).decode(msg.value())  # any Avro reader still decodes it
    assert is_sealed(payload["patient_id_number"]) and is_sealed(payload["diagnosis_code"])
    opened, sealed = open_payload(event_type, payload, FieldOpener(keys))
    assert (opened, sealed) == (plain, ())


def test_an_event_with_an_encrypted_field_is_refused_without_a_key_service_and_nothing_is_sent() -> None:
    producer = FakeProducer()
    publisher = Publisher("health", producer, EventEncoder(CATALOG), ack_timeout=0.3)
    with pytest.raises(EncryptionUnavailable, match="field 'patient_id_number' must be encrypted at the source"):
        publisher.publish("health.hospital_admission", sample("health.hospital_admission.v1"))
    assert producer.sent == []


def test_an_encrypted_field_that_is_not_text_is_refused_by_field_not_sealed() -> None:
    encoder = EventEncoder(CATALOG, sealer=FieldSealer(LocalKeyService()))
    with pytest.raises(InvalidEvent) as caught:
        encoder.encode("health", "health.hospital_admission",
                       {**sample("health.hospital_admission.v1"), "patient_id_number": "11\ud800"})
    assert caught.value.field == "patient_id_number" and "UTF-8" in str(caught.value)


def test_publish_many_sends_what_publish_async_sends_in_the_same_order() -> None:
    given = {"event_id": "evt-7", "trace_id": "trace-7", "occurred_at_ms": 1700000000000}
    batch = [("transport.bus_arrival", sample("transport.bus_arrival.v2")),
             ("transport.bus_arrival", sample("transport.bus_arrival.v1"), 1),
             OutgoingEvent("transport.road_closure", sample("transport.road_closure.v1"), **given)]
    one_by_one, first = transport()
    for event in batch:
        event = OutgoingEvent(*event)
        one_by_one.publish_async(event.event_type, event.payload, version=event.version, event_id=event.event_id,
                                 occurred_at_ms=event.occurred_at_ms, trace_id=event.trace_id)
    batched, second = transport()
    ids = batched.publish_many(batch)
    assert one_by_one.flush(1) == batched.flush(1) == 0
    sent_one_by_one, sent_batched = first.sent, second.sent

    def without_ids(msg):  # type: ignore[no-untyped-def]  # what must be alike; ids are random, the stamp is now
        made = {h.EVENT_ID, h.TRACE_ID, h.OCCURRED_AT} if msg.key() != b"evt-7" else set()
        return msg.topic(), msg.value(), [(k, v) for k, v in msg.headers() if k not in made]

    assert [without_ids(m) for m in sent_batched] == [without_ids(m) for m in sent_one_by_one]
    assert ids == [m.key().decode() for m in sent_batched] and ids[2] == "evt-7"
    headers = [dict(m.headers()) for m in sent_batched]
    assert headers[2][h.TRACE_ID] == b"trace-7" and headers[2][h.OCCURRED_AT] == b"1700000000000"
    assert [k for k, _ in sent_batched[0].headers()] == [k for k, _ in sent_one_by_one[0].headers()]
    assert len({hd[h.EVENT_ID] for hd in headers} | {hd[h.TRACE_ID] for hd in headers}) == 6


def test_publish_many_queues_nothing_when_one_event_is_refused_and_names_it() -> None:
    publisher, producer = transport()
    bad = {**sample("transport.bus_arrival.v2"), "delay_seconds": "late"}
    with pytest.raises(InvalidEvent) as caught:
        publisher.publish_many([("transport.bus_arrival", sample("transport.bus_arrival.v2")),
                                ("transport.bus_arrival", bad)])
    assert caught.value.field == "delay_seconds" and "event 1 of the batch" in "".join(caught.value.__notes__)
    assert producer._queued == [] and producer.sent == []
    with pytest.raises(NotOwner):
        publisher.publish_many([("market.licence_granted", sample())])
    assert producer._queued == []


def test_publish_many_reports_each_failure_to_the_callback_or_counts_it() -> None:
    producer = FakeProducer("refuse")
    publisher = Publisher("market", producer, EventEncoder(CATALOG), ack_timeout=0.3)
    outcomes: list = []
    ids = publisher.publish_many([("market.licence_granted", sample())] * 2,
                                 on_delivery=lambda d, e: outcomes.append((d, e)))
    publisher.publish_many([("market.licence_granted", sample())] * 3)
    assert publisher.flush(1) == 0
    assert [e.event_id for d, e in outcomes if d is None] == ids
    assert all(e.event_type == "market.licence_granted" and e.topic == "ingress.market.licence_granted"
               for _, e in outcomes)
    assert publisher.failed_without_callback == 3


def test_publish_many_reports_deliveries_to_the_callback() -> None:
    publisher, producer = transport()
    outcomes: list = []
    ids = publisher.publish_many([("transport.bus_arrival", sample("transport.bus_arrival.v2"))] * 2,
                                 on_delivery=lambda d, e: outcomes.append((d, e)))
    assert publisher.flush(1) == 0
    assert outcomes == [(Delivery(ids[0], "ingress.transport.bus_arrival", 0, 0), None),
                        (Delivery(ids[1], "ingress.transport.bus_arrival", 0, 1), None)]


def test_publish_many_seals_restricted_fields_as_publish_does() -> None:
    keys = LocalKeyService()
    producer = FakeProducer()
    publisher = Publisher("health", producer, EventEncoder(CATALOG, sealer=FieldSealer(keys)), ack_timeout=0.3)
    plain = sample("health.hospital_admission.v1")
    publisher.publish_many([("health.hospital_admission", plain)] * 3)
    assert publisher.flush(1) == 0 and len(producer.sent) == 3
    for msg in producer.sent:
        assert plain["patient_id_number"].encode() not in msg.value()
        event_type, payload = AvroCodec.for_catalog(CATALOG).decode(msg.value())
        assert open_payload(event_type, payload, FieldOpener(keys)) == (plain, ())
    unsealed = Publisher("health", FakeProducer(), EventEncoder(CATALOG), ack_timeout=0.3)
    with pytest.raises(EncryptionUnavailable):
        unsealed.publish_many([("health.hospital_admission", plain)])


def test_a_batch_of_generated_ids_is_distinct_uuid4_hex() -> None:
    import uuid

    publisher, producer = transport()
    ids = publisher.publish_many([("transport.bus_arrival", sample("transport.bus_arrival.v2"))] * 300)
    publisher.flush(1)
    traces = [dict(m.headers())[h.TRACE_ID].decode() for m in producer.sent]
    assert len(set(ids) | set(traces)) == 600
    for value in ids + traces:
        parsed = uuid.UUID(hex=value)
        assert parsed.hex == value and parsed.version == 4 and parsed.variant == uuid.RFC_4122
