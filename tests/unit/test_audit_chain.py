"""The audit chain without a broker: every kind of tampering is detected and named, and a writer resumes exactly."""
from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from hybridbus.runtime import audit
from hybridbus.runtime.audit import Chain, Located, canonical, entry_hash

TEST_KEY = b"unit-test signing key (not a secret)"


def sign(message: bytes) -> str:
    return "test:" + hmac.new(TEST_KEY, message, hashlib.sha256).hexdigest()


def signature_ok(message: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(message), signature)


def decision(i: int, **extra: object) -> dict[str, object]:
    return {"component": "router", "event_id": f"ev-{i}", "event_type": "market.licence_granted", "dept": "market",
            "grade": "public", "rules_version": "v1", "destination": "public_cloud", "topic": "public.market.licence_granted",
            "verdict": "exported", "reason": "public", "at_ms": 1_000 + i, **extra}


def build(count: int = 12, every: int = 4) -> list[dict[str, object]]:
    chain, entries = Chain(), []
    for i in range(count):
        entries.append(chain.append(i % 3, (i, 0), decision(i)))
        if chain.since_checkpoint == every:
            entries.append(chain.checkpoint(sign(audit.checkpoint_message(chain.seq - 1, chain.head)), 2_000 + i))
    return entries


def stored(entries: list[dict[str, object]]) -> list[Located]:
    return [Located(f"offset {i}", canonical(e)) for i, e in enumerate(entries)]


def rehash(entry: dict[str, object]) -> dict[str, object]:
    """What an attacker who can compute SHA-256 (but cannot sign) does after changing an entry."""
    return {**entry, "hash": entry_hash(entry)}


def check(entries: list[dict[str, object]]) -> audit.Verdict:
    return audit.verify(stored(entries), signature_ok)


def test_untouched_chain_verifies() -> None:
    result = check(build())
    assert result.ok and result.entries == 12 and result.checkpoints == 3 and result.unsigned_tail == 0


def test_edited_entry_is_named() -> None:
    entries = build()
    entries[5] = {**entries[5], "verdict": "quarantined"}
    finding = check(entries).finding
    assert finding is not None and (finding.kind, finding.seq, finding.where) == ("edited", 5, "offset 5")


def test_edited_and_rehashed_entry_is_named() -> None:
    entries = build()
    entries[5] = rehash({**entries[5], "dept": "health"})
    finding = check(entries).finding
    assert finding is not None and (finding.kind, finding.seq, finding.where) == ("edited", 5, "offset 5")


def test_deleted_entry_is_named() -> None:
    entries = build()
    del entries[6]
    finding = check(entries).finding
    assert finding is not None and (finding.kind, finding.seq, finding.where) == ("deleted", 6, "offset 6")
    assert "entry 6 missing between entry 5 and entry 7" in finding.detail


def test_inserted_entry_that_links_to_its_predecessor_is_named() -> None:
    entries = build()
    forged = rehash({**entries[3], "event_id": "ev-forged", "seq": 3, "prev": entries[2]["hash"]})
    entries.insert(3, forged)
    finding = check(entries).finding
    assert finding is not None and (finding.kind, finding.seq, finding.where) == ("inserted", 3, "offset 3")


def test_inserted_entry_with_its_own_links_is_named() -> None:
    entries = build()
    entries.insert(7, rehash({**entries[7], "event_id": "ev-forged", "prev": "f" * 64}))
    finding = check(entries).finding
    assert finding is not None and (finding.kind, finding.seq, finding.where) == ("inserted", 7, "offset 7")


def test_replayed_copy_of_an_entry_is_named_as_inserted() -> None:
    entries = build()
    entries.insert(9, entries[2])
    finding = check(entries).finding
    assert finding is not None and (finding.kind, finding.seq, finding.where) == ("inserted", 2, "offset 9")


def test_reordered_entries_are_named() -> None:
    entries = build()
    entries[6], entries[7] = entries[7], entries[6]
    finding = check(entries).finding
    assert finding is not None and (finding.kind, finding.seq, finding.where) == ("reordered", 6, "offset 6")


def test_rewritten_tail_fails_at_the_checkpoint_signature() -> None:
    """Whoever re-hashes everything after an edit still cannot sign the new head."""
    entries = build()
    entries[1] = {**entries[1], "verdict": "blocked"}
    for i in range(1, 5):
        entries[i] = rehash({**entries[i], "prev": entries[i - 1]["hash"]})
    entries[4] = rehash({**entries[4], "head": entries[3]["hash"]})
    finding = check(entries).finding
    assert finding is not None and (finding.kind, finding.seq) == ("bad_signature", 4)


def test_garbage_in_the_chain_is_named() -> None:
    items = stored(build())
    items.insert(2, Located("offset 2", b"not json"))
    finding = audit.verify(items, signature_ok).finding
    assert finding is not None and (finding.kind, finding.where) == ("unreadable", "offset 2")


def test_unsigned_tail_is_counted_not_failed() -> None:
    result = check(build(count=14))
    assert result.ok and result.unsigned_tail == 2


def test_a_later_part_verifies_from_its_anchor() -> None:
    entries = build()
    start, end = audit.window(entries, from_ms=2_004, to_ms=None)
    assert entries[start - 1]["kind"] == audit.CHECKPOINT
    assert audit.verify(stored(entries)[start:end], signature_ok, anchor=entries[start - 1]).ok
    tampered = entries[:start] + [{**entries[start], "prev": "0" * 64}] + entries[start + 1:]
    assert not audit.verify(stored(tampered)[start:end], signature_ok, anchor=entries[start - 1]).ok
    forged_anchor = rehash({**entries[start - 1], "signature": "test:forged"})
    finding = audit.verify(stored(entries)[start:end], signature_ok, anchor=forged_anchor).finding
    assert finding is not None and (finding.kind, finding.where) == ("edited", "anchor")


def test_resume_goes_on_from_the_head_and_skips_what_is_chained() -> None:
    entries = build(count=10)
    tail = entries[audit.last_checkpoint_index(entries):]
    chain = Chain.resume(tail)
    assert (chain.seq, chain.head, chain.since_checkpoint) == (entries[-1]["seq"] + 1, entries[-1]["hash"], 2)
    assert chain.chained(0, (9, 0)) and chain.chained(2, (8, 0)) and not chain.chained(0, (12, 0))
    entries.append(chain.append(0, (12, 0), decision(12)))
    assert check(entries).ok


def test_entries_carry_only_whitelisted_fields() -> None:
    entry = Chain().append(0, (0, 0), decision(0, payload={"citizen_id": "110101199001011234"}, name="张三",
                                               reason="x" * 500))
    assert "payload" not in entry and "name" not in entry and "110101199001011234" not in json.dumps(entry)
    assert len(entry["reason"]) == audit.REASON_LIMIT


def test_closed_segments_end_at_checkpoints_and_leave_the_open_tail() -> None:
    entries = build(count=10)
    segments = audit.closed_segments([(i, canonical(e)) for i, e in enumerate(entries)])
    assert [end for end, _ in segments] == [5, 10]
    assert all(json.loads(items[-1][1])["kind"] == audit.CHECKPOINT for _, items in segments)
    day = audit.segment_day(json.loads(segments[0][1][-1][1])["at_ms"])
    assert audit.segment_name(day, 0, 4) == "chain/dt=1970-01-01/000000000000-000000000004.jsonl"
    assert audit.manifest_key(day) == "chain/dt=1970-01-01/manifest.json"


def test_queries_answer_from_the_chain() -> None:
    entries = build(count=6)
    entries.append(Chain(seq=99).append(0, (99, 0), {**decision(99), "component": "rules", "verdict": "rules_applied",
                                                      "actor": "alice", "at_ms": 5_000}))
    window = audit.decisions_between(entries, 1_002, 1_005)
    assert [e["event_id"] for e in window] == ["ev-2", "ev-3", "ev-4"]
    assert audit.published_counts(window) == [{"dept": "market", "event_type": "market.licence_granted",
                                               "rules_version": "v1", "destination": "public_cloud", "events": 3}]
    assert [e["seq"] for e in audit.event_history(entries, "ev-4")] == [5]
    assert [e["actor"] for e in audit.rule_changes(entries)] == ["alice"]


@pytest.mark.parametrize("count", [0, 1])
def test_tiny_chains_verify(count: int) -> None:
    assert check(build(count=count)).ok


def test_closed_segments_are_joined_up_to_a_size_and_never_across_a_day() -> None:
    entries = build(count=40, every=4)  # ten segments of five entries, the last four closed a day later
    for entry in entries[-20:]:
        if entry["kind"] == audit.CHECKPOINT:
            entry["at_ms"] = int(entry["at_ms"]) + 86_400_000
    segments = audit.closed_segments([(i, canonical(e)) for i, e in enumerate(entries)])
    batches = audit.archive_batches(segments, max_entries=12)
    assert [len(items) for _, items in batches] == [10, 10, 10, 10, 10]
    assert [end for end, _ in batches] == [10, 20, 30, 40, 50]
    assert [raw for _, items in batches for raw in items] == [raw for _, items in segments for raw in items]
    assert [len(items) for _, items in audit.archive_batches(segments, max_entries=3)] == [5] * 10  # never split
    assert [len(items) for _, items in audit.archive_batches(segments, max_entries=1_000)] == [30, 20]
