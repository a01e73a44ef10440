"""No generated secret appears in a log file of the stack or the processors, nor in a metric (runs last)."""
from __future__ import annotations

import requests

from hybridbus.config import Settings
from hybridbus.secrets import read_private
from hybridbus.stack.bootstrap import kv_get
from hybridbus.vault import KV_MOUNT, root_client


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
    for port in (bus.ports.router_metrics, bus.ports.egress_metrics, bus.ports.archiver_metrics):
        text = requests.get(f"http://{bus.host}:{port}/metrics", timeout=5).text
        assert not [s for s in secrets if s in text]
