"""The access trail read from Vault's audit device: decrypts and data keys per identity, key and minute, counted."""
from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from hybridbus.cli.main import app
from hybridbus.ops.access import query


def _line(kind: str, path: str, role: str, time: str, error: str = "") -> str:
    entry = {"type": kind, "time": time, "auth": {"display_name": "approle", "metadata": {"role_name": role}},
             "request": {"operation": "update", "path": path}}
    if error:
        entry["error"] = error
    return json.dumps(entry)


LOG = [
    _line("request", "transit/decrypt/fields-health-restricted", "hbus-health", "2026-11-30T06:50:01.1Z"),
    _line("response", "transit/decrypt/fields-health-restricted", "hbus-health", "2026-11-30T06:50:01.2Z"),
    _line("response", "transit/decrypt/fields-health-restricted", "hbus-health", "2026-11-30T06:50:40.0Z"),
    _line("response", "transit/decrypt/fields-health-restricted", "hbus-market", "2026-11-30T06:51:02.0Z",
          "1 error occurred:\n\t* permission denied\n\n"),
    _line("response", "transit/datakey/plaintext/fields-health-restricted", "hbus-gateway", "2026-11-30T06:52:00.0Z"),
    _line("response", "sys/health", "hbus-health", "2026-11-30T06:52:00.0Z"),
    '{"torn line',
]


def test_decrypts_are_counted_per_minute_identity_key_and_outcome(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_text("\n".join(LOG), encoding="utf-8")
    rows = query(log, what="fields-health-restricted", action="decrypt")
    assert rows == [
        {"minute": "2026-11-30T06:50", "who": "health", "action": "decrypt", "what": "fields-health-restricted",
         "outcome": "allowed", "count": 2},
        {"minute": "2026-11-30T06:51", "who": "market", "action": "decrypt", "what": "fields-health-restricted",
         "outcome": "denied", "count": 1},
    ]
    assert [r["who"] for r in query(log, action="datakey")] == ["gateway"]
    assert query(log, who="health", from_ms=1_800_000_000_000 * 2) == []
    assert query(tmp_path / "absent.log") == []


def test_the_cli_reads_the_stacks_audit_log(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HBUS_STATE_DIR", str(tmp_path))
    from hybridbus.adapters.config import settings

    settings.cache_clear()
    try:
        log = tmp_path / "vault" / "audit" / "audit.log"
        log.parent.mkdir(parents=True)
        log.write_text("\n".join(LOG), encoding="utf-8")
        result = CliRunner().invoke(app, ["audit", "query", "access", "--who", "market", "--json"])
    finally:
        settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert [(r["who"], r["outcome"], r["count"]) for r in json.loads(result.output)] == [("market", "denied", 1)]
