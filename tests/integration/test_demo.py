"""`hbus demo` on a bus that is behind: started right after the processors restart on a backlog, it puts the rule
set in force through a proposal, an approval and the routers' switch, waits for its own records and reports only
counts that are really there; with egress stopped it names the public cluster as behind and exits non-zero within
its bound."""
from __future__ import annotations

import io
import json
from collections import Counter, defaultdict
from collections.abc import Iterator

import pytest
from fastavro import reader
from typer.testing import CliRunner

from hybridbus.adapters.config import REPO_ROOT, Settings
from hybridbus.adapters.loaders import load_catalog
from hybridbus.adapters.topology import PRIVATE, PUBLIC
from hybridbus.cli.main import app
from hybridbus.cli.output import UNAVAILABLE
from hybridbus.ops.bench.probes import group_lag
from hybridbus.ops.samples import sample_events
from hybridbus.ops.stack import workers
from hybridbus.ops.stack.bootstrap import s3_admin_client
from producers.publisher import Publisher
from routing import headers as H
from tests.integration.kafkatools import end_offsets, list_topics, read_after

# Events published while the processors are stopped: the bus is behind when the demo starts.
BACKLOG = 60_000
runner = CliRunner()
pytestmark = pytest.mark.bulk


def publish_backlog(count: int) -> None:
    catalog = load_catalog()
    publishers: dict[str, Publisher] = {}
    samples = sample_events(catalog, REPO_ROOT / "schemas" / "samples", count // len(catalog) + 1, tag="backlog")
    for _n, sample in zip(range(count), samples):
        dept = sample.event_type.dept
        if dept not in publishers:
            publishers[dept] = Publisher.for_department(dept, catalog=catalog)
        publishers[dept].publish_async(sample.event_type.key, sample.payload, version=sample.event_type.version)
    for publisher in publishers.values():
        assert publisher.flush(60) == 0


def bucket_keys(cfg: Settings) -> set[str]:
    s3 = s3_admin_client(cfg)
    return {obj["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=cfg.open_data_bucket)
            for obj in page.get("Contents", [])}


def demo_ids_in_bucket(cfg: Settings, keys: set[str]) -> dict[str, set[str]]:
    """The demo event ids each archived object among `keys` lists, per `<dept>.<event>`."""
    s3 = s3_admin_client(cfg)
    found: dict[str, set[str]] = defaultdict(set)
    for key in keys:
        if key.endswith(".avro"):
            body = s3.get_object(Bucket=cfg.open_data_bucket, Key=key)["Body"].read()
            ids = json.loads(reader(io.BytesIO(body)).metadata["hbus.event_ids"])
            found[".".join(key.split("/")[:2])].update(i for i in ids if i.startswith("demo-"))
    return {k: v for k, v in found.items() if v}


def public_topic_ends() -> dict[str, dict[int, int]]:
    return {topic: end_offsets(PUBLIC, topic) for topic in list_topics(PUBLIC)}


def demo_ids_on_public_cluster(since: dict[str, dict[int, int]], until: dict[str, dict[int, int]]) -> dict[str, set[str]]:
    """The demo event ids on each public-cluster topic between the two snapshots of end offsets (no waiting)."""
    found = {}
    for topic, ends in until.items():
        start = {p: since.get(topic, {}).get(p, 0) for p in ends}
        if all(ends[p] <= start[p] for p in ends):
            continue
        records = read_after(PUBLIC, topic, start, lambda r, ends=ends: r.offset < ends[r.partition],
                             min_records=sum(ends[p] - start[p] for p in ends), timeout=30)
        ids = {r.headers[H.EVENT_ID].decode() for r in records if r.headers.get(H.EVENT_ID, b"").startswith(b"demo-")}
        if ids:
            found[topic] = ids
    return found


@pytest.fixture
def processors_restarted_on_a_backlog(bus: Settings) -> Iterator[Settings]:
    workers.stop(bus)
    try:
        publish_backlog(BACKLOG)
    finally:
        workers.start(bus)
    yield bus


def test_demo_right_after_a_restart_on_a_backlog_reports_only_records_that_are_there(
        processors_restarted_on_a_backlog: Settings) -> None:
    cfg = processors_restarted_on_a_backlog
    public_before, keys_before = public_topic_ends(), bucket_keys(cfg)

    # The bus is behind when the demo starts: the archiver has not yet committed the backlog's public records.
    assert group_lag(PRIVATE, "hbus-archiver", [t for t in list_topics(PRIVATE) if t.startswith("public.")]) > 0
    result = runner.invoke(app, ["demo", "--per-type", "10", "--wait", "300", "--json"])

    public_after, keys_after = public_topic_ends(), bucket_keys(cfg)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # Whether the backlog is gone by the demo's first look depends on the machine; what it reports must be what is
    # there either way (below). Its wait up to the bound is the next test's.
    assert report["complete"] and report["behind"] == [] and report["extra_copies_outside"] == 0
    # The rule set came into force with four eyes: the shipped set was live (the bus fixture), so the engineer
    # narrowed it alone, then proposed the shipped set, a second person approved the widening, and every router
    # reported the switch on its /metrics.
    acts = [(s["act"], s["by"]) for s in report["governance"]]
    assert acts[:4] == [("narrowed", "li.wei"), ("proposed", "li.wei"), ("approved", "zhang.min"), ("applied", "li.wei")]
    assert ("switched", "router") in acts[4:] and all(a == "switched" for a, _ in acts[4:])
    assert {s["version"] for s in report["governance"][1:]} == {report["rules_version"]}
    assert "widens" in report["governance"][1]["detail"] and "approver zhang.min" in report["governance"][3]["detail"]
    assert report["leak_scan"]["leaked"] == 0
    for place in ("private_cluster", "public_cluster", "archived"):
        assert report[place] == report["expected"][place], place
    assert set(report["public_cluster"]) == {"public.market.licence_granted", "public.transport.bus_arrival",
                                            "public.govservice.citizen_feedback_stats",
                                            "public.govservice.permit_application_stats",
                                            "public.market.inspection_result", "public.market.inspection_complaints"}
    # The inspection result's three variants, 10 each: the one naming no person is exported whole, the one with a
    # complainant only as its pseudonymous view, the one with the inspector's ID number not at all.
    assert report["published"]["market.inspection_result"] == 30
    assert report["public_cluster"]["public.market.inspection_result"] == 10
    assert report["public_cluster"]["public.market.inspection_complaints"] == 10
    assert report["private_cluster"]["restricted.market.inspection_result"] == 10
    assert set(report["archived"]) == {t.removeprefix("public.") for t in report["public_cluster"]}

    # What the demo reports is what a direct read finds there, at the moment it returned.
    on_public = demo_ids_on_public_cluster(public_before, public_after)
    assert {t: len(ids) for t, ids in on_public.items()} == report["public_cluster"]
    in_bucket = demo_ids_in_bucket(cfg, keys_after - keys_before)
    assert {t: len(ids) for t, ids in in_bucket.items()} == report["archived"]
    # The same events reached both public places.
    assert Counter(i for ids in on_public.values() for i in ids) == Counter(i for ids in in_bucket.values() for i in ids)


def test_demo_names_the_public_cluster_as_behind_when_egress_is_stopped(
        bus: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    start = workers.start
    # The demo starts what is not running: keep egress down, as if it had died right after.
    monkeypatch.setattr(workers, "start", lambda cfg, names=workers.PROCESSORS, timeout=60.0:
                        start(cfg, tuple(n for n in names if n != "egress"), timeout))
    workers.stop(bus, ("egress",))
    try:
        result = runner.invoke(app, ["demo", "--per-type", "2", "--wait", "15", "--json"])
    finally:
        monkeypatch.undo()
        workers.start(bus, ("egress",))

    assert result.exit_code == UNAVAILABLE, result.output
    report = json.loads(result.stdout)
    assert not report["complete"]
    behind = {b["place"]: b for b in report["behind"]}
    assert "public cluster" in behind
    assert behind["public cluster"]["missing"] == behind["public cluster"]["expected"] > 0
    assert "egress" in report["processors_not_running"]
    assert "public cluster:" in result.stderr and "not running: egress" in result.stderr
