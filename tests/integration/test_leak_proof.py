"""The leak proof: canaries planted in non-public fields of many events — honest, forged and malformed, and
records injected past the router — are never found on the public cluster or in the bucket, while the public
canaries meant to go out are (so the scan can fail)."""
from __future__ import annotations

import json
import time
import uuid

import requests
from typer.testing import CliRunner

from hybridbus.adapters import kafka
from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.config import REPO_ROOT, Settings
from hybridbus.adapters.loaders import load_catalog
from hybridbus.adapters.topology import PRIVATE, PUBLIC, QUARANTINE_TOPIC
from hybridbus.adapters.vault import VaultSession
from hybridbus.cli.main import app
from hybridbus.ops.samples import OPEN_CANARY, SECRET_CANARY, sample_events
from producers.publisher import Publisher
from routing import headers as H
from tests.integration.kafkatools import end_offsets, read_after

SAMPLES = REPO_ROOT / "schemas" / "samples"


def test_no_non_public_canary_reaches_the_public_side(bus: Settings) -> None:
    catalog = load_catalog()
    codec = AvroCodec.for_catalog(catalog)
    tag = uuid.uuid4().hex[:6]
    quarantine_since = end_offsets(PRIVATE, QUARANTINE_TOPIC)
    public_since = {t: end_offsets(PUBLIC, t) for t in ("public.market.licence_granted", "public.govservice.citizen_feedback_stats")}

    # 1. Honest traffic of every type, canaries in every non-public string field.
    publishers: dict[str, Publisher] = {}
    events = list(sample_events(catalog, SAMPLES, per_type=25, tag=tag))
    for sample in events:
        dept = sample.event_type.dept
        publishers.setdefault(dept, Publisher.for_department(dept, catalog=catalog))
        publishers[dept].publish_async(sample.event_type.key, sample.payload, version=sample.event_type.version)
    for publisher in publishers.values():
        assert publisher.flush(60) == 0

    # 2. Forged headers claiming `public`, sent by each department with its own login.
    producers = {dept: kafka.producer(PRIVATE, VaultSession(dept, bus).kafka_credentials(PRIVATE)) for dept in publishers}
    for sample in events[: len(events) // 3]:
        et = sample.event_type
        producers[et.dept].produce(et.ingress_topic, codec.encode(et, sample.payload), key=uuid.uuid4().hex.encode(),
                                   headers=[(H.CLAIMED_GRADE, b"public"), (H.GRADE, b"public"),
                                            (H.DESTINATIONS, b"public_cloud,archive")])
    for producer in producers.values():
        assert producer.flush(30) == 0

    # 3. Malformed records carrying canary text: garbage and truncated Avro.
    admin = kafka.producer(PRIVATE, kafka.admin_credentials(PRIVATE))
    for i, sample in enumerate(events[:40]):
        body = codec.encode(sample.event_type, sample.payload)
        admin.produce(sample.event_type.ingress_topic, body[: len(body) // 2], key=f"trunc-{tag}-{i}".encode())
        admin.produce(sample.event_type.ingress_topic, f"{SECRET_CANARY}-garbage-{tag}-{i}".encode(), key=f"junk-{tag}-{i}".encode())

    # 4. Records injected past the router onto the topics egress and archiver read, with headers that lie.
    injected = []
    for sample in events:
        et = sample.event_type
        if et.schema_grade.id == "public":
            continue
        for topic in ("public.market.licence_granted", "public.govservice.citizen_feedback_stats"):
            key = f"inject-{tag}-{len(injected)}".encode()
            injected.append(key)
            admin.produce(topic, codec.encode(et, sample.payload), key=key,
                          headers=[(H.GRADE, b"public"), (H.DESTINATIONS, b"public_cloud,archive"),
                                   (H.EVENT_ID, key)])
    assert admin.flush(30) == 0

    # The guard quarantines every injected record on the private side.
    quarantined = read_after(PRIVATE, QUARANTINE_TOPIC, quarantine_since, lambda r: r.key in set(injected),
                             min_records=2 * len(injected), timeout=60)
    assert {r.key for r in quarantined} == set(injected)  # by egress and by the archiver

    # Wait for this run's public canaries to be out, then scan everything on the public side.
    wanted = f"{OPEN_CANARY}-{tag}".encode()
    for topic, since in public_since.items():
        assert read_after(PUBLIC, topic, since, lambda r: wanted in (r.value or b""), min_records=20, timeout=60)
    time.sleep(5)  # the archiver writes batches every couple of seconds
    result = CliRunner().invoke(app, ["leak-scan", "--json"])
    report = json.loads(result.stdout)
    assert report["records_scanned"] > 0 and report["objects_scanned"] > 0
    assert report["leaked"] == 0 and result.exit_code == 0, f"non-public canaries found at {report['leaked_where']}"
    assert report["public_canaries_found"] > 0

    metrics = requests.get(f"http://{bus.host}:{bus.ports.egress_metrics}/metrics", timeout=5).text
    assert "hbus_boundary_blocked_total{" in metrics


def test_an_inspection_naming_a_person_never_reaches_the_public_side_and_one_naming_no_one_does(bus: Settings) -> None:
    """One public event type, three variants: with its optional fields empty it is exported and archived whole; with
    the inspector's ID number (restricted) it never leaves in any form; with a complainant's phone (sensitive) only
    the pseudonymised view leaves. Counted on every topic of the public cluster and every new object of the bucket."""
    from hybridbus.adapters.loaders import load_rules
    from hybridbus.ops.arrivals import BUCKET, PUBLIC_CLUSTER, Tally, await_arrivals, expectation

    catalog, ruleset = load_catalog(), load_rules()
    et = catalog.get("market.inspection_result")
    run = uuid.uuid4().hex[:8]
    prefix = f"leak-inspection-{run}-"
    tally = Tally(bus, catalog, ruleset, prefix)  # counts only what is written from now on
    publisher = Publisher.for_department("market", catalog=catalog)
    samples = [s for s in sample_events(catalog, SAMPLES, per_type=10, tag=run) if s.event_type is et]
    kinds: dict[str, str] = {}
    expected = {}
    for n, sample in enumerate(samples):
        event_id = publisher.publish_async(et.key, sample.payload, event_id=f"{prefix}{n:04d}", version=et.version)
        expected[event_id] = expectation(et, sample.payload, ruleset)
        kinds[event_id] = ("named" if sample.payload["inspector_id_number"] else
                           "complaint" if sample.payload["complainant_phone"] else "empty")
    assert publisher.flush(60) == 0
    assert sorted(kinds.values()).count("named") == 10 and len(set(kinds.values())) == 3

    counted = await_arrivals(tally, expected, 120)
    assert all(a.complete for a in counted), [(a.place, a.missing) for a in counted]
    outside = tally.copies(PUBLIC_CLUSTER) + tally.copies(BUCKET)
    for event_id, kind in kinds.items():
        places = sorted(at for (at, i), n in outside.items() if i == event_id and n)
        if kind == "named":
            assert places == [], f"{event_id} (inspector's ID number set) found outside at {places}"
        elif kind == "empty":
            assert places == ["market/inspection_result/", "public.market.inspection_result"]
        else:
            assert places == ["market/inspection_complaints/", "public.market.inspection_complaints"]
    assert sum(a.extra_copies for a in counted) == 0
    assert tally.scan.leaked == 0, f"non-public canaries found at {tally.scan.leaked_where}"
    assert tally.scan.open_found > 0  # this run's public inspections were read: the scan could have failed
