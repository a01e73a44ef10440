"""No generated secret appears in a log file of the stack or the processors, a /metrics page, a label value Prometheus
holds, or a DLQ or quarantine reason (marked `after_all`: it runs after every other test has driven traffic and faults)."""
from __future__ import annotations

import pytest
import requests

from hybridbus.adapters.config import Settings
from hybridbus.adapters.secrets import read_private
from hybridbus.adapters.topology import DLQ_TOPIC, PRIVATE, QUARANTINE_TOPIC
from hybridbus.adapters.vault import KV_MOUNT, root_client
from hybridbus.ops.stack import workers
from hybridbus.ops.stack.bootstrap import kv_get
from routing import headers as H
from tests.integration.kafkatools import read_topic

pytestmark = pytest.mark.after_all


def _generated_secrets(cfg: Settings) -> set[str]:
    values: set[str] = set()
    for path in cfg.secrets_dir.rglob("*.json"):
        data = read_private(path)
        for key, value in data.items():
            if isinstance(value, str) and key not in ("username", "access_key", "role_id") and len(value) >= 16:
                values.add(value)
    client = root_client(cfg)

    def walk(prefix: str) -> None:
        listing = client.secrets.kv.v2.list_secrets(path=prefix, mount_point=KV_MOUNT)["data"]["keys"]
        for key in listing:
            if key.endswith("/"):
                walk(prefix + key)
            else:
                for field, value in kv_get(client, prefix + key).items():
                    if field not in ("username", "access_key") and isinstance(value, str):
                        values.add(value)

    walk("")
    return values


def test_no_generated_secret_in_any_log_or_metric(bus: Settings) -> None:
    secrets = _generated_secrets(bus)
    assert len(secrets) > 10  # admin logins, unseal key, root token, every identity's Kafka and S3 secret
    logs = [p for p in bus.state_dir.rglob("*.log*") if p.is_file()]
    assert logs
    for path in logs:
        text = path.read_text(errors="replace")
        leaked = [s[:4] + "…" for s in secrets if s in text]
        assert not leaked, f"{path} contains generated secrets {leaked}"
    for url in _metrics_pages(bus):
        text = requests.get(url, timeout=5).text
        assert not [s for s in secrets if s in text], f"{url} shows a generated secret"


def test_no_generated_secret_in_prometheus_labels_or_dlq_reasons(bus: Settings) -> None:
    secrets = _generated_secrets(bus)
    prometheus = f"http://{bus.host}:{bus.ports.prometheus}/api/v1"
    names = requests.get(f"{prometheus}/labels", timeout=10).json()["data"]
    values = {name: requests.get(f"{prometheus}/label/{name}/values", timeout=10).json()["data"] for name in names}
    assert "reason" in values and "component" in values  # the processors' series are there to be scanned
    leaked = [name for name, found in values.items() if any(s in v for s in secrets for v in found)]
    assert not leaked, f"Prometheus label values of {leaked} contain a generated secret"

    reasons = [r.headers.get(H.DLQ_REASON, b"").decode("utf-8", "replace")
               for topic in (DLQ_TOPIC, QUARANTINE_TOPIC) for r in read_topic(PRIVATE, topic, timeout=30)]
    assert reasons and all(reasons), "every DLQ and quarantine record carries a reason"
    assert not [r for r in reasons if any(s in r for s in secrets)], "a DLQ or quarantine reason contains a secret"


def _metrics_pages(cfg: Settings) -> set[str]:
    """Every processor's /metrics page, and every page Prometheus scrapes."""
    targets = requests.get(f"http://{cfg.host}:{cfg.ports.prometheus}/api/v1/targets", timeout=10).json()
    pages = {t["scrapeUrl"] for t in targets["data"]["activeTargets"] if t["health"] == "up"}
    return pages | {workers.metrics_url(cfg, name) for name in workers.PROCESSORS}
