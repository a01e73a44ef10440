"""`_hbus.decisions` records: the compact form decodes to exactly the decisions of before, stays small on the
bench workload, the JSON arrays already in the topic are still read, and an unreadable record is chained as such."""
from __future__ import annotations

import json

import pytest

from hybridbus.ops.bench.workload import Workload, new_run_tag
from hybridbus.runtime import decisions as D
from hybridbus.runtime.decisions import DecisionBatch, DecisionRecord, decode_record, decisions_batch, encode_decisions
from hybridbus.runtime.router_step import RouterStep
from tests.unit.runtime.inputs import CATALOG, SHIPPED

ROUTER_BATCH = 1_000  # records the router takes at a time
UNREADABLE = "decision record is not a JSON array"


def records(count: int, component: str = "egress", at_ms: int = 7) -> list[DecisionRecord]:
    return [DecisionRecord(component, f"ev-{i}", "market.licence_granted", "market", "public", "2026.11.25-1",
                           "public_cloud", "public.market.licence_granted", ("exported", "quarantined")[i % 2],
                           ("public", "营业执照 不是公开的")[i % 2], at_ms) for i in range(count)]


def test_a_compact_record_decodes_to_the_decisions_it_was_made_of() -> None:
    made = records(50) + records(3, component="archiver", at_ms=9)
    encoded = encode_decisions(made)
    assert len(encoded) == 2
    assert [d for value in encoded for d in decode_record(b"egress", value)] == [r.__dict__ for r in made]


def test_the_bench_mix_takes_at_most_120_bytes_an_event() -> None:
    workload = Workload(CATALOG)
    step = RouterStep(CATALOG, workload.codec, pseudonymiser=lambda data: b"p")
    step.load(SHIPPED)
    count, written, decided = 5 * ROUTER_BATCH, 0, 0
    stream = workload.records(count, new_run_tag())
    for _ in range(count // ROUTER_BATCH):
        batch = step.begin(1_795_600_000_000)
        for _, (template, key, headers) in zip(range(ROUTER_BATCH), stream):
            step.route_into(batch, template.topic, 0, key, template.value, headers)
        values = batch.decision_records()
        written += sum(len(v) for v in values)
        decided += sum(len(decode_record(b"router", v)) for v in values)
    print(f"_hbus.decisions: {written / count:.1f} bytes/event, {decided / count:.2f} decisions/event")
    assert decided >= count and written / count <= 120
    # The JSON arrays of before, for comparison: several hundred bytes an event.
    assert written < sum(len(v) for v in decisions_batch(records(decided))) / 4


def test_json_arrays_already_in_the_topic_are_still_read() -> None:
    made = records(450)
    old = decisions_batch(made)
    assert len(old) == 2
    assert [d for value in old for d in decode_record(b"egress", value)] == [r.__dict__ for r in made]
    person = DecisionRecord("rules", "", "", "", "", "v2", "live", "_hbus.rules", "rules_applied", "by alice", 5,
                            "alice")
    assert decode_record(b"rules", json.dumps([person.__dict__], ensure_ascii=False).encode()) == [person.__dict__]


@pytest.mark.parametrize("value", [
    None, b"", b"\xff\xfe", b"not json", b"[1, 2]", b'{"a": 1}', b"[" * 100_000 + b"]" * 100_000,
    b'{"f": 2, "c": "router", "at": 1, "s": ["a"], "t": [[0, 0, 0, 0, 0, 0, 0, 9]], "p": [[0]], "e": ["x"], "x": [0]}',
    b'{"f": 2, "c": "router", "at": 1, "s": ["a"], "t": [[0, 0, 0, 0, 0, 0, 0, 0]], "p": [[0]], "e": ["x"], "x": [-1]}',
    b'{"f": 2, "c": "router", "at": 1, "s": "abcdefgh", "t": [[0, 1, 2, 3, 4, 5, 6, 7]], "p": [[0]], "e": ["x"],'
    b' "x": [0]}',
    b'{"f": 2, "c": "router", "at": "1", "s": [], "t": [], "p": [], "e": [], "x": []}',
    b'{"f": 2, "c": "router", "at": 1, "s": [], "t": [], "p": [], "e": ["x"], "x": []}',
])
def test_an_unreadable_record_is_one_unreadable_decision(value: bytes | None) -> None:
    assert decode_record(b"router", value) == [{"component": "router", "verdict": "unreadable", "reason": UNREADABLE}]


def test_a_large_batch_is_split_into_records_that_each_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(D, "EVENTS_PER_RECORD", 40)
    monkeypatch.setattr(D, "CHARS_PER_RECORD", 3_000)
    batch = DecisionBatch("router", 11)
    shared = (("t", "d", "public", "v", "graded", "public.d.t", "routed", "rule r"),)
    for i in range(300):
        own = (("t", "d", "important", "v", "dlq", "_hbus.dlq", "dlq", f"reason {i} " + "x" * (i % 50)),)
        batch.add(f"ev-{i}", shared if i % 3 else own)
    batch.add("nothing-decided", ())
    values = batch.records()
    assert len(values) > 300 // 40 and all(len(v) < 5_000 for v in values)
    decoded = [d for v in values for d in decode_record(b"router", v)]
    assert [d["event_id"] for d in decoded] == [f"ev-{i}" for i in range(300)]
    assert decoded[1]["reason"] == "rule r" and decoded[3]["reason"] == "reason 3 xxx"
    assert DecisionBatch("router", 1).records() == []
