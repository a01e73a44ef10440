"""The demo run behind `hbus demo`: rules applied, processors started, a burst of every department's events,
then where each went, what the public side holds, and the leak scan.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Any

from hybridbus.adapters import kafka
from hybridbus.adapters.config import REPO_ROOT, Settings
from hybridbus.adapters.loaders import load_catalog, load_rules
from hybridbus.adapters.topology import PRIVATE, PUBLIC
from hybridbus.ops.leakscan import ScanReport, scan_bucket, scan_public_cluster
from hybridbus.ops.samples import sample_events
from hybridbus.ops.stack import workers
from hybridbus.ops.stack.bootstrap import s3_admin_client
from hybridbus.runtime.rulestore import LIVE, RuleFeed, publish
from producers.publisher import Publisher


def ensure_live_rules(cfg: Settings) -> str:
    """Apply the shipped rule set as live unless it is already the one in force; returns its version."""
    ruleset = load_rules(cfg)
    creds = kafka.admin_credentials(PRIVATE, cfg)
    feed = RuleFeed(creds)
    try:
        live = feed.load().get(LIVE)
    finally:
        feed.close()
    if live is None or live.ruleset is None or live.ruleset.digest != ruleset.digest:
        publish(ruleset, LIVE, creds, applied_by="hbus demo")
    return ruleset.version


def topic_ends(cluster: str, cfg: Settings) -> dict[str, int]:
    """Total high watermark of every topic of `cluster` (records ever written, as offsets count them)."""
    from confluent_kafka import TopicPartition

    consumer = kafka.consumer(cluster, kafka.admin_credentials(cluster, cfg), group="hbus-demo-counter")
    try:
        ends: dict[str, int] = {}
        for name, meta in consumer.list_topics(timeout=10).topics.items():
            if name.startswith("__"):
                continue
            ends[name] = sum(consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1] for p in meta.partitions)
        return ends
    finally:
        consumer.close()


def archived_records(cfg: Settings) -> Counter[str]:
    """Records per `<dept>.<event>` in the open-data bucket, from the daily manifests."""
    import json

    s3 = s3_admin_client(cfg)
    counts: Counter[str] = Counter()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=cfg.open_data_bucket):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith("_manifest.json"):
                manifest = json.loads(s3.get_object(Bucket=cfg.open_data_bucket, Key=obj["Key"])["Body"].read())
                counts[manifest["event_type"]] += manifest.get("records", 0)
    return counts


def run_demo(cfg: Settings, per_type: int, wait: float) -> tuple[dict[str, Any], ScanReport]:
    """Apply the shipped rules, start the processors, publish a burst of samples and report where they went."""
    catalog = load_catalog(cfg)
    version = ensure_live_rules(cfg)
    workers.start(cfg)
    before = {PRIVATE: topic_ends(PRIVATE, cfg), PUBLIC: topic_ends(PUBLIC, cfg)}
    archived_before = archived_records(cfg)

    published: Counter[str] = Counter()
    publishers: dict[str, Publisher] = {}
    started = time.monotonic()
    for sample in sample_events(catalog, REPO_ROOT / "schemas" / "samples", per_type):
        dept = sample.event_type.dept
        if dept not in publishers:
            publishers[dept] = Publisher.for_department(dept, catalog=catalog)
        publishers[dept].publish_async(sample.event_type.key, sample.payload, version=sample.event_type.version)
        published[sample.event_type.key] += 1
    for publisher in publishers.values():
        publisher.flush(30)
    publish_s = time.monotonic() - started

    # Wait until the public side stops growing (or `wait` seconds pass).
    deadline, last, stable_since = time.monotonic() + wait, None, time.monotonic()
    while time.monotonic() < deadline:
        now = (topic_ends(PUBLIC, cfg), archived_records(cfg))
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since > 4 and sum(now[1].values()) > sum(archived_before.values()):
            break
        time.sleep(1)
    after = {PRIVATE: topic_ends(PRIVATE, cfg), PUBLIC: topic_ends(PUBLIC, cfg)}
    archived = archived_records(cfg) - archived_before

    moved = {c: {t: after[c][t] - before[c].get(t, 0) for t in after[c] if after[c][t] - before[c].get(t, 0) > 0}
             for c in (PRIVATE, PUBLIC)}
    report = ScanReport()
    scan_public_cluster(kafka.admin_credentials(PUBLIC, cfg), report)
    scan_bucket(s3_admin_client(cfg), cfg.open_data_bucket, report)

    result = {
        "rules_version": version,
        "published": dict(published),
        "publish_seconds": round(publish_s, 2),
        "private_cluster": {t: n for t, n in sorted(moved[PRIVATE].items()) if not t.startswith("ingress.")},
        "public_cluster": dict(sorted(moved[PUBLIC].items())),
        "archived": dict(sorted(archived.items())),
        "leak_scan": report.as_dict(),
    }
    return result, report
