"""Processors follow `_hbus.catalog` on the real stack: a new event type and a new version go live with no restart,
and a record of a version published before its catalog is held back, then routed — never put in the DLQ."""
from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import requests

from hybridbus.adapters import kafka
from hybridbus.adapters.config import REPO_ROOT, Settings
from hybridbus.adapters.loaders import derived_views, load_catalog_dir, load_rules, load_ruleset_dir
from hybridbus.adapters.topology import CATALOG_TOPIC, DLQ_TOPIC, PRIVATE, PUBLIC, build_topology
from hybridbus.ops.governance import apply_rules
from hybridbus.ops.stack import workers
from hybridbus.ops.stack.bootstrap import kafka_bootstrap, vault_init_and_unseal
from hybridbus.runtime.catalogstore import CATALOG_KEY, CatalogSnapshot, publish_snapshot
from hybridbus.runtime.rulestore import LIVE
from producers.publisher import Publisher
from routing import headers as H
from tests.catalog_change import NEW_TYPE, SCHEMAS, write_changed_schemas
from tests.integration.kafkatools import end_offsets, read_after

FOLLOWERS = ("router", "egress", "archiver")
LICENCE_TOPIC = "public.market.licence_granted"
NOTICE_TOPIC = "public.market.inspection_notice"
LICENCE = {"credit_code": "91310000MA1FL00001", "company_name": "目录测试有限公司", "licence_type": "有限责任公司",
           "district": "浦东新区", "business_scope": "软件开发", "granted_on": "2026-11-30"}


def by_event_id(event_id: str):  # type: ignore[no-untyped-def]
    return lambda record: record.headers.get(H.EVENT_ID) == event_id.encode()


def catalog_digests(cfg: Settings) -> dict[str, set[str]]:
    """The digest each follower reports in force (`hbus_catalog_info`)."""
    found: dict[str, set[str]] = {}
    for name in FOLLOWERS:
        text = requests.get(workers.metrics_url(cfg, name), timeout=5).text
        found[name] = {line.split('digest="', 1)[1].split('"', 1)[0] for line in text.splitlines()
                       if line.startswith("hbus_catalog_info{") and line.rstrip().endswith(" 1.0")}
    return found


def router_count(cfg: Settings, series: str) -> float:
    """A counter of the router's /metrics page (0 before its first count)."""
    text = requests.get(workers.metrics_url(cfg, "router"), timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(series + " "))


def held_back(cfg: Settings) -> float:
    return router_count(cfg, 'hbus_held_back_total{component="router"}')


def wait_until(condition, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)
    return bool(condition())


def wait_for_digest(cfg: Settings, digest: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(d == {digest} for d in catalog_digests(cfg).values()):
            return
        time.sleep(0.5)
    raise AssertionError(f"followers not on {digest} within {timeout:.0f}s: {catalog_digests(cfg)}")


def provision(cfg: Settings, schemas: Path) -> None:
    """The topics and ACLs of the changed catalog, through the stack's own bootstrap (what `catalog apply` does)."""
    catalog = load_catalog_dir(schemas)
    topology = build_topology(catalog, derived_views(catalog, load_rules(cfg)),
                              {PRIVATE: cfg.private_brokers, PUBLIC: cfg.public_brokers})
    client = vault_init_and_unseal(cfg)
    for cluster in (PRIVATE, PUBLIC):
        kafka_bootstrap(client, cfg, topology, cluster, kafka.admin_credentials(cluster, cfg))


def new_topic_ends(cluster: str, topic: str) -> dict[int, int]:
    """End offsets of a topic just created (its metadata may take a moment to reach every broker)."""
    ends: dict[int, int] = {}
    assert wait_until(lambda: bool(ends.update(end_offsets(cluster, topic)) or ends))
    return ends


def rules_with_notices(tmp_path: Path) -> Path:
    """The shipped rules, plus inspection notices to the public cloud and the archive, under a version of their own."""
    target = tmp_path / "rules"
    shutil.copytree(REPO_ROOT / "routing" / "rules", target)
    head = target / "ruleset.yaml"
    head.write_text(head.read_text().replace('version: "2026.11.25-1"',
                                             f'version: "test-catalog-{uuid.uuid4().hex[:6]}"'))
    with (target / "market.yaml").open("a", encoding="utf-8") as rules:
        rules.write("\n  - id: inspection-notices-open-data\n"
                    "    description: 监督检查公告 are published.\n"
                    "    match: {dept: market, event: inspection_notice}\n"
                    "    to: [public_cloud, archive]\n")
    return target


def test_a_new_type_and_version_go_live_without_restart_and_an_early_record_is_held_not_dlqd(
        bus: Settings, tmp_path: Path) -> None:
    pids = {s.name: s.pid for s in workers.status(bus, FOLLOWERS)}
    schemas = write_changed_schemas(tmp_path / "catalog")
    changed = load_catalog_dir(schemas)
    snapshot = CatalogSnapshot.from_dir(schemas, applied_by="test")
    admin = kafka.admin_credentials(PRIVATE, bus)
    provision(bus, schemas)
    dlq_since = end_offsets(PRIVATE, DLQ_TOPIC)
    licences_private, licences_public = end_offsets(PRIVATE, LICENCE_TOPIC), end_offsets(PUBLIC, LICENCE_TOPIC)
    notices_private, notices_public = new_topic_ends(PRIVATE, NOTICE_TOPIC), new_topic_ends(PUBLIC, NOTICE_TOPIC)
    # The department's client is already on the new catalog (its files); the processors are not yet.
    publisher = Publisher.for_department("market", catalog=changed)
    try:
        held = held_back(bus)
        early = publisher.publish("market.licence_granted", {**LICENCE, "registered_capital_band": "100-500万"},
                                  version=2).event_id
        # The router has seen it and holds it (the tests' bound is 10 s): not routed, not in the DLQ.
        assert wait_until(lambda: held_back(bus) > held, timeout=5)
        assert read_after(PRIVATE, DLQ_TOPIC, dlq_since, by_event_id(early), timeout=0.5) == []

        publish_snapshot(snapshot, admin)
        [routed] = read_after(PRIVATE, LICENCE_TOPIC, licences_private, by_event_id(early))  # once, in the end
        assert routed.headers[H.GRADE] == b"public"
        assert read_after(PUBLIC, LICENCE_TOPIC, licences_public, by_event_id(early))  # egress knows v2 too
        wait_for_digest(bus, snapshot.digest)

        # A record on the topic that is no catalog is refused: counted, and the catalog in force stays.
        refused = 'hbus_catalog_refused_total{component="router",reason="undecodable"}'
        before = router_count(bus, refused)
        raw = kafka.producer(PRIVATE, admin)
        raw.produce(CATALOG_TOPIC, b"not a catalog", key=CATALOG_KEY)
        assert raw.flush(20) == 0
        assert wait_until(lambda: router_count(bus, refused) > before)
        assert all(d == {snapshot.digest} for d in catalog_digests(bus).values())

        # The new type's rule needs the new catalog to validate against: applied as the engineer would, after it.
        changed_cfg = bus.model_copy(update={"schemas_dir": schemas})
        apply_rules(load_ruleset_dir(rules_with_notices(tmp_path)), LIVE, changed_cfg)
        time.sleep(3)  # processors poll the rules every second and switch between batches
        notice = publisher.publish(NEW_TYPE, {"notice_id": "JC-2026-0001", "credit_code": LICENCE["credit_code"],
                                              "district": "浦东新区", "announced_on": "2026-11-30"}).event_id
        [graded] = read_after(PRIVATE, NOTICE_TOPIC, notices_private, by_event_id(notice))
        assert graded.headers[H.GRADE] == b"public"
        # A topic created after egress started, read through its pattern subscription.
        assert read_after(PUBLIC, NOTICE_TOPIC, notices_public, by_event_id(notice), timeout=45)
        assert read_after(PRIVATE, DLQ_TOPIC, dlq_since, lambda r: r.headers.get(H.EVENT_ID) in
                          {early.encode(), notice.encode()}, timeout=1) == []
        assert {s.name: s.pid for s in workers.status(bus, FOLLOWERS)} == pids  # no restart
    finally:
        publisher.flush(10)
        apply_rules(load_rules(bus), LIVE, bus)
        # A tombstone: the schema files are in force again, so a later change of the files is not hidden by this one.
        tombstone = kafka.producer(PRIVATE, admin)
        tombstone.produce(CATALOG_TOPIC, None, key=CATALOG_KEY)
        assert tombstone.flush(20) == 0
    wait_for_digest(bus, CatalogSnapshot.from_dir(SCHEMAS).digest)
