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
    monkeypatch.setattr("hybridbus.cli.audit._entries", lambda source, topic: [])  # no chain: Vault's half only
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
    assert [(r["source"], r["who"], r["outcome"], r["count"]) for r in json.loads(result.output)] == [
        ("vault", "market", "denied", 1)]


def _read(minute: str, who: str, topic: str, count: int, operation: str = "read") -> dict[str, object]:
    return {"kind": "access", "seq": 0, "minute": minute, "who": who, "principal": f"User:dept-{who}", "topic": topic,
            "operation": operation, "outcome": "allowed", "count": count}


def test_who_read_a_topic_answers_from_the_brokers_reads_and_the_decrypts_of_its_key(tmp_path: Path) -> None:
    from hybridbus.ops.access import field_key_of, trail

    log = tmp_path / "audit.log"
    log.write_text("\n".join(LOG), encoding="utf-8")
    admissions = "restricted.health.hospital_admission"
    chain = [_read("2026-11-30T06:50", "health", admissions, 40), {"kind": "decision", "seq": 1},
             _read("2026-11-30T06:50", "health", admissions, 2),  # a line written late for its minute
             _read("2026-11-30T06:50", "health", "sensitive.health.x", 7),
             _read("2026-11-30T06:51", "health", admissions, 3, "describe")]
    rows = trail(chain, log, topic=admissions)
    assert [(r["minute"], r["source"], r["who"], r["action"], r["what"], r["count"]) for r in rows] == [
        ("2026-11-30T06:50", "kafka", "health", "read", admissions, 42),
        ("2026-11-30T06:50", "vault", "health", "decrypt", "fields-health-restricted", 2),
        ("2026-11-30T06:51", "kafka", "health", "describe", admissions, 3),
        ("2026-11-30T06:51", "vault", "market", "decrypt", "fields-health-restricted", 1),
        ("2026-11-30T06:52", "vault", "gateway", "datakey", "fields-health-restricted", 1)]  # sealed with that key
    assert [r["count"] for r in trail(chain, log, topic=admissions, action="read",
                                      from_ms=1_796_021_400_000, to_ms=1_796_021_460_000)] == [42]  # 06:50 only
    assert [r["source"] for r in trail(chain, log, who="market")] == ["vault"]
    assert field_key_of("public.market.licence_granted") == "fields-market-public"
    assert field_key_of("_hbus.dlq") is None
