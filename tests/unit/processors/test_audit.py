"""The audit writer's shell without a broker: what it hands Kafka, when it waits for acknowledgements, and what it
keeps for the archive."""
from __future__ import annotations

import json
from typing import Any

import pytest

from hybridbus.adapters.exceptions import DeliveryError
from hybridbus.adapters.topology import AUDIT_TOPIC
from hybridbus.runtime import audit
from hybridbus.runtime.audit import Appender, Chain, Located
from hybridbus.runtime.auditstore import RecentEntries
from hybridbus.runtime.decisions import DecisionRecord, decisions_batch, encode_decisions
from processors import audit as writer_module
from processors.audit import ChainWriter


class Delivered:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def offset(self) -> int:
        return self._offset


class FakeProducer:
    """Assigns offsets from `next_offset` when flushed, or refuses everything while `refusing`."""

    def __init__(self, next_offset: int = 100) -> None:
        self.next_offset = next_offset
        self.refusing = False
        self.stored: list[bytes] = []
        self.waiting: list[tuple[bytes, Any]] = []
        self.most_waiting = 0

    def produce(self, topic: str, value: bytes, partition: int, on_delivery: Any) -> None:
        assert (topic, partition) == (AUDIT_TOPIC, 0)
        self.waiting.append((value, on_delivery))
        self.most_waiting = max(self.most_waiting, len(self.waiting))

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        for value, on_delivery in self.waiting:
            if self.refusing:
                on_delivery("Broker: Topic authorization failed", None)
                continue
            self.stored.append(value)
            on_delivery(None, Delivered(self.next_offset))
            self.next_offset += 1
        self.waiting = []
        return 0


def decision(i: int, component: str = "router", at_ms: int | None = None) -> DecisionRecord:
    return DecisionRecord(component, f"ev-{i}", "market.licence_granted", "market", "public", "v1", "public_cloud",
                          "public.market.licence_granted", "exported", "public", 1_000 + i if at_ms is None else at_ms)


def writer(producer: FakeProducer, every: int = 4) -> ChainWriter:
    return ChainWriter(Appender(Chain(), lambda message: f"test:{len(message)}", every, lambda: 9_000), producer,
                       RecentEntries(limit=1_000))


def test_records_of_either_form_are_chained_in_order_and_kept_for_the_archive() -> None:
    producer = FakeProducer()
    chain_writer = writer(producer)
    array = decisions_batch([decision(i) for i in range(3)])[0]
    [compact] = encode_decisions([decision(i, "egress", at_ms=5_000) for i in range(3, 8)])
    chain_writer.chain_batch([(0, 10, b"router", array), (1, 4, b"egress", compact), (2, 0, b"router", b"not json")])

    entries = [json.loads(raw) for raw in producer.stored]
    decisions = [e for e in entries if e["kind"] == audit.DECISION]
    assert [(e["src"], e["event_id"]) for e in decisions[:4]] == [([0, 10, 0], "ev-0"), ([0, 10, 1], "ev-1"),
                                                                 ([0, 10, 2], "ev-2"), ([1, 4, 0], "ev-3")]
    assert decisions[-1]["verdict"] == "unreadable" and decisions[-1]["src"] == [2, 0, 0]
    assert len(decisions) == 9 and [e["kind"] for e in entries].count(audit.CHECKPOINT) == 2
    assert audit.verify([Located(str(i), raw) for i, raw in enumerate(producer.stored)],
                        lambda message, signature: signature == f"test:{len(message)}").ok
    assert chain_writer.recent.read(100) == list(enumerate(producer.stored, start=100))
    assert chain_writer.segments_closed and chain_writer.unarchived == len(entries)


def test_no_more_than_so_many_entries_wait_for_kafka(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_module, "CONFIRM_EVERY", 10)
    producer = FakeProducer()
    records = [(0, offset, b"router", decisions_batch([decision(offset * 4 + i) for i in range(4)])[0])
               for offset in range(10)]
    writer(producer, every=1_000).chain_batch(records)
    assert len(producer.stored) == 40 and producer.most_waiting <= 10 + 4


def test_a_refused_entry_stops_the_batch_and_nothing_is_kept() -> None:
    producer = FakeProducer()
    producer.refusing = True
    chain_writer = writer(producer)
    with pytest.raises(DeliveryError):
        chain_writer.chain_batch([(0, 0, b"router", decisions_batch([decision(0)])[0])])
    assert chain_writer.recent.read(100) is None


def test_entries_are_kept_only_while_nothing_else_wrote_between_them() -> None:
    producer = FakeProducer()
    chain_writer = writer(producer)
    chain_writer.chain_batch([(0, 0, b"router", decisions_batch([decision(0)])[0])])
    producer.next_offset += 1  # someone else's record at offset 101
    chain_writer.chain_batch([(0, 1, b"router", decisions_batch([decision(1)])[0])])
    assert chain_writer.recent.read(100) is None and chain_writer.recent.read(102) == [(102, producer.stored[1])]
