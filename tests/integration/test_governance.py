"""Four eyes on the real stack: rule sets that Vault Transit does not confirm are not followed by any processor,
are counted and alerted on."""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import requests

from hybridbus.adapters import kafka
from hybridbus.adapters.config import Settings
from hybridbus.adapters.loaders import load_rules, load_ruleset_dir
from hybridbus.adapters.topology import PRIVATE
from hybridbus.adapters.vault import RULES_APPROVER_KEY
from hybridbus.ops.governance import apply_rules, stack_signer
from hybridbus.ops.stack import workers
from hybridbus.runtime.rulesigning import Signature, sign_apply
from hybridbus.runtime.rulestore import LIVE, AppliedRuleSet, write
from routing import governance as G
from routing import headers as H
from tests.integration.kafkatools import end_offsets, read_after
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
        apply_rules(forged, LIVE, "test")
        assert wait_for(lambda: routed_version(topic, "transport.bus_arrival")[0] == forged.version.encode(), 20)
    finally:
        apply_rules(replace(shipped), LIVE, "test")
    assert wait_for(lambda: routed_version(topic, "transport.bus_arrival")[0] == shipped.version.encode(), 20)
