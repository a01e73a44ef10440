"""The subscriber opens encrypted fields for a cleared identity, marks them for others, and counts the ones that
fail to decrypt; a Vault outage leaves the record uncommitted."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from hybridbus.adapters.config import REPO_ROOT
from hybridbus.adapters.exceptions import KeyServiceUnavailable
from hybridbus.adapters.fieldcrypt import FieldOpener, FieldSealer, LocalKeyService, is_sealed
from hybridbus.adapters.loaders import load_catalog
from hybridbus.adapters.metrics import FIELD_DECRYPT_FAILURES
from producers.publisher import EventEncoder
from producers.subscriber import ReceivedEvent, SubscribeError, Subscriber

CATALOG = load_catalog()
PLAIN = json.loads((REPO_ROOT / "schemas/samples/health.hospital_admission.v1.json").read_text(encoding="utf-8"))
MASTER = b"k" * 32


@dataclass
class Record:
    _value: bytes
    _offset: int

    def error(self) -> None:
        return None

    def value(self) -> bytes:
        return self._value

    def topic(self) -> str:
        return "restricted.health.hospital_admission"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def headers(self) -> list[tuple[str, bytes]]:
        return []


@dataclass
class FakeConsumer:
    records: list[Record]
    committed: list[int] = field(default_factory=list)

    def subscribe(self, topics: list[str]) -> None:
        pass

    def poll(self, timeout: float) -> Record | None:
        return self.records.pop(0) if self.records else None

    def store_offsets(self, message: Any) -> None:
        self.committed.append(message.offset())

    def commit(self, asynchronous: bool = True) -> None:
        pass


def _sealed_value(payload: dict | None = None) -> bytes:
    encoder = EventEncoder(CATALOG, sealer=FieldSealer(LocalKeyService(MASTER)))
    return encoder.encode("health", "health.hospital_admission", payload or PLAIN).value


def _run(opener: FieldOpener | None, values: list[bytes]) -> tuple[list[ReceivedEvent], FakeConsumer]:
    consumer = FakeConsumer([Record(v, i) for i, v in enumerate(values)])
    subscriber = Subscriber("health", consumer, EventEncoder(CATALOG).codec, ["restricted.health.hospital_admission"],
                            opener)  # type: ignore[arg-type]
    seen: list[ReceivedEvent] = []
    subscriber.run(seen.append, max_events=len(values), timeout=0.1)
    return seen, consumer


def test_a_cleared_subscriber_reads_the_plain_values() -> None:
    [event], consumer = _run(FieldOpener(LocalKeyService(MASTER)), [_sealed_value()])
    assert dict(event.payload) == PLAIN and event.sealed == () and consumer.committed == [0]


def test_a_subscriber_not_cleared_gets_the_record_with_the_fields_sealed_and_marked() -> None:
    [event], consumer = _run(FieldOpener(LocalKeyService(MASTER, cleared=False)), [_sealed_value()])
    assert [(s.field, s.reason) for s in event.sealed] == [("patient_id_number", "not-cleared"), ("diagnosis_code", "not-cleared")]
    assert is_sealed(event.payload["patient_id_number"]) and event.payload["patient_name"] == PLAIN["patient_name"]
    assert event.decrypt_errors == () and consumer.committed == [0]


def test_a_field_under_another_key_is_a_counted_typed_error_of_that_record_only() -> None:
    before = FIELD_DECRYPT_FAILURES.labels("health", "health.hospital_admission", "tampered")._value.get()
    forged = EventEncoder(CATALOG, sealer=FieldSealer(LocalKeyService(b"x" * 32))).encode(
        "health", "health.hospital_admission", PLAIN).value
    events, consumer = _run(FieldOpener(LocalKeyService(MASTER)), [forged, _sealed_value()])
    assert [e.reason for e in events[0].decrypt_errors] == ["tampered", "tampered"]
    assert is_sealed(events[0].payload["patient_id_number"])
    assert dict(events[1].payload) == PLAIN and consumer.committed == [0, 1]
    after = FIELD_DECRYPT_FAILURES.labels("health", "health.hospital_admission", "tampered")._value.get()
    assert after - before == 2


class VaultDown(LocalKeyService):
    def unwrap(self, key_name: str, wrapped: str) -> bytes:
        raise KeyServiceUnavailable("Vault Transit did not answer within 10s")


def test_a_vault_outage_stops_the_run_with_the_record_uncommitted() -> None:
    with pytest.raises(SubscribeError, match="did not answer"):
        _run(FieldOpener(VaultDown()), [_sealed_value()])
