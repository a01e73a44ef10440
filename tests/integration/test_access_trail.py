"""Reads of graded topics and decrypts of their fields on the access trail, on the real stack: a department's
subscriber reads its restricted topic and decrypts its fields, and the audit chain then names that identity, counted
within the minute, hashed and signed like a decision; an uncleared identity's refused decrypt is there as denied;
reads of a public topic leave no entry; `hbus audit query access` answers both halves from the chain alone.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest
from typer.testing import CliRunner

from hybridbus.adapters import kafka
from hybridbus.adapters.config import REPO_ROOT, Settings
from hybridbus.adapters.fieldcrypt import FieldOpener, TransitKeyService
from hybridbus.adapters.topology import AUDIT_TOPIC, PRIVATE
from hybridbus.adapters.vault import VaultSession
from hybridbus.cli.audit import app as audit_cli
from hybridbus.ops import access
from hybridbus.runtime import audit
from hybridbus.runtime.auditstore import read_chain
from producers.publisher import Publisher
from producers.subscriber import ReceivedEvent, Subscriber
from tests.integration.conftest import start_bus
from tests.integration.kafkatools import end_offsets
from tests.integration.test_publisher import CATALOG

SAMPLES = REPO_ROOT / "schemas" / "samples"
ADMISSIONS = "restricted.health.hospital_admission"
LICENCES = "public.market.licence_granted"
FIELD_KEY = "fields-health-restricted"  # seals the admission's patient_id_number and diagnosis_code
# A minute is chained once it is over (and 5 s more), by a pass every 10 s, then signed within a minute.
CHAINED_WITHIN = 150.0


def _sample(name: str) -> dict:  # type: ignore[type-arg]
    return json.loads((SAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def _read(dept: str, topic: str, event_id: str, timeout: float = 60, opener_of: str | None = None
          ) -> ReceivedEvent:
    """Read `topic` as `dept`'s subscriber until `event_id` came by; data keys unwrapped by Vault identity
    `opener_of` (by default the department's own)."""
    seen: dict[str, ReceivedEvent] = {}

    def keep(event: ReceivedEvent) -> None:
        seen[event.event_id or ""] = event

    name = f"it-{uuid.uuid4().hex[:8]}"
    if opener_of is None:  # its own Kafka login and its own Vault identity
        subscriber = Subscriber.for_department(dept, name=name, topics=[topic], catalog=CATALOG)
    else:
        creds = VaultSession(dept).kafka_credentials(PRIVATE)
        subscriber = Subscriber.with_credentials(dept, creds, name=name, topics=[topic], catalog=CATALOG,
                                                 opener=FieldOpener(TransitKeyService(VaultSession(opener_of))))
    with subscriber:
        deadline = time.monotonic() + timeout
        while event_id not in seen and time.monotonic() < deadline:
            subscriber.run(keep, timeout=2, skip_undecodable=True)
    assert event_id in seen, f"{dept} did not read {event_id} on {topic}"
    return seen[event_id]


def _chained_since(offset: int) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(raw) for _, raw in read_chain(kafka.admin_credentials(PRIVATE), AUDIT_TOPIC, offset)]


def _minute_ms(at: float) -> int:
    return int(at // 60 * 60 * 1000)


@dataclass(frozen=True)
class Reads:
    """What both tests look for on the chain: read and decrypted once, so both wait for the same minutes."""

    chain_from: int
    began: float
    read_until: float
    cleared: ReceivedEvent
    refused: ReceivedEvent


@pytest.fixture(scope="module")
def reads(stack: Settings) -> Reads:
    start_bus(stack)
    chain_from = end_offsets(PRIVATE, AUDIT_TOPIC)[0]
    began = time.time()
    admission = Publisher.for_department("health", catalog=CATALOG).publish(
        "health.hospital_admission", _sample("health.hospital_admission.v1"))
    licence = Publisher.for_department("market", catalog=CATALOG).publish(
        "market.licence_granted", _sample("market.licence_granted.v1"))
    cleared = _read("health", ADMISSIONS, admission.event_id)
    _read("market", LICENCES, licence.event_id)
    # Market's Vault identity is not cleared for health's restricted key: the field stays sealed, the ask refused.
    refused = _read("health", ADMISSIONS, admission.event_id, opener_of="market")
    return Reads(chain_from, began, time.time(), cleared, refused)


def test_a_restricted_topic_read_is_on_the_chain_with_who_and_a_count(reads: Reads) -> None:
    chain_from, began, read_until = reads.chain_from, reads.began, reads.read_until

    deadline, entries, checkpointed = time.monotonic() + CHAINED_WITHIN, [], False
    while time.monotonic() < deadline:
        entries = _chained_since(chain_from)
        reads = [e for e in entries
                 if e["kind"] == audit.ACCESS and e["who"] == "health" and e.get("topic") == ADMISSIONS]
        if reads:
            last_read = entries.index(reads[-1])
            checkpointed = any(e["kind"] == audit.CHECKPOINT for e in entries[last_read:])
            if checkpointed:
                break
        time.sleep(2)
    reads = [e for e in entries if e["kind"] == audit.ACCESS and e.get("topic") == ADMISSIONS and e["who"] == "health"]
    assert reads, "health's read of the admissions topic is not on the chain"
    assert checkpointed, "the access entries were not closed by a signed checkpoint"
    window = (_minute_ms(began), _minute_ms(read_until) + 60_000)
    ours = audit.accesses_between(reads, *window)
    assert any(e["operation"] == "read" and e["outcome"] == "allowed" and e["count"] > 0
               and e["principal"] == "User:dept-health" for e in ours)
    # Grouped: the subscriber's many fetches of a minute are one entry with their count, not an entry each.
    assert max(e["count"] for e in ours) > 1, ours
    # Reads of a public topic leave nothing on the trail; nothing secret is in an entry.
    assert not [e for e in entries if e["kind"] == audit.ACCESS and e.get("topic", "").startswith("public.")]
    assert set().union(*(e.keys() for e in reads)) <= {
        "seq", "prev", "hash", "kind", "minute", "who", "principal", "topic", "operation", "outcome", "count",
        "hosts", "requests", "trail", "at_ms"}

    # Chained like the decisions: the walk from before these entries to the checkpoint after them verifies.
    result = CliRunner().invoke(audit_cli, ["verify", "--json", "--from", str(int(began * 1000))])
    assert result.exit_code == 0, result.output

    # The auditor's question, both halves from the chain: the ops function and the CLI.
    rows = access.trail(entries, topic=ADMISSIONS, from_ms=window[0], to_ms=window[1])
    assert any(r["source"] == "kafka" and r["who"] == "health" and r["action"] == "read" and r["count"] > 0
               for r in rows), rows
    since = datetime.fromtimestamp(window[0] / 1000, tz=timezone.utc).isoformat()
    cli = CliRunner().invoke(audit_cli, ["query", "access", "--topic", ADMISSIONS, "--who", "health", "--from", since,
                                         "--json"])
    assert cli.exit_code == 0, cli.output
    answered = json.loads(cli.stdout)
    # Health's subscriber also had Vault unwrap the data keys of the admission's encrypted fields: chained too, once
    # the minute is over (the CLI reads the whole chain, so a late minute may already be there).
    assert ("kafka", "read") in {(r["source"], r["action"]) for r in answered}
    assert all(r["who"] == "health" for r in answered)


def _vault_entries(entries: list[dict], who: str, outcome: str) -> list[dict]:  # type: ignore[type-arg]
    return [e for e in entries if e["kind"] == audit.ACCESS and e.get("source") == "vault" and e["who"] == who
            and e.get("key") == FIELD_KEY and e["operation"] == "transit-decrypt" and e["outcome"] == outcome]


def test_decrypts_of_a_field_key_are_chained_with_who_and_a_count_and_refusals_as_denied(reads: Reads) -> None:
    chain_from, began, read_until = reads.chain_from, reads.began, reads.read_until
    assert reads.cleared.sealed == ()  # health's identity decrypted the restricted fields
    assert {s.reason for s in reads.refused.sealed} == {"not-cleared"}

    deadline, entries, done = time.monotonic() + CHAINED_WITHIN, [], False
    while time.monotonic() < deadline and not done:
        time.sleep(2)
        entries = _chained_since(chain_from)
        allowed, denied = _vault_entries(entries, "health", "allowed"), _vault_entries(entries, "market", "denied")
        last = max((entries.index(e) for e in allowed + denied), default=0)
        done = bool(allowed and denied) and any(e["kind"] == audit.CHECKPOINT for e in entries[last:])
    window = (_minute_ms(began), _minute_ms(read_until) + 60_000)
    allowed = audit.accesses_between(_vault_entries(entries, "health", "allowed"), *window)
    denied = audit.accesses_between(_vault_entries(entries, "market", "denied"), *window)
    assert allowed and sum(e["count"] for e in allowed) >= 1, "health's decrypt is not on the chain"
    assert denied and sum(e["count"] for e in denied) >= 1, "market's refused decrypt is not on the chain"
    assert done, "the vault entries were not closed by a signed checkpoint"
    assert {e["principal"] for e in allowed} == {"approle:hbus-health"}
    # Who, which key, what, how many: never a token, a ciphertext, a plaintext or an HMAC'd value.
    assert set().union(*(e.keys() for e in allowed + denied)) <= {
        "seq", "prev", "hash", "kind", "minute", "source", "who", "principal", "key", "operation", "outcome",
        "count", "hosts", "requests", "trail", "at_ms"}
    assert "hmac" not in json.dumps(allowed + denied)

    result = CliRunner().invoke(audit_cli, ["verify", "--json", "--from", str(int(began * 1000))])
    assert result.exit_code == 0, result.output
    # "Who decrypted ID numbers": the key's rows, from the chain alone; and the topic's question names both halves.
    since = datetime.fromtimestamp(window[0] / 1000, tz=timezone.utc).isoformat()
    cli = CliRunner().invoke(audit_cli, ["query", "access", "--key", FIELD_KEY, "--action", "transit-decrypt",
                                         "--from", since, "--json"])
    assert cli.exit_code == 0, cli.output
    answered = {(r["source"], r["who"], r["outcome"]) for r in json.loads(cli.stdout)}
    assert {("vault", "health", "allowed"), ("vault", "market", "denied")} <= answered
    topic = CliRunner().invoke(audit_cli, ["query", "access", "--topic", ADMISSIONS, "--who", "health",
                                           "--from", since, "--json"])
    assert topic.exit_code == 0, topic.output
    assert {(r["source"], r["action"]) for r in json.loads(topic.stdout)} >= {
        ("kafka", "read"), ("vault", "transit-decrypt")}
