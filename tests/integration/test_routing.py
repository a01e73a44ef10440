"""The router on the real stack: every catalog type lands on exactly its topics with exactly its payloads;
forged headers, garbage and rule-set swaps go where they should."""
from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import pytest
import requests

from hybridbus.adapters import kafka
from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.config import REPO_ROOT, Settings
from hybridbus.adapters.loaders import derived_event_types, load_catalog, load_rules, load_ruleset_dir
from hybridbus.adapters.topology import DECISIONS_TOPIC, DLQ_TOPIC, PRIVATE, PUBLIC
from hybridbus.runtime.decisions import decode_record
from hybridbus.ops.samples import load_sample
from hybridbus.ops.governance import apply_rules
from hybridbus.runtime.rulestore import LIVE, SHADOW
from producers.publisher import Publisher
from routing import headers as H
from routing.grades import Grade
from tests.integration.kafkatools import end_offsets, read_after

SAMPLES = REPO_ROOT / "schemas" / "samples"


def by_event_id(event_id: str):  # type: ignore[no-untyped-def]
    return lambda record: record.headers.get(H.EVENT_ID) == event_id.encode()


def publish_one(key: str, version: int | None = None, **kwargs) -> tuple[str, dict, bytes]:  # type: ignore[no-untyped-def]
    catalog = load_catalog()
    event_type = catalog.get(key, version)
    payload = load_sample(SAMPLES, event_type)
    publisher = Publisher.for_department(event_type.dept, catalog=catalog)
    # The bytes sent, restricted fields sealed by the client: what every private copy must carry untouched.
    envelope = publisher.prepare(key, payload, version=event_type.version, **kwargs)
    delivery = publisher.send(envelope)
    return delivery.event_id, payload, envelope.value


EXPECTED = {
    # type: (private topics it must reach, public-cluster topics it must reach)
    "market.licence_granted": ({"public.market.licence_granted"}, {"public.market.licence_granted"}),
    "transport.bus_arrival": ({"public.transport.bus_arrival"}, {"public.transport.bus_arrival"}),
    "transport.road_closure": ({"internal.transport.road_closure"}, set()),
    "govservice.permit_application": ({"sensitive.govservice.permit_application", "public.govservice.permit_application_stats"},
                                      {"public.govservice.permit_application_stats"}),
    "govservice.citizen_feedback": ({"sensitive.govservice.citizen_feedback", "public.govservice.citizen_feedback_stats"},
                                    {"public.govservice.citizen_feedback_stats"}),
    "health.hospital_admission": ({"restricted.health.hospital_admission"}, set()),
    "police.population_stats": ({"important.police.population_stats"}, set()),
}


def all_topics(cluster: str) -> list[str]:
    client = kafka.admin(cluster, kafka.admin_credentials(cluster))
    return sorted(t for t in client.list_topics(timeout=10).topics if not t.startswith("_") and not t.startswith("ingress."))


def test_every_event_type_lands_on_exactly_its_expected_topics(bus: Settings) -> None:
    private_topics, public_topics = all_topics(PRIVATE), all_topics(PUBLIC)
    since = {(PRIVATE, t): end_offsets(PRIVATE, t) for t in private_topics}
    since.update({(PUBLIC, t): end_offsets(PUBLIC, t) for t in public_topics})
    sent = {key: publish_one(key) for key in EXPECTED}
    ids = {event_id.encode(): key for key, (event_id, _, _) in sent.items()}

    reached: dict[tuple[str, str], set[str]] = {(key, c): set() for key in EXPECTED for c in (PRIVATE, PUBLIC)}
    for cluster, topics in ((PRIVATE, private_topics), (PUBLIC, public_topics)):
        for topic in topics:
            expected_here = sum(topic in EXPECTED[k][0 if cluster == PRIVATE else 1] for k in EXPECTED)
            found = read_after(cluster, topic, since[(cluster, topic)], lambda r: r.headers.get(H.EVENT_ID) in ids,
                               min_records=expected_here, timeout=30 if expected_here else 0.5)
            copies: dict[str, int] = {}
            for record in found:
                key = ids[record.headers[H.EVENT_ID]]
                copies[key] = copies.get(key, 0) + 1
                reached[(key, cluster)].add(topic)
                if topic.endswith(key.split(".")[1]):
                    assert record.value == sent[key][2]  # the graded copy is the producer's bytes, untouched
            assert all(n == 1 for n in copies.values()), f"duplicates on {cluster}:{topic}: {copies}"
    for key, (want_private, want_public) in EXPECTED.items():
        assert reached[(key, PRIVATE)] == want_private, key
        assert reached[(key, PUBLIC)] == want_public, key


def test_an_inspection_result_is_exported_only_without_a_person_and_its_complaint_view_is_pseudonymous(
        bus: Settings) -> None:
    catalog = load_catalog()
    et = catalog.get("market.inspection_result")
    views = {t.key: t for t in derived_event_types(catalog, load_rules())}
    codec = AvroCodec(list(catalog) + list(views.values()))
    base = load_sample(SAMPLES, et)
    phone, other = f"139{uuid.uuid4().int % 10**8:08d}", f"138{uuid.uuid4().int % 10**8:08d}"
    variants = {
        "empty": base,
        "named": {**base, "inspector_id_number": "310101198503152417"},
        "complaint-1": {**base, "complainant_phone": phone},
        "complaint-2": {**base, "complainant_phone": phone, "result": "责令整改"},
        "complaint-3": {**base, "complainant_phone": other},
    }
    complaint = ({"sensitive.market.inspection_result", "public.market.inspection_complaints"},
                 {"public.market.inspection_complaints"})
    expected = {"empty": ({"public.market.inspection_result"}, {"public.market.inspection_result"}),
                "named": ({"restricted.market.inspection_result"}, set()),
                "complaint-1": complaint, "complaint-2": complaint, "complaint-3": complaint}
    private_topics, public_topics = all_topics(PRIVATE), all_topics(PUBLIC)
    since = {(PRIVATE, t): end_offsets(PRIVATE, t) for t in private_topics}
    since.update({(PUBLIC, t): end_offsets(PUBLIC, t) for t in public_topics})
    publisher = Publisher.for_department("market", catalog=catalog)
    ids = {publisher.send(publisher.prepare(et.key, payload, version=et.version)).event_id.encode(): name
           for name, payload in variants.items()}

    reached = {(name, c): set() for name in variants for c in (PRIVATE, PUBLIC)}  # type: ignore[var-annotated]
    pseudonyms: dict[str, str] = {}
    for cluster, topics in ((PRIVATE, private_topics), (PUBLIC, public_topics)):
        for topic in topics:
            wanted = sum(topic in expected[n][0 if cluster == PRIVATE else 1] for n in variants)
            found = read_after(cluster, topic, since[(cluster, topic)], lambda r: r.headers.get(H.EVENT_ID) in ids,
                               min_records=wanted, timeout=30 if wanted else 0.5)
            for record in found:
                name = ids[record.headers[H.EVENT_ID]]
                reached[(name, cluster)].add(topic)
                assert phone.encode() not in (record.value or b"") or cluster == PRIVATE and topic.startswith("sensitive.")
                if cluster == PUBLIC and topic == "public.market.inspection_complaints":
                    view_type, view = codec.decode(record.value)
                    assert view_type.key == "market.inspection_complaints" and "inspector_id_number" not in view
                    pseudonyms[name] = view["complainant_phone"]
    for name, (want_private, want_public) in expected.items():
        assert reached[(name, PRIVATE)] == want_private, name
        assert reached[(name, PUBLIC)] == want_public, name
    # A keyed pseudonym from Vault Transit, never the value; equal values, equal pseudonyms.
    assert all(p.startswith("vault:v") and phone not in p and other not in p for p in pseudonyms.values())
    assert pseudonyms["complaint-1"] == pseudonyms["complaint-2"] != pseudonyms["complaint-3"]


def test_derived_view_carries_exactly_the_transformed_fields(bus: Settings) -> None:
    catalog = load_catalog()
    views = {t.key: t for t in derived_event_types(catalog, load_rules())}
    codec = AvroCodec(list(catalog) + list(views.values()))
    topic = "public.govservice.citizen_feedback_stats"
    since = end_offsets(PRIVATE, topic)
    event_id, payload, _ = publish_one("govservice.citizen_feedback")
    [record] = read_after(PRIVATE, topic, since, by_event_id(event_id))
    event_type, view = codec.decode(record.value)
    assert event_type.key == "govservice.citizen_feedback_stats"
    month = time.strftime("%Y-%m", time.gmtime(payload["submitted_at"] / 1000))
    assert view == {"topic": payload["topic"], "district": payload["district"], "submitted_at": month}
    assert record.headers[H.GRADE] == b"public"
    assert set(record.headers[H.DESTINATIONS].decode().split(",")) == {"public_cloud", "archive"}


def test_forged_public_header_is_routed_by_schema_grade(bus: Settings) -> None:
    restricted = "restricted.health.hospital_admission"
    since = end_offsets(PRIVATE, restricted)
    decisions_since = end_offsets(PRIVATE, DECISIONS_TOPIC)
    catalog = load_catalog()
    event_type = catalog.get("health.hospital_admission")
    payload = load_sample(SAMPLES, event_type)
    event_id = uuid.uuid4().hex
    creds = kafka.admin_credentials(PRIVATE)  # a producer with the department's rights would do the same
    producer = kafka.producer(PRIVATE, creds)
    producer.produce(event_type.ingress_topic, AvroCodec.for_catalog(catalog).encode(event_type, payload),
                     key=event_id.encode(), headers=[(H.EVENT_ID, event_id.encode()), (H.DEPT, b"health"),
                                                     (H.CLAIMED_GRADE, b"public"), (H.GRADE, b"public")])
    assert producer.flush(20) == 0
    [record] = read_after(PRIVATE, restricted, since, by_event_id(event_id))
    assert record.headers[H.GRADE] == b"restricted"
    assert record.headers[H.DESTINATIONS] == b""
    verdicts = [d for r in read_after(PRIVATE, DECISIONS_TOPIC, decisions_since,
                                      lambda r: event_id.encode() in (r.value or b""), min_records=1)
                for d in decode_record(r.key, r.value) if d.get("event_id") == event_id]  # either form
    assert verdicts and all(d["verdict"] == "forged" for d in verdicts)
    metrics = requests.get(f"http://{bus.host}:{bus.ports.router_metrics}/metrics", timeout=5).text
    assert 'hbus_forged_headers_total{dept="health",event_type="health.hospital_admission"}' in metrics


@pytest.mark.parametrize("value, reason", [
    (b"not avro at all", "marker"),
    (b"\xc3\x01" + b"\x00" * 8 + b"\x02", "unknown schema fingerprint"),
])
def test_garbage_goes_to_the_dlq_with_its_reason(bus: Settings, value: bytes, reason: str) -> None:
    since = end_offsets(PRIVATE, DLQ_TOPIC)
    key = uuid.uuid4().hex.encode()
    producer = kafka.producer(PRIVATE, kafka.admin_credentials(PRIVATE))
    producer.produce("ingress.market.licence_granted", value, key=key)
    assert producer.flush(20) == 0
    [record] = read_after(PRIVATE, DLQ_TOPIC, since, lambda r: r.key == key)
    assert record.value == value  # the original bytes are kept for a redrive
    assert reason in record.headers[H.DLQ_REASON].decode()
    assert record.headers[H.SOURCE_TOPIC] == b"ingress.market.licence_granted"


def test_event_of_another_type_on_an_ingress_topic_goes_to_the_dlq(bus: Settings) -> None:
    since = end_offsets(PRIVATE, DLQ_TOPIC)
    catalog = load_catalog()
    health = catalog.get("health.hospital_admission")
    key = uuid.uuid4().hex.encode()
    producer = kafka.producer(PRIVATE, kafka.admin_credentials(PRIVATE))
    producer.produce("ingress.market.licence_granted",
                     AvroCodec.for_catalog(catalog).encode(health, load_sample(SAMPLES, health)), key=key)
    assert producer.flush(20) == 0
    [record] = read_after(PRIVATE, DLQ_TOPIC, since, lambda r: r.key == key)
    assert "health.hospital_admission event on ingress.market.licence_granted" in record.headers[H.DLQ_REASON].decode()


def _rules_copy(tmp_path: Path, version: str, edit=None) -> Path:  # type: ignore[no-untyped-def]
    target = tmp_path / "rules"
    shutil.copytree(REPO_ROOT / "routing" / "rules", target)
    head = target / "ruleset.yaml"
    head.write_text(head.read_text().replace('version: "2026.11.30-1"', f'version: "{version}"'))
    if edit:
        edit(target)
    return target


def test_rule_set_swap_takes_effect_without_restart(bus: Settings, tmp_path: Path) -> None:
    version = f"test-swap-{uuid.uuid4().hex[:6]}"

    def archive_only(rules: Path) -> None:
        path = rules / "transport.yaml"
        path.write_text(path.read_text().replace("to: [public_cloud, archive]", "to: [archive]", 1))

    candidate = load_ruleset_dir(_rules_copy(tmp_path, version, archive_only))
    topic = "public.transport.bus_arrival"
    try:
        apply_rules(candidate, LIVE)
        time.sleep(3)  # routers poll the rules topic every second and switch between batches
        since = end_offsets(PRIVATE, topic)
        event_id, _, _ = publish_one("transport.bus_arrival")
        [record] = read_after(PRIVATE, topic, since, by_event_id(event_id))
        assert record.headers[H.RULES_VERSION] == version.encode()
        assert record.headers[H.DESTINATIONS] == b"archive"
    finally:
        apply_rules(load_rules(), LIVE)
    time.sleep(3)
    since = end_offsets(PRIVATE, topic)
    event_id, _, _ = publish_one("transport.bus_arrival")
    [record] = read_after(PRIVATE, topic, since, by_event_id(event_id))
    assert record.headers[H.RULES_VERSION] == load_rules().version.encode()


def test_shadow_rule_set_counts_what_it_would_move_and_moves_nothing(bus: Settings, tmp_path: Path) -> None:
    def no_feedback_view(rules: Path) -> None:
        path = rules / "govservice.yaml"
        path.write_text(path.read_text().replace("        to: [public_cloud, archive]\n", "        to: []\n"))

    candidate = load_ruleset_dir(_rules_copy(tmp_path, f"test-shadow-{uuid.uuid4().hex[:6]}", no_feedback_view))
    url = f"http://{bus.host}:{bus.ports.router_metrics}/metrics"

    def moves() -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in requests.get(url, timeout=5).text.splitlines()
                   if line.startswith("hbus_shadow_moves_total{"))

    try:
        apply_rules(candidate, SHADOW)
        time.sleep(3)
        before = moves()
        topic = "public.govservice.citizen_feedback_stats"
        since = end_offsets(PRIVATE, topic)
        event_id, _, _ = publish_one("govservice.citizen_feedback")
        [record] = read_after(PRIVATE, topic, since, by_event_id(event_id))
        # The live set still decides: the view is exported as before.
        assert set(record.headers[H.DESTINATIONS].decode().split(",")) == {"public_cloud", "archive"}
        deadline = time.monotonic() + 10
        while moves() <= before and time.monotonic() < deadline:
            time.sleep(0.5)
        assert moves() > before
    finally:
        apply_rules(None, SHADOW)


def test_nothing_non_public_exists_on_the_public_cluster(bus: Settings) -> None:
    topics = all_topics(PUBLIC)
    assert topics and all(t.startswith("public.") for t in topics)
    assert not [t for t in topics if any(t.startswith(f"{g.id}.") for g in Grade if g is not Grade.PUBLIC)]
