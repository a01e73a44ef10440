from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from hybridbus.adapters.config import REPO_ROOT
from hybridbus.adapters.loaders import load_catalog
from hybridbus.adapters.fieldcrypt import FieldSealer, LocalKeyService
from producers.exceptions import EncryptionUnavailable, InvalidEvent, OutboxError
from producers.outbox import Outbox
from producers.publisher import EventEncoder, Publisher
from tests.unit.producers.fakes import FakeProducer

CATALOG = load_catalog()
SAMPLE = json.loads((REPO_ROOT / "schemas/samples/market.licence_granted.v1.json").read_text(encoding="utf-8"))


def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "app.db", catalog=CATALOG)


def publisher(mode: str = "ack") -> tuple[Publisher, FakeProducer]:
    producer = FakeProducer(mode)
    return Publisher("market", producer, EventEncoder(CATALOG), ack_timeout=0.2), producer


def test_row_commits_and_rolls_back_with_the_callers_transaction(tmp_path: Path) -> None:
    box = outbox(tmp_path)
    conn = sqlite3.connect(tmp_path / "app.db")
    conn.execute("CREATE TABLE licences (code TEXT)")
    conn.commit()
    with pytest.raises(RuntimeError):
        with conn:
            conn.execute("INSERT INTO licences VALUES ('a')")
            box.add(conn, "market.licence_granted", SAMPLE)
            raise RuntimeError("the caller's business write failed")
    assert box.pending_count() == 0
    with conn:
        conn.execute("INSERT INTO licences VALUES ('b')")
        box.add(conn, "market.licence_granted", SAMPLE)
    assert box.pending_count() == 1
    conn.close()


def test_invalid_event_never_enters_the_outbox(tmp_path: Path) -> None:
    box = outbox(tmp_path)
    with pytest.raises(InvalidEvent):
        box.add(None, "market.licence_granted", {**SAMPLE, "granted_on": 1})
    assert box.pending_count() == 0


def test_connection_to_another_database_is_refused(tmp_path: Path) -> None:
    box = outbox(tmp_path)
    other = sqlite3.connect(tmp_path / "other.db")
    with pytest.raises(OutboxError):
        box.add(other, "market.licence_granted", SAMPLE)
    other.close()


def test_relay_sends_in_insertion_order_and_marks_after_the_ack(tmp_path: Path) -> None:
    box = outbox(tmp_path)
    ids = [box.add(None, "market.licence_granted", SAMPLE) for _ in range(7)]
    pub, producer = publisher()
    result = box.relay(pub, batch=3)
    assert (result.sent, result.pending, result.error) == (7, 0, None)
    assert [m.key().decode() for m in producer.sent] == ids
    assert box.relay(pub).sent == 0 and len(producer.sent) == 7


def test_unacknowledged_rows_stay_pending_and_go_again_with_the_same_id(tmp_path: Path) -> None:
    box = outbox(tmp_path)
    ids = [box.add(None, "market.licence_granted", SAMPLE) for _ in range(3)]
    down, _ = publisher("silent")
    result = box.relay(down)
    assert result.sent == 0 and result.pending == 3 and result.error
    up, producer = publisher()
    assert box.relay(up).sent == 3
    assert [m.key().decode() for m in producer.sent] == ids


def test_relay_refuses_rows_of_another_department(tmp_path: Path) -> None:
    box = outbox(tmp_path)
    box.add(None, "transport.bus_arrival",
            json.loads((REPO_ROOT / "schemas/samples/transport.bus_arrival.v2.json").read_text(encoding="utf-8")))
    pub, producer = publisher()
    result = box.relay(pub)
    assert result.sent == 0 and result.pending == 1 and "transport" in (result.error or "")
    assert producer.sent == []


def test_restricted_fields_are_stored_sealed_and_refused_without_a_key_service(tmp_path: Path) -> None:
    admission = json.loads((REPO_ROOT / "schemas/samples/health.hospital_admission.v1.json").read_text(encoding="utf-8"))
    sealed_box = Outbox(tmp_path / "sealed.db", catalog=CATALOG, sealer=FieldSealer(LocalKeyService()))
    sealed_box.add(None, "health.hospital_admission", admission)
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("sealed.db*"))  # the database and its WAL, if any
    assert admission["patient_id_number"].encode() not in stored and b"hbus:enc:v1:" in stored
    with pytest.raises(EncryptionUnavailable):
        outbox(tmp_path).add(None, "health.hospital_admission", admission)
    assert outbox(tmp_path).pending_count() == 0
