"""Faults on the real stack: processors killed with SIGKILL mid-stream, the public cluster, S3 and Vault stopped
and restarted. Nothing is lost, nothing is duplicated outside, and everything resumes by itself."""
from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections import Counter

from botocore.exceptions import BotoCoreError, ClientError
from fastavro import reader

from hybridbus.config import Settings
from hybridbus.model import load_catalog
from hybridbus.stack import manager, workers
from hybridbus.stack.bootstrap import s3_admin_client
from hybridbus.topology import PRIVATE, PUBLIC
from producers.publisher import Publisher
from routing import headers as H
from tests.integration.kafkatools import end_offsets, read_after

TOPIC = "public.market.licence_granted"


def publish_burst(count: int, publisher: Publisher | None = None) -> list[str]:
    catalog = load_catalog()
    publisher = publisher or Publisher.for_department("market", catalog=catalog)
    run = uuid.uuid4().hex[:8]
    ids = []
    for i in range(count):
        event_id = f"{run}-{i:06d}"
        publisher.publish_async("market.licence_granted", {
            "credit_code": f"91310000{i:010d}", "company_name": f"测试企业{run}-{i}", "licence_type": "有限责任公司",
            "district": "浦东新区", "business_scope": "软件开发", "granted_on": "2026-11-25"}, event_id=event_id)
        ids.append(event_id)
    assert publisher.flush(60) == 0
    return ids


def copies(cluster: str, since: dict[int, int], ids: list[str], timeout: float = 90.0) -> Counter[str]:
    wanted = {i.encode() for i in ids}
    found = read_after(cluster, TOPIC, since, lambda r: r.headers.get(H.EVENT_ID) in wanted,
                       min_records=len(ids), timeout=timeout)
    return Counter(r.headers[H.EVENT_ID].decode() for r in found)


def archived_copies(cfg: Settings, ids: list[str], timeout: float = 60.0) -> Counter[str]:
    s3 = s3_admin_client(cfg)
    wanted = set(ids)
    deadline = time.monotonic() + timeout
    counts: Counter[str] = Counter()
    while time.monotonic() < deadline:
        counts = Counter()
        try:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=cfg.open_data_bucket, Prefix="market/licence_granted/"):
                for obj in page.get("Contents", []):
                    if not obj["Key"].endswith(".avro"):
                        continue
                    body = s3.get_object(Bucket=cfg.open_data_bucket, Key=obj["Key"])["Body"].read()
                    counts.update(i for i in json.loads(reader(io.BytesIO(body)).metadata.get("hbus.event_ids", "[]"))
                                  if i in wanted)
        except (ClientError, BotoCoreError):
            time.sleep(2)  # a server that has just restarted may answer 500 for a moment: look again
            continue
        if set(counts) >= wanted:
            break
        time.sleep(2)
    return counts


def assert_exactly_once(counts: Counter[str], ids: list[str], where: str) -> None:
    missing = [i for i in ids if counts[i] == 0]
    doubled = [i for i in ids if counts[i] > 1]
    assert not missing, f"{len(missing)} events missing on {where}, e.g. {missing[:3]}"
    assert not doubled, f"{len(doubled)} events duplicated on {where}, e.g. {doubled[:3]}"


def _kill_during_burst(cfg: Settings, name: str, count: int = 4000) -> list[str]:
    ids: list[str] = []
    thread = threading.Thread(target=lambda: ids.extend(publish_burst(count)))
    thread.start()
    time.sleep(0.4)
    assert workers.process(cfg, name).kill(), f"{name} was not running"
    time.sleep(1.0)
    workers.start(cfg, (name,))
    thread.join(120)
    return ids


def test_router_killed_mid_stream_loses_nothing(bus: Settings) -> None:
    private_since, public_since = end_offsets(PRIVATE, TOPIC), end_offsets(PUBLIC, TOPIC)
    ids = _kill_during_burst(bus, "router")
    private = copies(PRIVATE, private_since, ids)
    assert all(private[i] >= 1 for i in ids), "the router lost events"  # replays may repeat privately
    assert_exactly_once(copies(PUBLIC, public_since, ids), ids, "the public cluster")


def test_egress_killed_mid_stream_leaves_no_gap_and_no_duplicate(bus: Settings) -> None:
    public_since = end_offsets(PUBLIC, TOPIC)
    ids = _kill_during_burst(bus, "egress")
    assert_exactly_once(copies(PUBLIC, public_since, ids), ids, "the public cluster")


def test_archiver_killed_mid_stream_leaves_no_gap_and_no_duplicate(bus: Settings) -> None:
    ids = _kill_during_burst(bus, "archiver")
    assert_exactly_once(archived_copies(bus, ids), ids, "the open-data bucket")


def test_public_cluster_stopped_and_restarted(bus: Settings) -> None:
    public_since = end_offsets(PUBLIC, TOPIC)
    public = manager.component(bus, "kafka-public")
    assert public.process.stop()
    try:
        ids = publish_burst(500)
        time.sleep(5)  # egress waits; the private side keeps everything meanwhile
        assert workers.process(bus, "egress").running()
    finally:
        manager.up(bus)
    assert_exactly_once(copies(PUBLIC, public_since, ids), ids, "the public cluster")


def test_s3_stopped_and_restarted(bus: Settings) -> None:
    s3 = manager.component(bus, "s3")
    assert s3.process.stop()
    try:
        ids = publish_burst(500)
        time.sleep(5)
        assert workers.process(bus, "archiver").running()
    finally:
        manager.up(bus)
    assert_exactly_once(archived_copies(bus, ids, timeout=90), ids, "the open-data bucket")


def test_vault_stopped_and_restarted(bus: Settings) -> None:
    public_since = end_offsets(PUBLIC, TOPIC)
    publisher = Publisher.for_department("market", catalog=load_catalog())  # holds its login, as a running system does
    vault = manager.component(bus, "vault")
    assert vault.process.stop()
    try:
        ids = publish_burst(300, publisher)
        # Processors keep working with the credentials they hold while Vault is away.
        assert_exactly_once(copies(PUBLIC, public_since, ids, timeout=60), ids, "the public cluster")
    finally:
        manager.up(bus)
    assert all(s.running for s in workers.status(bus))
