"""The audit chain without a broker: entries byte for byte as before, checkpoints where they belong, every kind of
tampering detected and named, and a writer that resumes exactly after a crash."""
from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridbus.runtime import audit
from hybridbus.runtime.audit import Appender, Chain, Located, canonical, entry_hash

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
        entries.append(json.loads(chain.append(i % 3, (i, 0), decision(i))))
        if chain.since_checkpoint == every:
            entries.append(json.loads(chain.checkpoint(sign(audit.checkpoint_message(chain.seq - 1, chain.head)),
                                                       2_000 + i)))
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
    chain = Chain.resume(entries[6:])  # the tail from the last checkpoint (index 9) or any before it
    assert (chain.seq, chain.head, chain.since_checkpoint) == (entries[-1]["seq"] + 1, entries[-1]["hash"], 2)
    assert chain.chained(0, (9, 0)) and chain.chained(2, (8, 0)) and not chain.chained(0, (12, 0))
    entries.append(json.loads(chain.append(0, (12, 0), decision(12))))
    assert check(entries).ok


def test_entries_carry_only_whitelisted_fields() -> None:
    entry = json.loads(Chain().append(0, (0, 0), decision(0, payload={"citizen_id": "110101199001011234"}, name="张三",
                                                          reason="x" * 500)))
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
    entries.append(json.loads(Chain(seq=99).append(0, (99, 0), {**decision(99), "component": "rules",
                                                                 "verdict": "rules_applied", "actor": "alice",
                                                                 "at_ms": 5_000})))
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


# --- entries as stored: the fast spelling is the canonical JSON, as before ------------------------------------

GOLDEN_DECISION = {"component": "router", "event_id": "ev-1", "event_type": "feedback.submitted", "dept": "citizen",
                   "grade": "public", "rules_version": "v7", "destination": "public_cloud",
                   "topic": "public.citizen.feedback", "verdict": "exported", "reason": "视图 \"topic\" \\ 公开\n",
                   "at_ms": 1764460800000, "actor": ""}
# Written by the writer before entries were spelled out by hand (main at 58dd323): old chains must still verify.
GOLDEN_ENTRY = ('{"actor":"","at_ms":1764460800000,"component":"router","dept":"citizen","destination":"public_cloud",'
                '"event_id":"ev-1","event_type":"feedback.submitted","grade":"public",'
                '"hash":"786c651e128a303cd981915e6e4b065b0e469efb3051110b782b5d0212019b61","kind":"decision",'
                '"prev":"0000000000000000000000000000000000000000000000000000000000000000",'
                '"reason":"视图 \\"topic\\" \\\\ 公开\\n","rules_version":"v7","seq":0,"src":[2,41,3],'
                '"topic":"public.citizen.feedback","verdict":"exported"}').encode()


def reference_entry(seq: int, prev: str, partition: int, position: tuple[int, int], item: dict) -> bytes:  # type: ignore[type-arg]
    """The entry as the writer always made it: the whitelisted fields, hashed and stored as canonical JSON."""
    entry = {"seq": seq, "prev": prev, "kind": audit.DECISION, "src": [partition, *position],
             **audit.decision_fields(item)}
    return canonical({**entry, "hash": entry_hash(entry)})


def test_a_decision_entry_is_stored_byte_for_byte_as_before() -> None:
    assert Chain().append(2, (41, 3), GOLDEN_DECISION) == GOLDEN_ENTRY
    assert audit._decision_entry(0, audit.GENESIS, 2, (41, 3), GOLDEN_DECISION) is not None  # the fast spelling


texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
values = st.one_of(texts, st.integers(), st.none(), st.booleans(), st.floats(allow_nan=False),
                   st.lists(st.integers(), max_size=2), st.dictionaries(texts, texts, max_size=2))
times = st.one_of(st.integers(min_value=-10**15, max_value=10**15), st.none(), st.booleans(),
                  st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15),
                  st.integers(min_value=0, max_value=10**9).map(str))


@settings(max_examples=300, deadline=None)
@given(item=st.fixed_dictionaries({}, optional={**{name: values for name in audit.DECISION_FIELDS}, "at_ms": times,
                                                  "payload": texts}),
       seq=st.integers(min_value=0, max_value=10**12), prev=st.one_of(st.just(audit.GENESIS), texts),
       partition=st.integers(min_value=0, max_value=64), offset=st.integers(min_value=0, max_value=10**12),
       index=st.integers(min_value=0, max_value=399))
def test_any_decision_is_stored_as_the_canonical_json_of_its_fields(item: dict, seq: int, prev: str, partition: int,  # type: ignore[type-arg]
                                                                     offset: int, index: int) -> None:
    chain = Chain(seq=seq, head=prev)
    raw = chain.append(partition, (offset, index), item)
    assert raw == reference_entry(seq, prev, partition, (offset, index), item)
    assert audit._decision_entry(seq, prev, partition, (offset, index), item) in (None, (raw, chain.head))
    assert (chain.seq, chain.head) == (seq + 1, json.loads(raw)["hash"])


@pytest.mark.parametrize("item", [{"reason": "broken \ud800 text", "event_id": "\udfff"}, {"at_ms": "yesterday"},
                                  {"at_ms": float("inf")}, {"at_ms": [1]}])
def test_a_decision_the_writer_once_stopped_on_is_chained(item: dict) -> None:  # type: ignore[type-arg]
    """Such decisions used to stop the writer at every restart; now they are chained with `?` for what UTF-8 cannot
    encode and time 0, and the chain verifies."""
    chain = Chain()
    entry = json.loads(chain.append(0, (0, 0), {**decision(0), **item}))
    assert entry_hash(entry) == entry["hash"] == chain.head
    assert "\ud800" not in json.dumps(entry) and isinstance(entry["at_ms"], int)
    assert check([entry]).ok


# --- the appender: decision records in, checkpointed entries out ------------------------------------------------

class Signer:
    """Signs like Vault would, or refuses while `away`; records what it was asked."""

    def __init__(self) -> None:
        self.away = False
        self.asked = 0

    def __call__(self, message: bytes) -> str | None:
        self.asked += 1
        return None if self.away else sign(message)


def records(first: int, count: int, per_record: int = 3, partition: int = 0) -> list[tuple[int, int, list[dict]]]:  # type: ignore[type-arg]
    """`count` records from offset `first` of one partition, each with `per_record` decisions."""
    return [(partition, offset, [decision(offset * 10 + i) for i in range(per_record)])
            for offset in range(first, first + count)]


def appender(every: int = 4, chain: Chain | None = None, signer: Signer | None = None) -> Appender:
    return Appender(chain or Chain(), signer or Signer(), every, now_ms=lambda: 7_000)


def kinds(entries: list[bytes]) -> str:
    return "".join("c" if json.loads(raw)["kind"] == audit.CHECKPOINT else "d" for raw in entries)


def test_a_checkpoint_follows_every_so_many_decisions_across_records() -> None:
    appended = appender(every=4).append(records(0, 3))  # nine decisions
    assert kinds(appended.entries) == "ddddcddddcd"
    assert (appended.decisions, appended.checkpoints_at_ms) == (9, [7_000, 7_000])
    stored = [json.loads(raw) for raw in appended.entries]
    assert [e["src"] for e in stored if e["kind"] == audit.DECISION][3:5] == [[0, 1, 0], [0, 1, 1]]
    assert stored[4]["positions"] == {"0": [1, 0]} and stored[4]["covers"] == 3
    assert check(stored).ok


def test_close_signs_what_waits_and_nothing_else() -> None:
    writer = appender(every=4)
    assert writer.close().entries == []
    writer.append(records(0, 2))
    closed = writer.close()
    assert kinds(closed.entries) == "c" and closed.checkpoints_at_ms == [7_000]
    assert writer.close().entries == []


def test_while_vault_cannot_sign_decisions_are_chained_and_the_next_one_is_signed() -> None:
    signer = Signer()
    writer = appender(every=2, signer=signer)
    signer.away = True
    first = writer.append(records(0, 1))  # three decisions, nobody to sign
    assert kinds(first.entries) == "ddd" and first.checkpoints_at_ms == []
    signer.away = False
    second = writer.append(records(1, 1))
    assert kinds(second.entries) == "dcddc"
    assert check([json.loads(raw) for raw in first.entries + second.entries]).ok


def test_a_restart_skips_what_was_chained_and_goes_on_from_the_stored_head() -> None:
    """The writer chained part of a batch before it died; its consumer group had committed less. The restarted
    writer follows the stored tail and is handed the records again from the committed offsets."""
    before = appender(every=4)
    stored = [json.loads(raw) for raw in before.append(records(0, 5) + records(0, 2, partition=3)).entries]
    died_at = 12  # the entries Kafka had when the writer died: up to offset 3, index 0 of partition 0
    assert stored[died_at - 1]["src"] == [0, 3, 0]

    after = appender(every=4, chain=Chain.resume(stored[:died_at]))
    replay = after.append(records(2, 3) + records(0, 2, partition=3))  # committed: offset 2 and partition 3 from 0
    chain = stored[:died_at] + [json.loads(raw) for raw in replay.entries]
    sources = [tuple(e["src"]) for e in chain if e["kind"] == audit.DECISION]
    assert len(sources) == len(set(sources)) == 5 * 3 + 2 * 3
    assert check(chain).ok and check(chain).checkpoints >= 4
