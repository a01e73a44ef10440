"""The router step's batch form writes exactly what routing each record with the reference engine writes: the same
output records (topics, keys, payload bytes, partitions, headers), the same DLQ records and reasons, the same
audit decisions and metric counts — over every sample, the hostile corpus, forged headers and derived views."""
from __future__ import annotations

import random
from collections import Counter
from typing import Any

from prometheus_client import REGISTRY

from hybridbus.adapters import metrics
from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.exceptions import EncodeError
from hybridbus.ops.hostile import FORGED, TOO_LARGE_FOR_KAFKA
from hybridbus.runtime.decisions import decode_record
from hybridbus.runtime.router_step import Outcome, RouterBatch, RouterStep
from routing import headers as H
from routing.catalog import effective_grade
from routing.grades import Grade
from routing.rules import Match, Rule, RuleSet, Transform, View
from tests.unit.runtime.inputs import (
    CATALOG,
    NOW_MS,
    SHIPPED,
    IngressRecord,
    fresh_codec,
    hostile,
    hostile_records,
    publisher_headers,
    sample_records,
)


def hmac_stub(data: bytes) -> bytes:
    return ("h" + str(sum(data) % 9973)).encode()


def view(name: str, to: tuple[str, ...], **fields: Transform) -> View:
    return View(name, tuple(sorted(fields.items())), to)


KEEP, DROP, MASK = Transform("keep"), Transform("drop"), Transform("mask")
# Views with every transform, a direct export that the grade refuses, and a view a restricted type may not have.
VIEWS = RuleSet("unit-views-1", (
    Rule("feedback-open", Match("govservice", "citizen_feedback"), (), (
        view("feedback_open", ("public_cloud", "archive"), contact=Transform("pseudonymise", "contact"),
             district=Transform("generalise", "district"), feedback_id=MASK,
             submitted_at=Transform("generalise", "month"), text=DROP, topic=KEEP),
        view("feedback_by_day", ("archive",), contact=DROP, district=KEEP, feedback_id=DROP,
             submitted_at=Transform("generalise", "date"), text=DROP, topic=KEEP))),
    Rule("permits-out", Match("govservice", "permit_application"), ("archive",), (
        view("permit_leaky", ("public_cloud",), application_id=KEEP, applicant_name=DROP, applicant_phone=DROP,
             district=KEEP, permit_type=KEEP, submitted_at=KEEP),)),
    Rule("hospital-view", Match("health", "hospital_admission"), (), (
        view("admissions", ("archive",), admission_id=DROP, patient_id_number=DROP, patient_name=DROP,
             diagnosis_code=DROP, hospital=KEEP, ward=DROP, admitted_at=Transform("generalise", "month")),)),
    Rule("licences-cloud-only", Match("market", "licence_granted", Grade.PUBLIC), ("public_cloud",)),
    Rule("closures-out", Match("transport", "road_closure"), ("public_cloud", "archive")),
))


def transform_failures(codec: AvroCodec) -> list[IngressRecord]:
    """Feedback whose district is unknown or whose time is out of range: the view's transform refuses it."""
    et = CATALOG.get("govservice.citizen_feedback")
    base = {"feedback_id": "12345-2026-11-0042", "topic": "噪音", "district": "静安区", "text": "夜间施工噪音",
            "contact": "13987654321", "submitted_at": 1795567380000}
    variants = [{"district": "某某区"}, {"submitted_at": 2**62}, {"contact": None}, {"district": "张三住在海淀区"},
                {"district": "某某区", "submitted_at": -(2**62)}]
    return [(et.ingress_topic, 0, f"tf-{i}".encode(), codec.encode(et, {**base, **v}), publisher_headers(et, f"tf-{i}"))
            for i, v in enumerate(variants)]


def forged(codec: AvroCodec) -> list[IngressRecord]:
    """Events above public whose producer claims `public` and stamps the router's own headers."""
    out = []
    for i, record in enumerate(sample_records(CATALOG, codec, per_type=1, tag="forged")):
        claims = [(H.CLAIMED_GRADE, b"public"), (H.GRADE, b"public"), (H.DESTINATIONS, b"public_cloud,archive"),
                  (H.RULES_VERSION, b"forged-1"), (H.ROUTED_AT, b"1")]
        out.append((record[0], record[1], record[2], record[3], (record[4] or []) + claims[: 1 + i % len(claims)]))
    return out


def odd_headers(codec: AvroCodec) -> list[IngressRecord]:
    """Header lists as Kafka allows them: names given twice, values None, no headers at all, a key-less record."""
    odd: list[list[tuple[str, Any]] | None] = [
        None, [], [(H.EVENT_ID, b"first"), (H.EVENT_ID, b"second")], [(H.EVENT_ID, b"kept"), (H.EVENT_ID, None)],
        [(H.GRADE, None), (H.EVENT_ID, None), (H.OCCURRED_AT, None)], [(H.EVENT_ID, b"\xff\xfe"), (H.DEPT, None)],
        [(H.RULES_VERSION, b"mine"), (H.RULES_VERSION, b"again"), (H.CLAIMED_GRADE, b"\xff")],
        [(H.CLAIMED_GRADE, b"no-such-grade"), (H.OCCURRED_AT, b"soon")], [(H.GRADE, b"public"), (H.GRADE, b"internal")]]
    records = sample_records(CATALOG, codec, per_type=2, tag="odd")
    return [(topic, partition, key if i % 4 else None, value, odd[i % len(odd)])
            for i, (topic, partition, key, value, _) in enumerate(records)]


def per_record(step: RouterStep, records: list[IngressRecord], live: RuleSet, shadow: RuleSet | None) -> list[Outcome]:
    return [step.route(*record, live, shadow, NOW_MS) for record in records]


def batched(step: RouterStep, records: list[IngressRecord], live: RuleSet,
            shadow: RuleSet | None = None) -> RouterBatch:
    step.load(live, shadow)
    batch = step.begin(NOW_MS)
    for record in records:
        step.route_into(batch, *record)
    return batch


def expected_counts(outcomes: list[Outcome]) -> dict[Any, Counter[tuple[str, ...]]]:
    """What the router counted per event before (processors/router.py `_count`)."""
    counts: dict[Any, Counter[tuple[str, ...]]] = {}

    def add(metric: Any, labels: tuple[str, ...], amount: int = 1) -> None:
        counts.setdefault(metric, Counter())[labels] += amount

    for outcome in outcomes:
        et = outcome.event_type
        if et is None:
            add(metrics.DLQ, ("router", outcome.dlq_reason or "unknown"))
            continue
        add(metrics.EVENTS_IN, ("router", et.dept, et.key))
        for out in outcome.outputs:
            grade = next((v.decode() for k, v in out.headers if k == H.GRADE), "")
            add(metrics.EVENTS_OUT, ("router", et.dept, et.key, grade, out.topic.split(".", 1)[0]))
        if outcome.forged:
            add(metrics.FORGED_HEADERS, (et.dept, et.key))
        if outcome.blocked:
            add(metrics.BOUNDARY_BLOCKED, ("router", et.dept, et.key, outcome.grade.id if outcome.grade else ""),
                outcome.blocked)
        for rule_id, change in outcome.shadow_changes:
            add(metrics.SHADOW_MOVES, (rule_id, change.split(":", 1)[0]))
    return counts


def assert_same(old: list[Outcome], batch: RouterBatch, records: list[IngressRecord]) -> None:
    as_tuples = [[(o.topic, o.key, o.value, o.partition, o.headers) for o in outcome.outputs] for outcome in old]
    assert batch.outputs == [t for outcome, ts in zip(old, as_tuples) if outcome.dlq_reason is None for t in ts]
    assert batch.dlq == [t for outcome, ts in zip(old, as_tuples) if outcome.dlq_reason is not None for t in ts]
    decoded = [d for value in batch.decision_records() for d in decode_record(b"router", value)]
    assert decoded == [d.__dict__ for outcome in old for d in outcome.decisions]
    assert {m: Counter(c) for m, c in batch.counts().items()} == expected_counts(old)
    routed = [dict(r[4] or []).get(H.OCCURRED_AT) for outcome, r in zip(old, records) if outcome.dlq_reason is None]
    assert batch.occurred == [value for value in routed if value]


def test_every_sample_and_the_hostile_corpus_route_as_record_by_record() -> None:
    step = RouterStep(CATALOG, fresh_codec(), pseudonymiser=hmac_stub)
    records = sample_records(CATALOG, step.codec) + hostile_records(CATALOG, step.codec) + forged(step.codec)
    records += odd_headers(step.codec)
    random.Random(5).shuffle(records)
    old = per_record(step, records, SHIPPED, None)
    batch = batched(step, records, SHIPPED)
    assert_same(old, batch, records)
    assert len(batch.outputs) > len(records) // 2 and len(batch.dlq) > 50  # both kinds really exercised


def test_views_transforms_and_refused_exports_route_as_record_by_record() -> None:
    for pseudonymiser in (hmac_stub, None):  # no key: every pseudonymising view is refused, per event
        step = RouterStep(CATALOG, fresh_codec(), pseudonymiser=pseudonymiser)
        records = sample_records(CATALOG, step.codec) + transform_failures(step.codec) + forged(step.codec)
        old = per_record(step, records, VIEWS, None)
        batch = batched(step, records, VIEWS)
        assert_same(old, batch, records)
        assert any(d.verdict == "blocked" and "view feedback_open" in d.reason for o in old for d in o.decisions)


def test_hostile_inputs_go_to_the_dlq_with_the_reason_class_they_expect() -> None:
    step = RouterStep(CATALOG, fresh_codec())
    corpus = hostile(CATALOG, step.codec)
    batch = batched(step, [(r.topic, 1, r.key, r.value, r.headers) for r in corpus], SHIPPED)
    expected = Counter("decode_error" if r.expect == TOO_LARGE_FOR_KAFKA else r.expect for r in corpus
                       if r.expect != FORGED)
    assert batch.dlq_reasons == dict(expected)
    assert all(topic == "_hbus.dlq" and dict(headers)[H.DLQ_REASON] for topic, _, _, _, headers in batch.dlq)
    dlq_keys = {key for _, key, _, _, _ in batch.dlq}
    assert not dlq_keys & {key for _, key, _, _, _ in batch.outputs}
    assert batch.counts()[metrics.DLQ] == {("router", kind): n for kind, n in expected.items()}


def test_a_forged_public_claim_is_routed_by_the_schema_grade_and_counted() -> None:
    step = RouterStep(CATALOG, fresh_codec())
    et = CATALOG.get("govservice.citizen_feedback")
    topic, partition, key, value, headers = next(r for r in sample_records(CATALOG, step.codec, per_type=1)
                                                 if r[0] == et.ingress_topic)
    claims = [(H.CLAIMED_GRADE, b"public"), (H.GRADE, b"public"), (H.DESTINATIONS, b"public_cloud")]
    batch = batched(step, [(topic, partition, key, value, (headers or []) + claims)], SHIPPED)
    graded = [out for out in batch.outputs if out[0] == "sensitive.govservice.citizen_feedback"]
    assert len(graded) == 1
    out_headers = graded[0][4]
    assert (H.GRADE, b"sensitive") in out_headers and (H.GRADE, b"public") not in out_headers
    assert (H.DESTINATIONS, b"public_cloud") not in out_headers
    assert (H.CLAIMED_GRADE, b"public") in out_headers  # the producer's word is kept, beside the router's
    decisions = [d for v in batch.decision_records() for d in decode_record(b"router", v)]
    assert {d["verdict"] for d in decisions} == {"forged"}
    assert batch.counts()[metrics.FORGED_HEADERS] == {("govservice", "govservice.citizen_feedback"): 1}


def test_wrong_topic_and_wrong_department_are_refused() -> None:
    step = RouterStep(CATALOG, fresh_codec())
    licence, closure = (next(r for r in sample_records(CATALOG, step.codec, per_type=1) if r[0] == t)
                        for t in ("ingress.market.licence_granted", "ingress.transport.road_closure"))
    on_other_topic = (closure[0], 0, b"k1", licence[3], licence[4])
    other_dept = (licence[0], 0, b"k2", licence[3], [(H.EVENT_ID, b"e2"), (H.DEPT, b"transport")])
    batch = batched(step, [on_other_topic, other_dept], SHIPPED)
    assert batch.outputs == [] and batch.dlq_reasons == {"wrong_topic": 1, "wrong_department": 1}
    reasons = [dict(h)[H.DLQ_REASON].decode() for _, _, _, _, h in batch.dlq]
    assert reasons == ["a market.licence_granted event on ingress.transport.road_closure",
                       "header department 'transport' on a market.licence_granted event"]
    sources = [(dict(h)[H.SOURCE_TOPIC], dict(h)["hbus-source-partition"]) for _, _, _, _, h in batch.dlq]
    assert sources == [(b"ingress.transport.road_closure", b"0"), (b"ingress.market.licence_granted", b"0")]


def test_the_graded_copy_is_the_producers_bytes_and_a_view_is_public_and_decodes() -> None:
    codec = fresh_codec()
    step = RouterStep(CATALOG, codec, pseudonymiser=hmac_stub)
    records = [r for r in sample_records(CATALOG, codec, per_type=1) if r[0] == "ingress.govservice.citizen_feedback"]
    batch = batched(step, records, VIEWS)
    by_topic = {topic: (value, dict(headers)) for topic, _, value, _, headers in batch.outputs}
    assert by_topic["sensitive.govservice.citizen_feedback"][0] is records[0][3]
    for name, destinations in (("feedback_open", b"archive,public_cloud"), ("feedback_by_day", b"archive")):
        value, headers = by_topic[f"public.govservice.{name}"]
        view_type, payload = codec.decode(value)
        assert view_type.event == name and effective_grade(view_type, payload) is Grade.PUBLIC
        assert headers[H.GRADE] == b"public" and headers[H.DESTINATIONS] == destinations
        assert headers[H.RULES_VERSION] == b"unit-views-1" and headers[H.ROUTED_AT] == str(NOW_MS).encode()
    assert "text" not in codec.decode(by_topic["public.govservice.feedback_open"][0])[1]


def test_a_record_that_fails_half_way_leaves_only_its_dlq_copy() -> None:
    class FailingViews(AvroCodec):
        def encode(self, event_type: Any, payload: Any) -> bytes:
            if event_type.event == "feedback_by_day":
                raise EncodeError("topic", "refused for the test")
            return super().encode(event_type, payload)

    step = RouterStep(CATALOG, FailingViews.for_catalog(CATALOG), pseudonymiser=hmac_stub)
    records = [r for r in sample_records(CATALOG, step.codec, per_type=2) if r[0].startswith("ingress.govservice")]
    old = per_record(step, records, VIEWS, None)
    batch = batched(step, records, VIEWS)
    assert_same(old, batch, records)
    assert batch.dlq_reasons.get("routing_error") == sum(r[0].endswith("citizen_feedback") for r in records)
    failed = ("sensitive.govservice.citizen", "public.govservice.feedback")
    assert not any(out[0].startswith(failed) for out in batch.outputs)


def test_shadow_moves_are_the_per_event_comparison_without_routing_twice() -> None:
    step = RouterStep(CATALOG, fresh_codec(), pseudonymiser=hmac_stub)
    records = sample_records(CATALOG, step.codec) + forged(step.codec)
    old = per_record(step, records, SHIPPED, VIEWS)
    batch = batched(step, records, SHIPPED, VIEWS)
    assert_same(old, batch, records)
    moves = batch.counts()[metrics.SHADOW_MOVES]
    assert moves[("feedback-open", "+public_cloud")] > 0 and moves[("-", "-public_cloud")] > 0
    assert all(not out[4] or dict(out[4])[H.RULES_VERSION] == SHIPPED.version.encode() for out in batch.outputs)


def test_a_new_rule_set_applies_from_the_next_batch() -> None:
    step = RouterStep(CATALOG, fresh_codec(), pseudonymiser=hmac_stub)
    records = [r for r in sample_records(CATALOG, step.codec, per_type=1) if r[0] == "ingress.market.licence_granted"]
    before = batched(step, records, SHIPPED)
    after = batched(step, records, VIEWS)
    assert [dict(o[4])[H.DESTINATIONS] for o in before.outputs] == [b"archive,public_cloud"]
    assert [dict(o[4])[H.DESTINATIONS] for o in after.outputs] == [b"public_cloud"]
    assert dict(after.outputs[0][4])[H.RULES_VERSION] == b"unit-views-1"


def test_batch_metrics_reach_prometheus_once_per_batch() -> None:
    step = RouterStep(CATALOG, fresh_codec())
    samples = sample_records(CATALOG, step.codec, per_type=3, tag="m")
    batch = batched(step, samples + hostile_records(CATALOG, step.codec, 12), SHIPPED)

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    licence_in = {"component": "router", "dept": "market", "event_type": "market.licence_granted"}
    before = (value("hbus_events_in_total", **licence_in), value("hbus_latency_seconds_count", stage="routed"),
              value("hbus_dlq_total", component="router", reason="decode_error"))
    batch.publish_metrics()
    after = (value("hbus_events_in_total", **licence_in), value("hbus_latency_seconds_count", stage="routed"),
             value("hbus_dlq_total", component="router", reason="decode_error"))
    assert after[0] - before[0] == sum(r[0] == "ingress.market.licence_granted" for r in samples)
    assert after[1] - before[1] == len(batch.occurred) > 0
    assert after[2] - before[2] == batch.dlq_reasons["decode_error"]


def inspections(codec: AvroCodec, phones: list[str | None], inspector: str | None = None) -> list[IngressRecord]:
    """Inspection results of the shipped catalog, one per phone (None: no complaint), as the market publisher sends."""
    et = CATALOG.get("market.inspection_result")
    base = {"inspection_id": "SJ-1", "credit_code": "91310115MA1K4XYZ3Q", "business_name": "浦江", "district": "浦东新区",
            "inspection_type": "投诉核查", "result": "合格", "inspected_on": "2026-11-24",
            "complainant_phone": None, "inspector_id_number": inspector}
    return [(et.ingress_topic, 0, f"in-{i}".encode(), codec.encode(et, {**base, "complainant_phone": phone}),
             publisher_headers(et, f"in-{i}")) for i, phone in enumerate(phones)]


class CountingSource:
    """A pseudonym source that records each batch's request (the router's is Vault Transit, through a cache)."""

    def __init__(self) -> None:
        self.requests: list[set[bytes]] = []
        self.cleared = 0

    def resolve(self, inputs: set[bytes]) -> dict[bytes, str]:
        self.requests.append(set(inputs))
        return {data: "vault:v1:" + data.hex()[-12:] for data in inputs}

    def clear(self) -> None:
        self.cleared += 1


def test_a_batch_gets_its_pseudonyms_from_one_request_before_it_is_routed() -> None:
    codec, source = fresh_codec(), CountingSource()
    step = RouterStep(CATALOG, codec, pseudonyms=source)
    phones = ["13911112222", "13800001111", "13911112222", None, "13911112222"]
    records = inspections(codec, phones) + sample_records(CATALOG, codec, per_type=1)
    step.load(SHIPPED)
    batch = step.begin(NOW_MS)
    step.prepare(batch, [(r[0], r[3]) for r in records])
    for record in records:
        step.route_into(batch, *record)
    # One request, for the distinct values only (the sample's own complaint variant among them).
    assert len(source.requests) == 1
    assert {b"complainant:13911112222", b"complainant:13800001111"} <= source.requests[0]
    views = {key: codec.decode(value)[1] for topic, key, value, _, _ in batch.outputs
             if topic == "public.market.inspection_complaints" and key.startswith(b"in-")}
    assert sorted(views) == [b"in-0", b"in-1", b"in-2", b"in-4"]  # the one without a complaint is public itself
    assert views[b"in-0"]["complainant_phone"] == views[b"in-2"]["complainant_phone"] == views[b"in-4"]["complainant_phone"]
    assert views[b"in-0"]["complainant_phone"] != views[b"in-1"]["complainant_phone"]
    assert all(v["complainant_phone"].startswith("vault:v1:") for v in views.values())
    for topic, _, value, _, _ in batch.outputs:
        if topic.startswith("public."):
            assert b"13911112222" not in value and b"13800001111" not in value
    assert batch.dlq == []


def test_a_batch_not_prepared_never_carries_a_plain_value_nor_a_view_without_its_pseudonym() -> None:
    codec, source = fresh_codec(), CountingSource()
    step = RouterStep(CATALOG, codec, pseudonyms=source)
    records = inspections(codec, ["13911112222"])
    batch = batched(step, records, SHIPPED)  # no prepare: no pseudonym at hand
    assert [topic for topic, *_ in batch.outputs] == ["sensitive.market.inspection_result"]
    assert batch.dlq == [] and source.requests == []
    decisions = [d for value in batch.decision_records() for d in decode_record(b"router", value)]
    assert {d["verdict"] for d in decisions} == {"routed", "blocked"}
    assert all("no pseudonym" in d["reason"] for d in decisions if d["verdict"] == "blocked")


def test_batches_without_a_pseudonymised_value_ask_nothing_and_a_rule_switch_forgets() -> None:
    codec, source = fresh_codec(), CountingSource()
    step = RouterStep(CATALOG, codec, pseudonyms=source)
    step.load(SHIPPED)
    assert source.cleared == 2  # at start, and at this switch
    batch = step.begin(NOW_MS)
    records = inspections(codec, [None, "13911112222"], inspector="310101198503152417")  # restricted: no view
    records += [r for r in sample_records(CATALOG, codec, per_type=2) if "inspection" not in r[0]]
    step.prepare(batch, [(r[0], r[3]) for r in records])
    assert source.requests == [] and batch.pseudonymise is None
    for record in records:
        step.route_into(batch, *record)
    ours = [topic for topic, key, *_ in batch.outputs if key.startswith(b"in-")]
    assert ours == ["restricted.market.inspection_result"] * 2


def test_a_new_catalog_routes_its_new_type_and_version_from_the_next_batch_on() -> None:
    from tests.catalog_change import NEW_TYPE, NEW_VERSION, changed_snapshot

    changed = changed_snapshot().catalog()
    new_codec = AvroCodec.for_catalog(changed)
    notice = changed.get(NEW_TYPE)
    licence_v2 = changed.get(*NEW_VERSION)
    records: list[IngressRecord] = [
        (notice.ingress_topic, 0, b"n1", new_codec.encode(notice, {"notice_id": "JC-1", "credit_code": "9131",
                                                                    "district": "浦东新区", "announced_on": "2026-11-30"}),
         publisher_headers(notice, "n1")),
        (licence_v2.ingress_topic, 1, b"l2", new_codec.encode(licence_v2, {
            "credit_code": "9131", "company_name": "甲", "licence_type": "有限责任公司", "district": "浦东新区",
            "business_scope": "软件", "granted_on": "2026-11-30", "registered_capital_band": None}),
         publisher_headers(licence_v2, "l2")),
    ]
    step = RouterStep(CATALOG, fresh_codec())
    step.load(SHIPPED)
    step.unknown_waited = lambda value: 12.0
    before = step.begin(NOW_MS)
    for record in records:
        step.route_into(before, *record)
    assert [r[0] for r in before.outputs] == []
    assert [dict(r[4])[H.DLQ_REASON].decode() for r in before.dlq] == [
        f"unknown schema fingerprint {new_codec.fingerprint(t).hex()} after 12 s" for t in (notice, licence_v2)]

    step.use_catalog(changed, new_codec)  # between batches
    after = step.begin(NOW_MS)
    for record in records:
        step.route_into(after, *record)
    assert after.dlq == []
    assert sorted(r[0] for r in after.outputs) == ["public.market.inspection_notice", "public.market.licence_granted"]
    assert step.live is SHIPPED  # the rule set in force stays, compiled for the new catalog


class CountingCodec(AvroCodec):
    """Counts the records decoded into a dict (a record only checked is not one of them)."""

    decoded = 0

    @staticmethod
    def _decode(data: bytes, entry: Any) -> Any:
        CountingCodec.decoded += 1
        return AvroCodec._decode(data, entry)


def test_types_no_value_can_route_differently_are_checked_not_decoded_and_damaged_ones_go_to_the_dlq() -> None:
    codec = CountingCodec.for_catalog(CATALOG)
    step = RouterStep(CATALOG, codec, pseudonymiser=hmac_stub)
    step.load(SHIPPED)
    fixed = {tp.event_type.ingress_topic for tp in step._plan.fixed}  # noqa: SLF001 - which types the plan fixed
    assert "ingress.transport.bus_arrival" in fixed and "ingress.govservice.citizen_feedback" not in fixed
    records = sample_records(CATALOG, codec, per_type=3)
    # The same records cut short, with a byte that is not UTF-8 in their last text, and with a byte left over.
    damaged = [(t, p, k, v[:-3], h) for t, p, k, v, h in records if t in fixed]
    damaged += [(t, p, k, v[:-1] + b"\xff", h) for t, p, k, v, h in records if t in fixed]
    damaged += [(t, p, k, v + b"\x00", h) for t, p, k, v, h in records if t in fixed]
    CountingCodec.decoded = 0
    batch = batched(step, records, SHIPPED)
    assert CountingCodec.decoded == sum(r[0] not in fixed for r in records)
    assert batch.dlq == [] and len(batch) == len(records)
    old = per_record(step, records + damaged, SHIPPED, None)
    batch = batched(step, records + damaged, SHIPPED)
    assert_same(old, batch, records + damaged)
    assert sum(batch.dlq_reasons.values()) == len(batch.dlq) == len(damaged)
    assert all(reason.startswith(("market.", "transport.", "health.", "police."))
               for reason in (dict(h)[H.DLQ_REASON].decode() for *_, h in batch.dlq))


def test_prepare_decodes_a_pseudonymising_record_once_for_the_batch() -> None:
    codec, source = CountingCodec.for_catalog(CATALOG), CountingSource()
    step = RouterStep(CATALOG, codec, pseudonyms=source)
    records = inspections(codec, ["13911112222", "13800001111", None])
    step.load(SHIPPED)
    CountingCodec.decoded = 0
    batch = step.begin(NOW_MS)
    step.prepare(batch, [(r[0], r[3]) for r in records])
    for record in records:
        step.route_into(batch, *record)
    assert CountingCodec.decoded == len(records)
    assert sorted(topic for topic, *_ in batch.outputs) == [  # the one without a complaint is public itself
        "public.market.inspection_complaints", "public.market.inspection_complaints", "public.market.inspection_result",
        "sensitive.market.inspection_result", "sensitive.market.inspection_result"]
    # A record routed in another batch than the one prepared is decoded there (and, unprepared, has no view).
    other = step.begin(NOW_MS)
    step.route_into(other, *records[0])
    assert CountingCodec.decoded == len(records) + 1
    assert [topic for topic, *_ in other.outputs] == ["sensitive.market.inspection_result"]
