"""The SQLite outbox against the real stack: nothing lost while Kafka is away, everything relayed once, in order."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hybridbus.adapters.config import Settings
from hybridbus.adapters.loaders import load_catalog
from producers.outbox import Outbox
from producers.publisher import Publisher
from tests.integration.kafkatools import read_topic
from tests.integration.test_publisher import CATALOG, assert_round_trip, sample_cases

UNREACHABLE = {"bootstrap.servers": "127.0.0.1:1", "socket.connection.setup.timeout.ms": 1000,
               "reconnect.backoff.max.ms": 200}


@pytest.mark.parametrize("dept", sorted({key.split(".")[0] for key, _, _ in sample_cases()}))
def test_every_catalog_event_type_round_trips_through_the_outbox(stack: Settings, tmp_path: Path, dept: str) -> None:
    box = Outbox.for_department(tmp_path / "app.db", dept, catalog=CATALOG)  # restricted fields stored sealed
    sent: dict[str, dict] = {}
    with box.transaction() as conn:
        for key, version, payload in sample_cases():
            if key.startswith(f"{dept}."):
                event_id = box.add(conn, key, payload, version=version)
                sent.setdefault(CATALOG.get(key).ingress_topic, {})[event_id] = (key, version, payload, dept)
    result = box.relay(Publisher.for_department(dept, catalog=CATALOG))
    assert (result.sent, result.pending, result.error) == (sum(len(v) for v in sent.values()), 0, None)
    for topic, events in sent.items():
        assert_round_trip(topic, events)


def test_outbox_keeps_everything_while_kafka_is_unreachable_then_relays_in_order_once(
        stack: Settings, tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    box = Outbox(db, catalog=CATALOG)
    road = next(p for k, _, p in sample_cases() if k == "transport.road_closure")
    ids = []
    conn = sqlite3.connect(db)
    for i in range(300):
        with conn:  # the caller's own transactions: one business write + one event each
            ids.append(box.add(conn, "transport.road_closure", {**road, "closure_id": f"OUTBOX-{i:04d}"}))
    conn.close()

    down = Publisher.for_department("transport", catalog=CATALOG, ack_timeout=2.0, **UNREACHABLE)
    result = box.relay(down, batch=100)
    assert result.sent == 0 and result.pending == 300 and result.error
    assert [row.envelope.event_id for row in box.pending()] == ids

    up = Publisher.for_department("transport", catalog=CATALOG)
    result = box.relay(up, batch=64)
    assert (result.sent, result.pending, result.error) == (300, 0, None)
    assert box.relay(up).sent == 0

    topic = "ingress.transport.road_closure"
    wanted = set(ids)
    records = [r for r in read_topic("private", topic, timeout=30) if r.key and r.key.decode() in wanted]
    counts: dict[str, int] = {}
    for record in records:
        counts[record.key.decode()] = counts.get(record.key.decode(), 0) + 1  # type: ignore[union-attr]
    assert set(counts) == wanted and set(counts.values()) == {1}
    # Kafka orders per partition: within each, the outbox's insertion order must hold.
    position = {event_id: i for i, event_id in enumerate(ids)}
    for partition in {r.partition for r in records}:
        in_partition = sorted((r for r in records if r.partition == partition), key=lambda r: r.offset)
        seqs = [position[r.key.decode()] for r in in_partition]  # type: ignore[union-attr]
        assert seqs == sorted(seqs)


def test_relay_cli_sends_the_pending_rows(stack: Settings, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hybridbus.cli.main import app

    box = Outbox(tmp_path / "app.db", catalog=load_catalog())
    road = next(p for k, _, p in sample_cases() if k == "transport.road_closure")
    event_id = box.add(None, "transport.road_closure", road)
    result = CliRunner().invoke(app, ["outbox", "relay", "--db", str(tmp_path / "app.db"), "--dept", "transport",
                                      "--json"])
    assert result.exit_code == 0, result.output
    assert '"sent": 1' in result.output and box.pending_count() == 0
    assert_round_trip("ingress.transport.road_closure", {event_id: ("transport.road_closure", 1, road, "transport")})
