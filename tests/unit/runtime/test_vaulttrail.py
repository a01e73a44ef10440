"""OpenBao's half of the access trail without OpenBao: audit device lines parsed (responses only, nothing secret kept),
grouped per minute, read from a saved position beside the brokers' logs, and chained so nothing counts twice."""
from __future__ import annotations

import copy
import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

from hybridbus.runtime import audit
from hybridbus.runtime.accesstrail import AUTHORIZER_LOG, authorizer_logs, collect, grouped, trail_pass
from hybridbus.runtime.audit import Appender, Chain, Located
from hybridbus.runtime.vaulttrail import AUDIT_LOG, VAULT_SOURCE, parse_line, vault_audit_logs

# Lines of the local stack's OpenBao 2.x file audit device (HMAC'd values replaced): root reading a KV secret, then
# health's AppRole making and unwrapping a data key of fields-health-restricted, then market's AppRole refused it.
FIXTURE = Path(__file__).with_name("openbao-audit.sample.log")
KEY = b"unit-test signing key (not a secret)"
SAMPLE = [json.loads(raw) for raw in FIXTURE.read_text(encoding="utf-8").splitlines()]
DECRYPT = next(e for e in SAMPLE if e["type"] == "response" and e["request"]["path"].startswith("transit/decrypt/")
               and not e.get("error"))


def vault_line(time: str, path: str = "transit/decrypt/fields-health-restricted", role: str = "hbus-health",
               kind: str = "response", operation: str = "update", error: str = "", refused: bool = True) -> str:
    """A line shaped as the sample's decrypt response, with its time, path, AppRole and outcome changed (an error
    `refused` by policy, or one of the operation itself)."""
    entry: dict[str, Any] = copy.deepcopy(DECRYPT)
    entry["time"], entry["type"] = f"2026-11-30T{time}Z", kind
    entry["auth"]["metadata"]["role_name"] = role
    entry["request"]["path"], entry["request"]["operation"] = path, operation
    if error:
        entry["error"] = error
        entry["auth"]["policy_results"] = {"allowed": not refused}
    return json.dumps(entry, separators=(",", ":")) + "\n"


def test_real_audit_lines_give_the_responses_with_who_and_which_key() -> None:
    checks = [c for c in (parse_line(json.dumps(e)) for e in SAMPLE) if c is not None]
    assert [(c.who, c.principal, c.operation, c.topic, c.outcome) for c in checks] == [
        ("root", "root", "kv-read", "gateway/govservice", "allowed"),
        ("health", "approle:hbus-health", "transit-datakey", "fields-health-restricted", "allowed"),
        ("health", "approle:hbus-health", "transit-decrypt", "fields-health-restricted", "allowed"),
        ("market", "approle:hbus-market", "transit-decrypt", "fields-health-restricted", "denied"),
        ("market", "approle:hbus-market", "transit-decrypt", "fields-market-restricted", "denied")]
    assert {(c.minute, c.source, c.host) for c in checks} == {("2026-11-30T12:58", "vault", "127.0.0.1"),
                                                              ("2026-11-30T13:01", "vault", "127.0.0.1")}


def test_only_reads_of_data_and_secrets_count_and_torn_lines_do_not() -> None:
    assert parse_line(vault_line("10:01:00.1", kind="request")) is None  # its response is counted
    assert parse_line(vault_line("10:01:00.1", path="transit/encrypt/fields-health-restricted")) is None
    assert parse_line(vault_line("10:01:00.1", path="transit/sign/audit-signing")) is None
    assert parse_line(vault_line("10:01:00.1", path="secret/data/gateway/health", operation="create")) is None
    assert parse_line(vault_line("10:01:00.1", path="sys/health")) is None
    assert parse_line(vault_line("10:01:00.1")[:300]) is None
    assert parse_line("") is None and parse_line("[1, 2]") is None
    hmac_check = parse_line(vault_line("10:01:00.1", path="transit/hmac/pseudonym/sha2-256", role="hbus-router"))
    assert hmac_check is not None and (hmac_check.who, hmac_check.operation, hmac_check.topic) == (
        "router", "transit-hmac", "pseudonym")
    key = "fields-govservice-sensitive"
    wrapped = parse_line(vault_line("10:01:00.1", path=f"transit/datakey/wrapped/{key}"))
    assert wrapped is not None and (wrapped.operation, wrapped.topic) == ("transit-datakey", key)
    denied = parse_line(vault_line("10:01:00.1", error="1 error occurred:\n\t* permission denied\n\n"))
    failed = parse_line(vault_line("10:01:00.1", error="1 error occurred:\n\t* cipher: message authentication "
                                                        "failed", refused=False))  # allowed, and the key was wrong
    assert (denied and denied.outcome, failed and failed.outcome) == ("denied", "failed")


def test_a_group_keeps_no_value_only_who_what_and_how_many() -> None:
    lines = [vault_line(f"10:01:{s:02d}.5") for s in range(0, 60, 3)] + [vault_line("10:01:30.1", kind="request")]
    groups = grouped(c for c in map(parse_line, lines) if c is not None)
    assert [(g.minute, g.who, g.topic, g.operation, g.count) for g in groups] == [
        ("2026-11-30T10:01", "health", "fields-health-restricted", "transit-decrypt", 20)]
    fields = groups[0].fields()
    assert fields == {"minute": "2026-11-30T10:01", "who": "health", "principal": "approle:hbus-health",
                      "source": "vault", "key": "fields-health-restricted", "operation": "transit-decrypt",
                      "outcome": "allowed", "count": 20, "hosts": ["127.0.0.1"], "requests": ["update"]}
    kv_read = parse_line(vault_line("10:01:00.1", path="secret/data/gateway/health", operation="read"))
    kv = grouped([kv_read] if kv_read else [])
    assert kv[0].fields()["path"] == "gateway/health" and "key" not in kv[0].fields()
    assert "hmac" not in json.dumps(fields) and "ciphertext" not in json.dumps(fields)


def _sign(message: bytes) -> str:
    return "test:" + hmac.new(KEY, message, hashlib.sha256).hexdigest()


def _ok(message: bytes, signature: str) -> bool:
    return hmac.compare_digest(_sign(message), signature)


def _stack(tmp_path: Path) -> Path:
    broker = tmp_path / "kafka-private" / "logs" / AUTHORIZER_LOG
    broker.parent.mkdir(parents=True)
    broker.write_text("2026-11-30T10:01:07.123Z DEBUG Principal = User:dept-health is Allowed operation = READ from "
                      "host = 127.0.0.1 on resource = Topic:LITERAL:restricted.health.hospital_admission for request "
                      "= Fetch with resourceRefCount = 1 based on rule MatchingAcl()\n")
    log = tmp_path / AUDIT_LOG
    log.parent.mkdir(parents=True)
    log.write_text(vault_line("10:01:07.2", kind="request") + vault_line("10:01:07.3") + vault_line("10:01:40.0")
                   + vault_line("10:01:41.0", role="hbus-market", error="1 error occurred:\n\t* permission denied\n\n")
                   + vault_line("10:03:00.0"))  # a minute not over at 10:03:20
    return log


def test_the_vault_log_is_chained_beside_the_brokers_reads_and_never_twice(tmp_path: Path) -> None:
    log = _stack(tmp_path)
    sources = authorizer_logs(tmp_path) | vault_audit_logs(tmp_path)
    appender = Appender(Chain(), _sign, 1_000, lambda: 1_796_033_000_000)
    appended, gaps = trail_pass(appender, sources, 1_796_033_000_000)  # 10:03:20
    raws = appended.entries + appender.close().entries  # then a signed checkpoint closes them
    entries = [json.loads(raw) for raw in raws]
    assert gaps == [] and [(e.get("source", "kafka"), e["who"], e.get("key", e.get("topic")), e["outcome"], e["count"])
                           for e in entries if e["kind"] == audit.ACCESS] == [
        ("kafka", "health", "restricted.health.hospital_admission", "allowed", 1),
        ("vault", "health", "fields-health-restricted", "allowed", 2),
        ("vault", "market", "fields-health-restricted", "denied", 1)]
    assert entries[-1]["kind"] == audit.CHECKPOINT
    assert audit.verify([Located(str(i), raw) for i, raw in enumerate(raws)], _ok).ok
    # A writer restarted from its stored tail goes on from the saved position: 10:03 is counted once, when over.
    resumed = Appender(Chain.resume(entries), _sign, 1_000, lambda: 0)
    later = [json.loads(raw) for raw in trail_pass(resumed, sources, 1_796_033_100_000)[0].entries]  # 10:05
    assert [(e["minute"], e["who"], e["count"]) for e in later] == [("2026-11-30T10:03", "health", 1)]
    assert trail_pass(resumed, sources, 1_796_033_100_000)[0].entries == []
    # Rotated (renamed, OpenBao reopened a new file on SIGHUP): the old file's rest, then the new one; once each.
    with log.open("a") as out:
        out.write(vault_line("10:04:00.0"))
    os.rename(log, log.with_name(log.name + ".1"))
    log.write_text(vault_line("10:04:30.0", role="hbus-gateway"))
    rotated = [json.loads(raw) for raw in trail_pass(resumed, sources, 1_796_033_160_000)[0].entries]  # 10:06
    assert [(e["minute"], e["who"], e["count"]) for e in rotated] == [
        ("2026-11-30T10:04", "gateway", 1), ("2026-11-30T10:04", "health", 1)]
    assert collect(sources, resumed.chain.trail["to"], "2026-11-30T10:06").checks == []
    assert resumed.chain.trail["to"][VAULT_SOURCE][2] == log.stat().st_size
