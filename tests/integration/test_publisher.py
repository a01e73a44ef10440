"""The department client against the real stack: every catalog type round-trips, bad input never reaches Kafka."""
from __future__ import annotations

import functools
import json
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, TopicPartition

from hybridbus.adapters import kafka
from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.config import REPO_ROOT, Settings
from hybridbus.adapters.fieldcrypt import FieldOpener, TransitKeyService, is_sealed, open_payload
from hybridbus.adapters.loaders import load_catalog
from hybridbus.adapters.topology import PRIVATE
from hybridbus.adapters.vault import VaultSession
from producers.exceptions import EventTooLarge, InvalidEvent, NotOwner, UnknownEventType
from producers.publisher import Delivery, Publisher
from producers.subscriber import Subscriber
from routing import headers as h
from tests.integration.kafkatools import read_topic

SAMPLES = sorted((REPO_ROOT / "schemas" / "samples").glob("*.json"))
CATALOG = load_catalog()
CODEC = AvroCodec.for_catalog(CATALOG)


def sample_cases() -> list[tuple[str, int, dict]]:
    cases = []
    for path in SAMPLES:
        dept, event, version = path.stem.split(".")
        cases.append((f"{dept}.{event}", int(version[1:]), json.loads(path.read_text(encoding="utf-8"))))
    return cases


def end_offsets(topic: str) -> dict[int, int]:
    consumer = kafka.consumer(PRIVATE, kafka.admin_credentials(PRIVATE), f"hbus-test-{uuid.uuid4().hex[:8]}")
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    finally:
        consumer.close()


@functools.lru_cache(maxsize=None)
def _opener(dept: str) -> FieldOpener:
    return FieldOpener(TransitKeyService(VaultSession(dept)))


def assert_round_trip(topic: str, sent: dict[str, tuple[str, int, dict, str]]) -> None:
    """Every event id in `sent` is on `topic` exactly once, decoding to what was sent, byte-identical on re-encode."""
    records = [r for r in read_topic(PRIVATE, topic, timeout=30) if r.key and r.key.decode() in sent]
    deadline = time.monotonic() + 30
    while len({r.key for r in records}) < len(sent) and time.monotonic() < deadline:
        time.sleep(1)
        records = [r for r in read_topic(PRIVATE, topic, timeout=30) if r.key and r.key.decode() in sent]
    by_id: dict[str, list] = {}
    for record in records:
        by_id.setdefault(record.key.decode(), []).append(record)  # type: ignore[union-attr]
    assert set(by_id) == set(sent), f"missing on {topic}: {set(sent) - set(by_id)}"
    for event_id, (key, version, payload, dept) in sent.items():
        [record] = by_id[event_id]
        event_type, decoded = CODEC.decode(record.value)  # type: ignore[arg-type]
        assert (event_type.key, event_type.version) == (key, version)
        # On the wire every encrypted field is sealed; the owning department, cleared for it, reads the plain value.
        assert all(is_sealed(decoded[f.name]) for f in event_type.encrypted_fields if payload.get(f.name) is not None)
        opened, sealed = open_payload(event_type, decoded, _opener(dept))
        assert opened == payload and sealed == ()
        assert CODEC.encode(event_type, decoded) == record.value
        assert record.headers[h.EVENT_ID] == event_id.encode()
        assert record.headers[h.DEPT] == dept.encode()
        assert record.headers[h.EVENT_TYPE] == key.encode()
        assert record.headers[h.SCHEMA_VERSION] == str(version).encode()
        assert int(record.headers[h.OCCURRED_AT]) > 0 and record.headers[h.TRACE_ID]


@pytest.mark.parametrize(("key", "version", "payload"), sample_cases(), ids=[p.stem for p in SAMPLES])
def test_every_catalog_event_type_round_trips_through_the_client(stack: Settings, key: str, version: int,
                                                                 payload: dict) -> None:
    dept = key.split(".")[0]
    publisher = Publisher.for_department(dept, catalog=CATALOG)
    delivery = publisher.publish(key, payload, version=version, trace_id="it-client")
    assert isinstance(delivery, Delivery) and delivery.offset >= 0
    assert delivery.topic == CATALOG.get(key).ingress_topic
    assert_round_trip(delivery.topic, {delivery.event_id: (key, version, payload, dept)})


def test_publish_async_reports_each_event_after_flush(stack: Settings) -> None:
    publisher = Publisher.for_department("transport", catalog=CATALOG)
    payload = json.loads((REPO_ROOT / "schemas/samples/transport.road_closure.v1.json").read_text(encoding="utf-8"))
    deliveries: list[Delivery] = []
    ids = [publisher.publish_async("transport.road_closure", payload,
                                   on_delivery=lambda d, e: deliveries.append(d)) for _ in range(20)]
    assert publisher.flush(30) == 0
    assert sorted(d.event_id for d in deliveries) == sorted(ids)
    assert_round_trip("ingress.transport.road_closure",
                      {i: ("transport.road_closure", 1, payload, "transport") for i in ids})


def test_broker_refuses_another_departments_ingress_to_a_raw_producer(stack: Settings) -> None:
    # The client refuses first; the ACLs must hold on their own for a client that does not.
    creds = VaultSession("market", stack).kafka_credentials(PRIVATE)
    producer = kafka.producer(PRIVATE, creds, **{"message.timeout.ms": 10000})
    outcome: list = []
    producer.produce("ingress.health.hospital_admission", b"x", on_delivery=lambda e, m: outcome.append(e))
    producer.flush(20)
    assert outcome and outcome[0] is not None
    assert outcome[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    with pytest.raises(NotOwner):
        Publisher.for_department("market", catalog=CATALOG).publish(
            "health.hospital_admission",
            json.loads((REPO_ROOT / "schemas/samples/health.hospital_admission.v1.json").read_text(encoding="utf-8")))


def _bad_inputs() -> list[tuple[str, str, dict, type, str]]:
    good = json.loads((REPO_ROOT / "schemas/samples/transport.road_closure.v1.json").read_text(encoding="utf-8"))
    return [
        ("unknown type", "transport.no_such_event", good, UnknownEventType, ""),
        ("missing field", "transport.road_closure", {k: v for k, v in good.items() if k != "road"}, InvalidEvent, "road"),
        ("wrong type", "transport.road_closure", {**good, "road": ["a"]}, InvalidEvent, "road"),
        ("string for an int", "transport.road_closure", {**good, "starts_at": "1795600800000"}, InvalidEvent, "starts_at"),
        ("oversize", "transport.road_closure", {**good, "reason": "施工" * 300_000}, EventTooLarge, "reason"),
        ("bad UTF-8", "transport.road_closure", {**good, "road": "中山\udcff路"}, InvalidEvent, "road"),
        ("bad UTF-8 bytes", "transport.road_closure", {**good, "road": b"\xe4\xb8"}, InvalidEvent, "road"),
    ]


def test_bad_inputs_give_a_clear_error_and_nothing_reaches_kafka(stack: Settings) -> None:
    topic = "ingress.transport.road_closure"
    publisher = Publisher.for_department("transport", catalog=CATALOG)
    before = end_offsets(topic)
    for name, key, payload, error, field in _bad_inputs():
        with pytest.raises(error) as caught:
            publisher.publish(key, payload)
        assert caught.value.field == field, name
        assert key in str(caught.value), name
        with pytest.raises(error):
            publisher.publish_async(key, payload)
    publisher.flush(10)
    assert end_offsets(topic) == before


def test_subscriber_reads_a_cleared_topic_and_commits_after_the_handler(stack: Settings) -> None:
    # Stand in for the router: write one graded record with the operator login, read it as another department.
    # (A quiet public topic: the subscriber reads from the beginning with a new group.)
    topic = "public.transport.bus_arrival"
    payload = json.loads((REPO_ROOT / "schemas/samples/market.licence_granted.v1.json").read_text(encoding="utf-8"))
    marker = uuid.uuid4().hex
    admin = kafka.producer(PRIVATE, kafka.admin_credentials(PRIVATE))
    admin.produce(topic, CODEC.encode(CATALOG.get("market.licence_granted"), payload), key=marker.encode(),
                  headers=[(h.EVENT_ID, marker.encode())])
    assert admin.flush(20) == 0
    name = f"it-{uuid.uuid4().hex[:8]}"
    seen: list = []
    with Subscriber.for_department("transport", name=name, topics=[topic], catalog=CATALOG) as subscriber:
        subscriber.run(lambda e: seen.append(e), timeout=8, skip_undecodable=True)
    mine = [e for e in seen if e.event_id == marker]
    assert len(mine) == 1 and mine[0].payload == payload and mine[0].event_type == "market.licence_granted"
    again: list = []
    with Subscriber.for_department("transport", name=name, topics=[topic], catalog=CATALOG) as subscriber:
        subscriber.run(lambda e: again.append(e), timeout=5, skip_undecodable=True)
    assert not [e for e in again if e.event_id == marker]


def test_subscriber_default_topics_stay_within_the_departments_clearance(stack: Settings) -> None:
    with Subscriber.for_department("market", name=f"it-{uuid.uuid4().hex[:8]}", catalog=CATALOG) as subscriber:
        topics = subscriber.topics
    assert "public.market.licence_granted" in topics
    assert not [t for t in topics if t.startswith(("sensitive.", "restricted.", "important."))]


def test_bench_client_publishes_every_event_once_and_reports_its_figures(stack: Settings) -> None:
    """The batched publish rate is a figure of `hbus bench client` (and of `make bench`), never a test's;
    here: the command runs on the stack, reports its figures, and every event it sent is on Kafka once."""
    from typer.testing import CliRunner

    from hybridbus.cli.main import app

    topics = sorted({et.ingress_topic for et in CATALOG.latest() if et.dept == "transport"})
    before = {topic: sum(end_offsets(topic).values()) for topic in topics}
    result = CliRunner().invoke(app, ["bench", "client", "--events", "2000", "--dept", "transport", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["events"] == 2000 and data["events_per_s"] > 0 and data["cpu_us_per_event"] > 0
    assert 900 <= data["mean_event_bytes"] <= 1200  # the bench's 1 KB events
    after = {topic: sum(end_offsets(topic).values()) for topic in topics}
    # 2000 timed events and one acknowledged warm-up event per event type; the idempotent producer adds no copy.
    assert sum(after[t] - before[t] for t in topics) == 2000 + len(topics)


def test_cli_publishes_a_sample_and_tail_shows_it_decoded(stack: Settings) -> None:
    from typer.testing import CliRunner

    from hybridbus.cli.main import app

    sample = str(REPO_ROOT / "schemas/samples/transport.road_closure.v1.json")
    published = CliRunner().invoke(app, ["publish", "transport.road_closure", "--json", sample, "--json-out"])
    assert published.exit_code == 0, published.output
    delivery = json.loads(published.output)
    assert delivery["topic"] == "ingress.transport.road_closure" and delivery["offset"] >= 0
    refused = CliRunner().invoke(app, ["publish", "health.hospital_admission", "--dept", "market", "--json", sample])
    assert refused.exit_code == 1
    invalid = CliRunner().invoke(app, ["publish", "transport.road_closure", "--json", "-"], input='{"road": 1}')
    assert invalid.exit_code == 1 and "road" in invalid.output
    tailed = CliRunner().invoke(app, ["tail", "ingress.transport.road_closure", "--from-beginning", "--json",
                                      "--idle", "5"])
    assert tailed.exit_code == 0, tailed.output
    lines = [json.loads(line) for line in tailed.output.split("\n") if line.startswith("{")]
    [mine] = [r for r in lines if r["key"] == delivery["event_id"]]
    assert mine["event_type"] == "transport.road_closure" and mine["headers"][h.DEPT] == "transport"
    assert mine["payload"] == json.loads(Path(sample).read_text(encoding="utf-8"))
