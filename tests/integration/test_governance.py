"""Four eyes on the real stack: rule sets that Vault Transit does not confirm are not followed by any processor,
are counted and alerted on; the emergency stop holds everything public and reopening loses nothing."""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from hybridbus.adapters import kafka
from hybridbus.adapters.config import Settings
from hybridbus.adapters.loaders import load_catalog, load_rules, load_ruleset_dir
from hybridbus.adapters.topology import AUDIT_TOPIC, PRIVATE, PUBLIC
from hybridbus.adapters.vault import RULES_APPROVER_KEY, Transit
from hybridbus.ops.governance import apply_rules, set_boundary, stack_signer
from hybridbus.ops.people import NotAllowed, sample_login
from hybridbus.ops.stack import workers
from hybridbus.ops.stack.bootstrap import s3_admin_client
from hybridbus.ops.status import PrometheusAPI, collect
from hybridbus.runtime.audit import rule_changes
from hybridbus.runtime.emergency import signed_state, write_state
from hybridbus.runtime.rulesigning import Signature, sign_apply
from hybridbus.runtime.rulestore import LIVE, AppliedRuleSet, write
from routing import governance as G
from routing import headers as H
from routing.exceptions import HybridbusError
from producers.publisher import Publisher
from tests.integration.kafkatools import TOPIC, assert_exactly_once, copies, end_offsets, publish_burst, read_after
from tests.integration.test_audit import chained_since
from tests.integration.test_routing import _rules_copy, by_event_id, publish_one

FOLLOWERS = ("router", "egress", "archiver")


def refusals(cfg: Settings, name: str) -> dict[str, float]:
    text = requests.get(workers.metrics_url(cfg, name), timeout=5).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("hbus_rules_refused_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            found[reason] = float(line.rsplit(" ", 1)[1])
    return found


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return condition()


def firing(cfg: Settings, alert: str) -> list[dict]:  # type: ignore[type-arg]
    url = f"http://{cfg.host}:{cfg.ports.prometheus}/api/v1/alerts"
    return [a for a in requests.get(url, timeout=5).json()["data"]["alerts"]
            if a["labels"].get("alertname") == alert and a["state"] == "firing"]


def routed_version(topic: str, key: str) -> tuple[bytes, bytes]:
    since = end_offsets(PRIVATE, topic)
    event_id, _, _ = publish_one(key)
    [record] = read_after(PRIVATE, topic, since, by_event_id(event_id))
    return record.headers[H.RULES_VERSION], record.headers[H.DESTINATIONS]


def test_a_set_written_with_admin_credentials_without_a_valid_signature_is_followed_by_no_processor(
        bus: Settings, tmp_path: Path) -> None:
    shipped = load_rules(bus)
    topic = "public.transport.bus_arrival"

    def archive_only(rules: Path) -> None:
        path = rules / "transport.yaml"
        path.write_text(path.read_text().replace("to: [public_cloud, archive]", "to: [archive]", 1))

    forged = load_ruleset_dir(_rules_copy(tmp_path, f"forged-{uuid.uuid4().hex[:6]}", archive_only))
    assert forged.digest != shipped.digest
    before = {name: refusals(bus, name) for name in FOLLOWERS}
    assert all(set(G.REFUSALS) <= set(counts) for counts in before.values()), before
    admin, signer = kafka.admin_credentials(PRIVATE), stack_signer(bus)
    now = int(time.time() * 1000)

    def forged_record(signatures: tuple[Signature, ...], digest: str = forged.digest, at: int = now) -> AppliedRuleSet:
        return AppliedRuleSet(LIVE, forged, "intruder", at, digest, signatures)

    wrong_key = Signature(G.PROPOSER, "intruder", signer.sign(
        G.apply_statement(LIVE, forged.digest, now + 1, "intruder"), RULES_APPROVER_KEY))
    attempts = {
        G.UNSIGNED: forged_record(()),
        G.WRONG_ROLE: forged_record((wrong_key,), at=now + 1),
        # A genuine signature, but over the shipped set's digest: the set carried is not the one signed.
        G.DIGEST_MISMATCH: forged_record((sign_apply(signer, LIVE, shipped.digest, now + 2, "intruder"),),
                                         digest=shipped.digest, at=now + 2),
    }
    try:
        for record in attempts.values():
            write(record, admin)  # straight onto _hbus.rules with the admin login, as a leaked password would
        for name in FOLLOWERS:
            assert wait_for(lambda: all(refusals(bus, name)[r] >= before[name][r] + 1 for r in attempts), 20), (
                name, refusals(bus, name))
        # The router still routes under the shipped set: same version stamped, bus arrivals still go out.
        version, destinations = routed_version(topic, "transport.bus_arrival")
        assert version == shipped.version.encode()
        assert set(destinations.decode().split(",")) == {"public_cloud", "archive"}
        assert wait_for(lambda: {a["labels"]["reason"] for a in firing(bus, "HbusRulesRefused")} >= set(attempts), 60)

        # The same set, signed through the proper path, is followed: the refusals above were the signatures'.
        apply_rules(forged, LIVE)
        assert wait_for(lambda: routed_version(topic, "transport.bus_arrival")[0] == forged.version.encode(), 20)
    finally:
        apply_rules(replace(shipped), LIVE)
    assert wait_for(lambda: routed_version(topic, "transport.bus_arrival")[0] == shipped.version.encode(), 20)


def archived_ranges(cfg: Settings) -> dict[str, tuple[int, int, int]]:
    """Every open-data object of business licences: key -> (partition, first offset, last offset)."""
    s3 = s3_admin_client(cfg)
    found: dict[str, tuple[int, int, int]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=cfg.open_data_bucket, Prefix="market/licence_granted/"):
        for obj in page.get("Contents", []):
            name = obj["Key"].rsplit("/", 1)[1]
            if name.endswith(".avro"):
                partition, first, last = name.removesuffix(".avro").split("-")
                found[obj["Key"]] = (int(partition), int(first), int(last))
    return found


def closed_gauge(cfg: Settings, name: str) -> float:
    text = requests.get(workers.metrics_url(cfg, name), timeout=5).text
    return next(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("hbus_boundary_closed{"))


class Stream:
    """Business licences published in small bursts from a thread until stopped; their ids, in order."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        publisher = Publisher.for_department("market", catalog=load_catalog())
        while not self._stop.is_set():
            self.ids += publish_burst(20, publisher)
            time.sleep(0.2)

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(60)
        return self.ids


def test_the_emergency_stop_holds_everything_public_and_reopening_resumes_without_gap_or_duplicate(bus: Settings) -> None:
    public_since, private_since = end_offsets(PUBLIC, TOPIC), end_offsets(PRIVATE, TOPIC)
    archived_before = archived_ranges(bus)
    audit_since = end_offsets(PRIVATE, AUDIT_TOPIC)[0]
    closer, opener = sample_login("wang.fang", bus), sample_login("zhao.lei", bus)
    reason = f"test: suspected leak {uuid.uuid4().hex[:6]}"
    stream = Stream()
    try:
        assert wait_for(lambda: len(stream.ids) >= 100, 30)
        set_boundary(G.CLOSED, reason, closer, bus)
        time.sleep(1.5)  # "within about a second", with the batch already on its way let through
        public_at_close, archived_at_close = end_offsets(PUBLIC, TOPIC), archived_ranges(bus)
        sent_at_close = len(stream.ids)
        assert all(closed_gauge(bus, name) == 1 for name in ("egress", "archiver"))
        assert wait_for(lambda: {a["labels"].get("component") for a in firing(bus, "HbusBoundaryClosed")}
                        >= {"egress", "archiver"}, 60)
        assert collect(PrometheusAPI(f"http://{bus.host}:{bus.ports.prometheus}")).boundary_closed == ["archiver", "egress"]
        # The private side keeps taking events while the boundary is closed (how many came while the alert fired
        # depends on how soon it fired: wait for them rather than count on the alert being slow).
        assert wait_for(lambda: len(stream.ids) > sent_at_close + 100, 30)
        # Zero new public records while closed: not one more on the public cluster, not one more object.
        assert end_offsets(PUBLIC, TOPIC) == public_at_close
        assert archived_ranges(bus) == archived_at_close
        # Reopening takes a second operator: the one who closed it is refused by the CLI's check ...
        with pytest.raises(NotAllowed):
            set_boundary(G.OPEN, "test: by the closer", closer, bus)
        # ... and by every processor, for a reopening written past it with a valid signature.
        write_state(signed_state(Transit(closer.client(bus)), G.OPEN, "test: past the check", closer.name),
                    kafka.admin_credentials(PRIVATE))
        time.sleep(1.5)
        assert all(closed_gauge(bus, name) == 1 for name in ("egress", "archiver"))
        assert end_offsets(PUBLIC, TOPIC) == public_at_close
    finally:
        set_boundary(G.OPEN, "test: ruled out", opener, bus)
        ids = stream.stop()
    assert wait_for(lambda: all(closed_gauge(bus, name) == 0 for name in ("egress", "archiver")), 10)

    # Everything sent before, during and after the closure is on the public cluster exactly once ...
    assert_exactly_once(copies(PUBLIC, public_since, ids), ids, "the public cluster")
    # ... and in the open-data bucket: the new objects cover the private offsets without overlap or hole.
    private_end = end_offsets(PRIVATE, TOPIC)

    def covered() -> dict[int, list[tuple[int, int]]]:
        spans: dict[int, list[tuple[int, int]]] = {}
        for key, (partition, first, last) in archived_ranges(bus).items():
            if key not in archived_before:
                spans.setdefault(partition, []).append((first, last))
        return {p: sorted(s) for p, s in spans.items()}

    def complete() -> bool:
        spans = covered()
        return all(spans.get(p) and spans[p][-1][1] >= private_end[p] - 1
                   for p in private_end if private_end[p] > private_since[p])
    assert wait_for(complete, 60), covered()
    for partition, spans in covered().items():
        assert spans[0][0] <= private_since[partition], (partition, spans)
        for (_, last), (first, _) in zip(spans, spans[1:]):
            assert first == last + 1, (partition, spans)  # no overlap (a duplicate), no hole (a gap)

    # Both acts are on the audit chain, with who did them.
    def acts() -> list[tuple[str, str]]:
        return [(e["verdict"], e["actor"]) for e in rule_changes(chained_since(audit_since))
                if e["component"] == "boundary"]
    assert wait_for(lambda: acts() == [("boundary_closed", "wang.fang"), ("boundary_open", "zhao.lei")], 30), acts()


def test_a_widening_needs_a_second_person_and_a_narrowing_does_not(bus: Settings, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hybridbus.cli.rules import app as rules_cli
    from hybridbus.ops.governance import apply_set, approve
    from hybridbus.ops.people import TOKEN_ENV
    from hybridbus.runtime.rulestore import publish

    shipped, catalog = load_rules(bus), load_catalog(bus)
    topic = "public.transport.bus_arrival"
    engineer, approver = sample_login("li.wei", bus), sample_login("zhang.min", bus)

    def archive_only(rules: Path) -> None:
        path = rules / "transport.yaml"
        path.write_text(path.read_text().replace("to: [public_cloud, archive]", "to: [archive]", 1))

    narrower = load_ruleset_dir(_rules_copy(tmp_path / "n", f"narrow-{uuid.uuid4().hex[:6]}", archive_only))
    wider = load_ruleset_dir(_rules_copy(tmp_path / "w", f"wide-{uuid.uuid4().hex[:6]}"))
    try:
        # A narrowing: its proposer alone may apply it, and the processors follow it.
        apply_set(narrower, LIVE, engineer, catalog)
        assert wait_for(lambda: routed_version(topic, "transport.bus_arrival")[0] == narrower.version.encode(), 20)

        # A widening by its proposer alone: refused by the tool ...
        with pytest.raises(NotAllowed, match="second person"):
            apply_set(wider, LIVE, engineer, catalog)
        # ... and, written past the tool with the engineer's valid signature, by every processor.
        before = {name: refusals(bus, name)[G.UNAPPROVED_WIDENING] for name in FOLLOWERS}
        publish(wider, LIVE, kafka.admin_credentials(PRIVATE), Transit(engineer.client(bus)), engineer.name)
        for name in FOLLOWERS:
            assert wait_for(lambda: refusals(bus, name)[G.UNAPPROVED_WIDENING] > before[name], 20), name
        assert routed_version(topic, "transport.bus_arrival")[0] == narrower.version.encode()
        # The proposer cannot approve: not an approver by duty, and Vault will not sign with the approver key.
        with pytest.raises(NotAllowed):
            approve(wider.digest, engineer, bus)
        with pytest.raises(HybridbusError):
            Transit(engineer.client(bus)).sign(G.approval_statement(wider.digest, engineer.name), RULES_APPROVER_KEY)

        # Propose, approve by a second person, apply: followed.
        rules_dir = str(tmp_path / "w" / "rules")
        as_engineer, as_approver = {TOKEN_ENV: engineer.token}, {TOKEN_ENV: approver.token}
        result = CliRunner().invoke(rules_cli, ["propose", rules_dir, "--json"], env=as_engineer)
        assert result.exit_code == 0, result.output
        proposed = json.loads(result.stdout)
        assert proposed["widens"] and proposed["proposer"] == "li.wei"
        result = CliRunner().invoke(rules_cli, ["apply", proposed["digest"][:12]], env=as_engineer)
        assert result.exit_code == 1 and "second person" in result.output  # not approved yet
        result = CliRunner().invoke(rules_cli, ["approve", proposed["digest"][:12], "--yes"], env=as_approver)
        assert result.exit_code == 0 and "public_cloud:public.transport.bus_arrival" in result.output, result.output
        result = CliRunner().invoke(rules_cli, ["apply", proposed["digest"][:12]], env=as_engineer)
        assert result.exit_code == 0, result.output
        assert wait_for(lambda: routed_version(topic, "transport.bus_arrival")[0] == wider.version.encode(), 20)
    finally:
        apply_rules(shipped, LIVE)
