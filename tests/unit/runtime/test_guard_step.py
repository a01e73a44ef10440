"""The one boundary guard of egress and the archiver: public records pass once per event id, anything else is
quarantined or skipped with today's headers, decisions and counts, and a resumed partition skips what is out."""
from __future__ import annotations

import random
from collections import Counter, OrderedDict
from typing import Any

import pytest
from prometheus_client import REGISTRY

from hybridbus.adapters import metrics
from hybridbus.adapters.loaders import derived_event_types
from hybridbus.adapters.topology import QUARANTINE_TOPIC
from hybridbus.runtime.decisions import decode_record
from hybridbus.runtime.guard_step import DedupeWindow, GuardBatch, GuardStep
from hybridbus.runtime.records import CATALOG_DIGEST, QUARANTINE_GRADE, QUARANTINED_BY, SOURCE_PARTITION
from hybridbus.runtime.router_step import RouterStep
from routing import headers as H
from routing.boundary import ARCHIVE, PUBLIC_CLOUD
from routing.grades import Grade
from tests.unit.runtime.inputs import CATALOG, NOW_MS, SHIPPED, fresh_codec, sample_records
from tests.unit.runtime.test_router_step import VIEWS, hmac_stub

# (topic, partition, offset, key, value, headers): a record of a private `public.*` topic as the consumer gives it.
Public = tuple[str, int, int, bytes | None, bytes | None, list[tuple[str, bytes]] | None]


def routed(rules: Any = SHIPPED, per_type: int = 4) -> tuple[list[Public], list[Public]]:
    """What the router writes for every sample: (records on public topics, records on every other topic)."""
    step = RouterStep(CATALOG, fresh_codec(), pseudonymiser=hmac_stub)
    step.load(rules)
    batch = step.begin(NOW_MS)
    for record in sample_records(CATALOG, step.codec, per_type=per_type, tag=f"g{rules.version}"):
        step.route_into(batch, *record)
    offsets: Counter[tuple[str, int]] = Counter()
    public, private = [], []
    for topic, key, value, partition, headers in batch.outputs:
        offsets[(topic, partition)] += 1
        (public if topic.startswith("public.") else private).append(
            (topic, partition, offsets[(topic, partition)], key, value, headers))
    return public, private


def guard_for(destination: str, rules: Any = SHIPPED) -> GuardStep:
    return GuardStep(fresh_codec(), destination, derived_event_types(CATALOG, rules))


def run(guard: GuardStep, records: list[Public], resume: dict[tuple[str, int], int] | None = None) -> GuardBatch:
    batch = guard.begin(NOW_MS, resume)
    for record in records:
        guard.check_into(batch, *record)
    return batch


def hostile_public(public: list[Public], private: list[Public]) -> list[Public]:
    """Leaks onto public topics: non-public records, garbage, no value, a public type on another's topic, forged
    or missing destinations."""
    rng = random.Random(3)
    topics = sorted({r[0] for r in public})
    out: list[Public] = []
    for i, (topic, _, _, key, value, headers) in enumerate(private[:20]):
        out.append((rng.choice(topics), 0, 1000 + i, key, value, headers))  # a sensitive record on a public topic
    out.append((topics[0], 0, 2000, b"g1", b"\xc3\x01garbage", [(H.EVENT_ID, b"g1")]))
    out.append((topics[0], 0, 2001, b"g2", None, None))
    out.append((topics[0], 0, 2002, b"g3", rng.randbytes(40), [(H.EVENT_ID, b"\xff\xfe")]))
    licence = next(r for r in public if r[0] == "public.market.licence_granted")
    out.append(("public.transport.bus_arrival", 0, 2003, licence[3], licence[4], licence[5]))
    widened = [(k, v) for k, v in licence[5] or [] if k != H.DESTINATIONS] + [(H.DESTINATIONS, b"archive")]
    out.append((licence[0], 0, 2004, b"narrow", licence[4], widened))
    out.append((licence[0], 0, 2005, b"none", licence[4], [(k, v) for k, v in licence[5] or [] if k != H.DESTINATIONS]))
    twice = [(H.RULES_VERSION, b"first"), (H.EVENT_ID, b"dup-1"), (H.EVENT_ID, None), (H.OCCURRED_AT, None)]
    out.append((licence[0], 3, 2006, b"twice", licence[4], (licence[5] or []) + twice))
    out.append((licence[0], 3, 2007, None, licence[4], [(H.DESTINATIONS, b"public_cloud,archive"), (H.EVENT_ID, None)]))
    return out


def reference(records: list[Public], destination: str) -> tuple[list[Any], list[Any], list[dict[str, Any]], Counter]:
    """The guard as egress and the archiver composed it per record before: passed, quarantined, decisions, counts."""
    component, verdict_name = ("egress", "exported") if destination == PUBLIC_CLOUD else ("archiver", "archived")
    derived = derived_event_types(CATALOG, SHIPPED) + derived_event_types(CATALOG, VIEWS)
    guard = GuardStep(fresh_codec(), PUBLIC_CLOUD, derived)
    recent: dict[tuple[str, int], OrderedDict[str, None]] = {}
    passed, quarantined, decisions, counts = [], [], [], Counter()
    for topic, partition, offset, key, value, headers in records:
        verdict = guard.check(topic, key, value, headers, destination)
        counts[(metrics.EVENTS_IN, (component, verdict.dept, verdict.type_key(topic)))] += 1
        window = recent.setdefault((topic, partition), OrderedDict())
        if verdict.allowed and verdict.event_id:
            if verdict.event_id in window:
                continue
            window[verdict.event_id] = None
        if verdict.allowed:
            passed.append((topic, partition, offset, key, value, headers, verdict.event_type,
                           verdict.payload if destination == ARCHIVE else None,
                           verdict.event_id))
            if destination == PUBLIC_CLOUD:
                labels = (component, verdict.dept, verdict.type_key(topic), "public", destination)
                counts[(metrics.EVENTS_OUT, labels)] += 1
            decisions.append(verdict.decision(component, destination, topic, verdict_name, headers, NOW_MS).__dict__)
        elif verdict.leak:
            # The stamp for the quarantine's review: whence exactly, what grade, which guard.
            stamp = [(SOURCE_PARTITION, str(partition).encode()), (QUARANTINE_GRADE, verdict.grade.id.encode()),
                     (QUARANTINED_BY, component.encode())]
            quarantined.append((QUARANTINE_TOPIC, key, value, None, verdict.quarantine_headers(headers, topic, stamp)))
            labels = (component, verdict.dept, verdict.type_key(topic), verdict.grade.id)
            counts[(metrics.BOUNDARY_BLOCKED, labels)] += 1
            decision = verdict.decision(component, destination, QUARANTINE_TOPIC, "quarantined", headers,
                                        NOW_MS).__dict__
            # One deliberate change: a record that does not decode is named by its source topic, not the quarantine's.
            decisions.append({**decision, "event_type": verdict.type_key(topic)})
    return passed, quarantined, decisions, counts


@pytest.mark.parametrize("destination", [PUBLIC_CLOUD, ARCHIVE])
def test_the_batch_guard_decides_as_the_per_record_guard_did(destination: str) -> None:
    public, private = routed()
    views_public, _ = routed(VIEWS)
    records = public + views_public + hostile_public(public, private)
    records += [r for r in public[:10]]  # a router replay: the same events again
    derived = derived_event_types(CATALOG, SHIPPED) + derived_event_types(CATALOG, VIEWS)
    guard = GuardStep(fresh_codec(), destination, derived)
    batch = run(guard, records)
    passed, quarantined, decisions, counts = reference(records, destination)
    assert [tuple(p) for p in batch.allowed] == passed
    assert batch.quarantined == quarantined
    assert [d for v in batch.decision_records() for d in decode_record(b"x", v)] == decisions
    assert Counter({(m, labels): n for m, per in batch.counts().items() for labels, n in per.items()}) == counts
    assert batch.duplicates >= 10 and len(batch.quarantined) >= 23 and len(batch.allowed) > 20


def test_public_records_pass_with_what_the_sink_needs() -> None:
    public, _ = routed()
    guard = guard_for(PUBLIC_CLOUD)
    batch = run(guard, public)
    assert len(batch.allowed) == len(public) and not batch.quarantined
    first = batch.allowed[0]
    assert (first.topic, first.partition, first.offset, first.key, first.value, first.headers) == public[0]
    assert first.event_type.graded_topic(Grade.PUBLIC) == first.topic and first.event_id == first.key.decode()
    decisions = [d for v in batch.decision_records() for d in decode_record(b"egress", v)]
    assert {(d["component"], d["verdict"], d["reason"], d["grade"], d["rules_version"]) for d in decisions} == {
        ("egress", "exported", "public", "public", SHIPPED.version)}
    assert len(batch.occurred) == len(public)


def test_headers_the_sink_stamps_itself_are_left_out_of_what_passes() -> None:
    public, _ = routed()
    stamped = "hbus-source-offset"
    guard = GuardStep(fresh_codec(), PUBLIC_CLOUD, derived_event_types(CATALOG, SHIPPED), stamped=frozenset({stamped}))
    brought = [(t, p, o, k, v, [*(h or []), (stamped, b"999")]) for t, p, o, k, v, h in public]
    batch = run(guard, brought)
    assert [p.headers for p in batch.allowed] == [h for *_, h in public]
    assert len(batch.allowed) == len(public)


def test_a_record_that_is_not_public_is_quarantined_with_its_reason() -> None:
    public, private = routed()
    sensitive = next(r for r in private if r[0] == "sensitive.govservice.citizen_feedback")
    on_public = ("public.govservice.citizen_feedback_stats", 2, 7, sensitive[3], sensitive[4], sensitive[5])
    batch = run(guard_for(ARCHIVE), [on_public])
    assert not batch.allowed
    (topic, key, value, partition, headers), = batch.quarantined
    assert (topic, key, value, partition) == (QUARANTINE_TOPIC, sensitive[3], sensitive[4], None)
    assert headers[:-5] == sensitive[5]
    assert headers[-5][0] == H.DLQ_REASON and b"only public events leave" in headers[-5][1]
    assert headers[-4:] == [(H.SOURCE_TOPIC, b"public.govservice.citizen_feedback_stats"), (SOURCE_PARTITION, b"2"),
                            (QUARANTINE_GRADE, b"sensitive"), (QUARANTINED_BY, b"archiver")]
    decision, = [d for v in batch.decision_records() for d in decode_record(b"archiver", v)]
    assert (decision["verdict"], decision["topic"], decision["grade"]) == ("quarantined", QUARANTINE_TOPIC, "sensitive")
    assert batch.counts()[metrics.BOUNDARY_BLOCKED] == {
        ("archiver", "govservice", "govservice.citizen_feedback", "sensitive"): 1}


def test_a_guard_given_its_catalog_digest_stamps_it_on_what_it_quarantines() -> None:
    _, private = routed()
    sensitive = next(r for r in private if r[0] == "sensitive.govservice.citizen_feedback")
    guard = GuardStep(fresh_codec(), PUBLIC_CLOUD, derived_event_types(CATALOG, SHIPPED), catalog_digest=CATALOG.digest)
    batch = run(guard, [("public.govservice.citizen_feedback_stats", 1, 7, sensitive[3], sensitive[4], sensitive[5])])
    (_, _, _, _, headers), = batch.quarantined
    assert headers[-2:] == [(QUARANTINED_BY, b"egress"), (CATALOG_DIGEST, CATALOG.digest.encode())]
    assert guard.catalog_digest == CATALOG.digest and len(CATALOG.digest) == 64


def test_the_destinations_header_only_narrows() -> None:
    public, private = routed()
    licence = next(r for r in public if r[0] == "public.market.licence_granted")
    archive_only = [(k, v) for k, v in licence[5] or [] if k != H.DESTINATIONS] + [(H.DESTINATIONS, b"archive")]
    restricted = next(r for r in private if r[0] == "restricted.health.hospital_admission")
    widened = [(k, v) for k, v in restricted[5] or [] if k != H.DESTINATIONS] + [(H.DESTINATIONS, b"public_cloud")]
    batch = run(guard_for(PUBLIC_CLOUD), [(licence[0], 0, 1, b"a", licence[4], archive_only),
                                          ("public.health.hospital_admission", 0, 1, b"b", restricted[4], widened)])
    assert not batch.allowed and batch.not_wanted == 1 and len(batch.quarantined) == 1
    assert [d["verdict"] for v in batch.decision_records() for d in decode_record(b"egress", v)] == ["quarantined"]
    assert batch.counts()[metrics.EVENTS_IN] == {("egress", "market", "market.licence_granted"): 1,
                                                 ("egress", "health", "health.hospital_admission"): 1}


def test_a_duplicate_event_id_is_dropped_per_partition() -> None:
    public, _ = routed()
    record = public[0]
    again = (record[0], record[1], record[2] + 100, record[3], record[4], record[5])
    elsewhere = (record[0], record[1] + 1, record[2], record[3], record[4], record[5])
    guard = guard_for(PUBLIC_CLOUD)
    first = run(guard, [record, again, elsewhere])
    later = run(guard, [again])  # the window outlives a batch
    assert [(p.partition, p.offset) for p in first.allowed] == [(record[1], record[2]), (record[1] + 1, record[2])]
    assert first.duplicates == 1 and later.duplicates == 1 and not later.allowed and not later.decision_records()


def test_a_resumed_partition_skips_what_is_already_on_the_public_side() -> None:
    public, _ = routed(per_type=9)
    topic, partition = public[0][0], public[0][1]
    same = [r for r in public if (r[0], r[1]) == (topic, partition)]
    assert len(same) >= 3
    guard = guard_for(PUBLIC_CLOUD)
    batch = run(guard, same, resume={(topic, partition): same[1][2]})
    assert [p.offset for p in batch.allowed] == [r[2] for r in same[2:]]
    assert batch.resumed == 2
    assert sum(batch.counts()[metrics.EVENTS_IN].values()) == len(same) - 2


def test_guard_metrics_reach_prometheus_once_per_batch() -> None:
    public, private = routed()
    batch = run(guard_for(PUBLIC_CLOUD), public + hostile_public(public, private))

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    out = {"component": "egress", "dept": "market", "event_type": "market.licence_granted", "grade": "public",
           "destination": "public_cloud"}
    before = value("hbus_events_out_total", **out), value("hbus_latency_seconds_count", stage="exported")
    batch.publish_metrics(NOW_MS + 10)
    after = value("hbus_events_out_total", **out), value("hbus_latency_seconds_count", stage="exported")
    assert after[0] - before[0] == sum(p.topic == "public.market.licence_granted" for p in batch.allowed)
    assert after[1] - before[1] == len(batch.occurred) == len(batch.allowed) - 1  # one passed without occurred-at


def test_dedupe_window_forgets_the_oldest_first_and_stays_bounded() -> None:
    window = DedupeWindow(size=3)
    assert [window.seen("p", e) for e in "abcd"] == [False] * 4
    assert window.ids("p") == ["b", "c", "d"]
    assert window.seen("p", "b") and window.ids("p") == ["b", "c", "d"]  # a repeat does not make an id younger
    assert not window.seen("p", "a") and window.ids("p") == ["c", "d", "a"]
    for i in range(100):
        window.seen("p", str(i))
    assert window.ids("p") == ["97", "98", "99"] and not window.seen("q", "99")


def test_dedupe_window_keeps_at_least_its_size_in_generations_and_drops_the_oldest_whole() -> None:
    window = DedupeWindow(size=20)  # generations of 5
    for i in range(30):
        assert not window.seen("p", str(i))
    assert window.ids("p") == [str(i) for i in range(10, 30)]
    for i in range(30, 34):
        window.seen("p", str(i))
    assert window.ids("p") == [str(i) for i in range(10, 34)]  # at most size + size // 4
    assert window.seen("p", "10") and window.seen("p", "33") and "9" not in window.ids("p")
    assert not window.seen("p", "34")  # fills a generation: the oldest goes whole
    assert window.ids("p") == [str(i) for i in range(15, 35)] and not window.seen("p", "14")
    for n in range(1, 200):  # whatever the count, between size and size + size // 4 remembered
        window.seen("q", f"q{n}")
        assert min(n, 20) <= len(window.ids("q")) <= 25


def test_dedupe_window_loads_what_went_out_before_a_restart() -> None:
    window = DedupeWindow(size=3)
    window.seen(("t", 0), "before")
    window.load(("t", 0), ["x", "", "y", "x", "z", "w"])  # starts over: only the sink's newest ids
    assert window.ids(("t", 0)) == ["y", "z", "w"] and window.seen(("t", 0), "w")
    window.forget(("t", 0))
    assert window.ids(("t", 0)) == [] and not window.seen(("t", 0), "w")


def test_a_new_catalog_lets_its_new_version_out_and_keeps_the_views_learnt_before() -> None:
    from hybridbus.adapters.codec import AvroCodec
    from tests.catalog_change import NEW_VERSION, changed_snapshot

    changed = changed_snapshot().catalog()
    codec = AvroCodec.for_catalog(changed)
    licence_v2 = changed.get(*NEW_VERSION)
    value = codec.encode(licence_v2, {"credit_code": "9131", "company_name": "甲", "licence_type": "有限责任公司",
                                      "district": "浦东新区", "business_scope": "软件", "granted_on": "2026-11-30",
                                      "registered_capital_band": "100-500万"})
    headers = [(H.EVENT_ID, b"v2-1"), (H.DESTINATIONS, b"public_cloud,archive")]
    guard = guard_for(PUBLIC_CLOUD)
    views = {(t.key, t.version) for t in guard.derived_types()}
    assert not guard.check(licence_v2.graded_topic(Grade.PUBLIC), b"k", value, headers).allowed  # unknown: kept
    guard.use_codec(codec, derived_event_types(changed, SHIPPED))  # between batches
    batch = run(guard, [(licence_v2.graded_topic(Grade.PUBLIC), 0, 1, b"k", value, headers)])
    assert [p.event_type.version for p in batch.allowed] == [2] and batch.quarantined == []
    assert views <= {(t.key, t.version) for t in guard.derived_types()}
    assert all(guard.codec.knows(codec.fingerprint(t)) for t in guard.derived_types())


def test_egress_only_checks_records_no_value_can_raise_and_still_refuses_what_does_not_decode() -> None:
    from hybridbus.runtime.guard_step import value_free

    egress, archiver = guard_for(PUBLIC_CLOUD), guard_for(ARCHIVE)
    licence = CATALOG.get("market.licence_granted")
    assert value_free(licence) and egress.codec.fingerprint(licence) in egress.unread
    raisable = [et for et in CATALOG if not value_free(et)]
    assert raisable and not {egress.codec.fingerprint(et) for et in raisable} & egress.unread
    assert archiver.unread == frozenset()  # the archiver writes the values: it decodes every record

    public, _private = routed()
    record = next(r for r in public if r[0] == "public.market.licence_granted")
    topic, partition, offset, key, value, headers = record
    assert value is not None
    batch = run(egress, [record, (topic, partition, offset + 1, b"cut", value[:-3], headers)])
    assert [p.payload for p in batch.allowed] == [None]  # checked, not decoded: egress sends the bytes as they are
    (_, _, _, _, quarantined_headers), = batch.quarantined
    assert dict(quarantined_headers)[H.DLQ_REASON].startswith(b"does not decode: market.licence_granted")
