"""The access trail answered from the chain alone: the brokers' reads and OpenBao's decrypts, data keys and KV reads
per identity, key or topic and minute, counted."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from hybridbus.cli.main import app
from hybridbus.ops.access import field_key_of, trail

ADMISSIONS = "restricted.health.hospital_admission"
KEY = "fields-health-restricted"


def _read(minute: str, who: str, topic: str, count: int, operation: str = "read") -> dict[str, object]:
    """A broker group as the writer chained it before Vault's half joined: no `source`."""
    return {"kind": "access", "seq": 0, "minute": minute, "who": who, "principal": f"User:dept-{who}", "topic": topic,
            "operation": operation, "outcome": "allowed", "count": count}


def _vault(minute: str, who: str, operation: str, what: str, count: int, outcome: str = "allowed"
           ) -> dict[str, object]:
    where = {"path": what} if operation == "kv-read" else {"key": what}
    return {"kind": "access", "seq": 0, "minute": minute, "source": "vault", "who": who,
            "principal": f"approle:hbus-{who}", **where, "operation": operation, "outcome": outcome, "count": count}


CHAIN = [_read("2026-11-30T06:50", "health", ADMISSIONS, 40), {"kind": "decision", "seq": 1},
         _read("2026-11-30T06:50", "health", ADMISSIONS, 2),  # a line written late for its minute
         _read("2026-11-30T06:50", "health", "sensitive.health.x", 7),
         _vault("2026-11-30T06:50", "health", "transit-decrypt", KEY, 2),
         _read("2026-11-30T06:51", "health", ADMISSIONS, 3, "describe"),
         _vault("2026-11-30T06:51", "market", "transit-decrypt", KEY, 1, "denied"),
         _vault("2026-11-30T06:52", "gateway", "transit-datakey", KEY, 1),
         _vault("2026-11-30T06:52", "gateway", "kv-read", "gateway/health", 1),
         _vault("2026-11-30T06:53", "health", "transit-decrypt", "fields-health-sensitive", 5)]


def test_who_read_a_topic_answers_from_the_brokers_reads_and_the_decrypts_of_its_key() -> None:
    rows = trail(CHAIN, topic=ADMISSIONS)
    assert [(r["minute"], r["source"], r["who"], r["action"], r["what"], r["outcome"], r["count"]) for r in rows] == [
        ("2026-11-30T06:50", "kafka", "health", "read", ADMISSIONS, "allowed", 42),
        ("2026-11-30T06:50", "vault", "health", "transit-decrypt", KEY, "allowed", 2),
        ("2026-11-30T06:51", "kafka", "health", "describe", ADMISSIONS, "allowed", 3),
        ("2026-11-30T06:51", "vault", "market", "transit-decrypt", KEY, "denied", 1),
        ("2026-11-30T06:52", "vault", "gateway", "transit-datakey", KEY, "allowed", 1)]  # sealed with that key
    assert [r["count"] for r in trail(CHAIN, topic=ADMISSIONS, action="read",
                                      from_ms=1_796_021_400_000, to_ms=1_796_021_460_000)] == [42]  # 06:50 only
    assert field_key_of("public.market.licence_granted") == "fields-market-public"
    assert field_key_of("_hbus.dlq") is None
    assert [r["source"] for r in trail(CHAIN, topic="_hbus.dlq")] == []  # no key seals the DLQ's fields


def test_who_decrypted_id_numbers_answers_from_the_key_alone() -> None:
    rows = trail(CHAIN, key=KEY, action="transit-decrypt")
    assert [(r["who"], r["outcome"], r["count"]) for r in rows] == [("health", "allowed", 2), ("market", "denied", 1)]
    assert [(r["who"], r["what"]) for r in trail(CHAIN, key="gateway/health")] == [("gateway", "gateway/health")]
    assert [r["source"] for r in trail(CHAIN, who="market")] == ["vault"]
    assert {r["what"] for r in trail(CHAIN, what="sensitive")} == {"sensitive.health.x", "fields-health-sensitive"}


def test_the_cli_answers_from_the_chain(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("hybridbus.cli.audit._entries", lambda source, topic: CHAIN)
    result = CliRunner().invoke(app, ["audit", "query", "access", "--key", KEY, "--who", "market", "--json"])
    assert result.exit_code == 0, result.output
    assert [(r["source"], r["who"], r["action"], r["outcome"], r["count"]) for r in json.loads(result.output)] == [
        ("vault", "market", "transit-decrypt", "denied", 1)]
