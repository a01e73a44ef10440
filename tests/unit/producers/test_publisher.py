from __future__ import annotations

import json

import pytest

from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.config import REPO_ROOT
from hybridbus.adapters.loaders import load_catalog
from producers.exceptions import DeliveryTimeout, EventTooLarge, InvalidEvent, NotOwner, UnknownEventType
from producers.publisher import Delivery, EventEncoder, Publisher
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
    envelope = EventEncoder(CATALOG).encode(dept, f"{dept}.{event}", sample(sample_name), version=int(version[1:]))
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
    assert producer.sent == []


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
