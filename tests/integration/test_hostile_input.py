"""Hostile input on the real stack: over 10,000 generated bad events through the client, the gateway and raw
producers. The client and the gateway refuse theirs with a clear error; what reaches Kafka lands in the DLQ with
its reason class (or, for headers claiming a lower grade, is graded by its schema and counted as forged); no
processor dies or stalls, good events still flow afterwards, and nothing reaches the public side."""
from __future__ import annotations

import secrets
import time
from collections import Counter
from typing import Any

import pytest
import requests
from confluent_kafka import KafkaException
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from hybridbus.adapters import kafka
from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.config import REPO_ROOT, Settings
from hybridbus.adapters.loaders import load_catalog
from hybridbus.adapters.topology import DLQ_TOPIC, PRIVATE, PUBLIC
from hybridbus.adapters.vault import VaultSession
from hybridbus.ops.hostile import FORGED, TOO_LARGE_FOR_KAFKA, RawRecord, client_inputs, gateway_requests, raw_records
from hybridbus.ops.leakscan import mark, scan_since
from hybridbus.ops.samples import sample_events
from hybridbus.ops.stack import workers
from hybridbus.ops.stack.bootstrap import s3_admin_client
from producers.exceptions import ProducerError
from producers.gateway import build_app
from producers.publisher import Publisher
from routing import headers as H
from routing.catalog import EventType
from tests.integration.kafkatools import TOPIC, copies, end_offsets, publish_burst, read_after
from tests.integration.test_gateway import department_token

RAW, CLIENT, GATEWAY = 5000, 3000, 2000
PROCESSORS = ("router", "egress", "archiver")
CATALOG = load_catalog()


@pytest.fixture(scope="module")
def tag() -> str:
    return secrets.token_hex(3)


@pytest.fixture(scope="module")
def samples(tag: str) -> dict[EventType, dict[str, Any]]:
    """One valid payload per event type (latest version), with canaries in every non-public field."""
    latest = set(CATALOG.latest())
    return {s.event_type: s.payload for s in sample_events(CATALOG, REPO_ROOT / "schemas" / "samples", 1, tag=tag)
            if s.event_type in latest}


def test_the_client_refuses_every_bad_event_before_sending(bus: Settings, samples: dict) -> None:
    inputs = client_inputs(CATALOG, samples, CLIENT)
    publishers = {dept: Publisher.for_department(dept, catalog=CATALOG) for dept in CATALOG.departments}
    sent, got = Counter(), Counter()
    wrong = []
    for item in inputs:
        try:
            publishers[item.dept].publish_async(item.event_type, item.payload, version=item.version,
                                                event_id=item.event_id)
            outcome = "sent"
        except ProducerError as exc:
            outcome = type(exc).__name__
            assert str(exc), f"{item.kind}: an error without a reason"
        sent[item.kind] += 1
        got[(item.kind, outcome)] += 1
        if outcome != item.expect:
            wrong.append((item.kind, item.expect, outcome))
    assert not wrong, f"{len(wrong)} bad inputs not refused as expected, e.g. {wrong[:5]}"
    assert sum(sent.values()) >= CLIENT
    assert all(p.flush(10) == 0 for p in publishers.values())
    print(f"\nclient: {sum(sent.values())} refused: {dict(sorted(got.items()))}")


def test_the_gateway_answers_every_bad_request_with_its_4xx(bus: Settings, samples: dict) -> None:
    requests_ = gateway_requests(CATALOG, samples, GATEWAY)
    tokens = {dept: department_token(dept) for dept in CATALOG.departments} | {"bogus": secrets.token_urlsafe(32)}
    statuses, wrong = Counter(), []
    with TestClient(build_app(ack_timeout=10.0)) as client:
        for item in requests_:
            headers = {"content-type": "application/json"}
            if item.auth is not None:
                headers["authorization"] = f"Bearer {tokens[item.auth]}"
            response = client.post(item.path, content=item.body, headers=headers)
            statuses[(item.kind, response.status_code)] += 1
            if response.status_code != item.expect or not response.json().get("detail"):
                wrong.append((item.kind, item.expect, response.status_code))
    assert not wrong, f"{len(wrong)} bad requests not answered as expected, e.g. {wrong[:5]}"
    assert sum(statuses.values()) >= GATEWAY
    print(f"\ngateway: {sum(statuses.values())} refused: {dict(sorted(statuses.items()))}")


def test_raw_bad_records_land_in_the_dlq_and_the_bus_keeps_flowing(bus: Settings, samples: dict, tag: str) -> None:
    pids = {name: workers.process(bus, name).pid() for name in PROCESSORS}
    assert all(pids.values()), f"processors not running: {pids}"
    records = raw_records(CATALOG, AvroCodec.for_catalog(CATALOG), samples, RAW, tag)
    dlq_since = end_offsets(PRIVATE, DLQ_TOPIC)
    before = _router_counters(bus)
    s3 = s3_admin_client(bus)
    public_side_before = mark(kafka.admin_credentials(PUBLIC), s3, bus.open_data_bucket)

    producers = {dept: kafka.producer(PRIVATE, VaultSession(dept, bus).kafka_credentials(PRIVATE))
                 for dept in {r.dept for r in records}}
    failed: list[Any] = []
    refused: Counter[tuple[str, str]] = Counter()
    for record in records:
        try:
            _produce(producers[record.dept], record, failed)
        except KafkaException as exc:
            refused[(record.kind, exc.args[0].name())] += 1
    assert all(p.flush(60) == 0 for p in producers.values()) and not failed, failed[:3]
    too_large = [r for r in records if r.expect == TOO_LARGE_FOR_KAFKA]
    assert refused == Counter({(too_large[0].kind, "MSG_SIZE_TOO_LARGE"): len(too_large)})

    by_key = {r.key: r for r in records if r.expect != TOO_LARGE_FOR_KAFKA}
    to_dlq = {k: r for k, r in by_key.items() if r.expect != FORGED}
    found = read_after(PRIVATE, DLQ_TOPIC, dlq_since, lambda rec: rec.key in by_key, min_records=len(to_dlq),
                       timeout=90)
    copies_per_key = Counter(rec.key for rec in found)
    assert set(copies_per_key) == set(to_dlq), (
        f"missing from the DLQ: {len(set(to_dlq) - set(copies_per_key))}, "
        f"not bad but in the DLQ: {len(set(copies_per_key) - set(to_dlq))}")
    assert max(copies_per_key.values()) == 1, "a bad record was dead-lettered twice"
    for rec in found:
        sent = to_dlq[rec.key]
        assert rec.headers.get(H.DLQ_REASON), f"{sent.kind}: no reason"
        assert rec.headers.get(H.SOURCE_TOPIC) == sent.topic.encode() and rec.value == (sent.value or b"")

    expected = Counter(r.expect for r in to_dlq.values())
    forged = sum(1 for r in by_key.values() if r.expect == FORGED)
    after = _wait_for_counters(bus, before, expected, forged)
    assert {reason: after[("dlq", reason)] - before[("dlq", reason)] for reason in expected} == dict(expected)
    assert after[("forged", "")] - before[("forged", "")] == forged

    # Good events sent after the bad ones still come out on the public cluster, through the same processes.
    public_since = end_offsets(PUBLIC, TOPIC)
    good = publish_burst(200)
    assert set(copies(PUBLIC, public_since, good, timeout=90)) == set(good)
    assert {name: workers.process(bus, name).pid() for name in PROCESSORS} == pids, "a processor restarted"

    # Everything the public side received since the bad records were sent, whoever wrote it, to any topic or object.
    report = scan_since(public_side_before, kafka.admin_credentials(PUBLIC), s3, bus.open_data_bucket)
    assert report.records > 0 and report.leaked == 0, f"non-public canaries found at {report.leaked_where}"
    print(f"\nraw: {len(records)} sent, {sum(refused.values())} refused by the Kafka client, "
          f"{len(found)} dead-lettered by class {dict(expected)}, {forged} forged; scan {report.as_dict()}")


def _produce(producer: Any, record: RawRecord, failed: list[Any]) -> None:
    while True:
        try:
            producer.produce(record.topic, record.value, key=record.key, headers=record.headers,
                             on_delivery=lambda err, _msg: err and failed.append(err))
            return
        except BufferError:  # the local queue is full: let deliveries drain, then try again
            producer.poll(0.5)


def _router_counters(cfg: Settings) -> Counter[tuple[str, str]]:
    """The router's DLQ counts per reason class and its forged-header count, from its /metrics page."""
    text = requests.get(workers.metrics_url(cfg, "router"), timeout=5).text
    counts: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "hbus_dlq_total":
                counts[("dlq", sample.labels["reason"])] += int(sample.value)
            elif sample.name == "hbus_forged_headers_total":
                counts[("forged", "")] += int(sample.value)
    return counts


def _wait_for_counters(cfg: Settings, before: Counter, expected: Counter, forged: int,
                       timeout: float = 30.0) -> Counter[tuple[str, str]]:
    """The router counts its records just after producing them; give the last batch a moment."""
    deadline = time.monotonic() + timeout
    while True:
        after = _router_counters(cfg)
        done = all(after[("dlq", r)] - before[("dlq", r)] >= n for r, n in expected.items()) \
            and after[("forged", "")] - before[("forged", "")] >= forged
        if done or time.monotonic() > deadline:
            return after
        time.sleep(0.5)
