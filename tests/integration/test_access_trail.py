"""Reads of graded topics on the access trail, on the real stack: a department's subscriber reads its restricted topic
and the audit chain then names that identity, counted within the minute, hashed and signed like a decision; reads of
a public topic leave no entry; `hbus audit query access --topic` answers from the chain and from Vault's audit device.
"""
from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone

from typer.testing import CliRunner

from hybridbus.adapters import kafka
from hybridbus.adapters.config import REPO_ROOT, Settings
from hybridbus.adapters.topology import AUDIT_TOPIC, PRIVATE
from hybridbus.cli.audit import app as audit_cli
from hybridbus.ops import access
from hybridbus.ops.stack.components import vault_audit_log
from hybridbus.runtime import audit
from hybridbus.runtime.auditstore import read_chain
from producers.publisher import Publisher
from producers.subscriber import ReceivedEvent, Subscriber
from tests.integration.kafkatools import end_offsets
from tests.integration.test_publisher import CATALOG

SAMPLES = REPO_ROOT / "schemas" / "samples"
ADMISSIONS = "restricted.health.hospital_admission"
LICENCES = "public.market.licence_granted"
# A minute is chained once it is over (and 5 s more), by a pass every 10 s, then signed within a minute.
CHAINED_WITHIN = 150.0


def _sample(name: str) -> dict:  # type: ignore[type-arg]
    return json.loads((SAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def _read(dept: str, topic: str, event_id: str, timeout: float = 60) -> None:
    """Read `topic` as `dept`'s subscriber until `event_id` came by."""
    seen: set[str] = set()

    def keep(event: ReceivedEvent) -> None:
        seen.add(event.event_id or "")

    # Its own Kafka login and its own Vault identity, which unwraps the data keys of the encrypted fields.
    with Subscriber.for_department(dept, name=f"it-{uuid.uuid4().hex[:8]}", topics=[topic],
                                   catalog=CATALOG) as subscriber:
        deadline = time.monotonic() + timeout
        while event_id not in seen and time.monotonic() < deadline:
            subscriber.run(keep, timeout=2, skip_undecodable=True)
    assert event_id in seen, f"{dept} did not read {event_id} on {topic}"


def _chained_since(offset: int) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(raw) for _, raw in read_chain(kafka.admin_credentials(PRIVATE), AUDIT_TOPIC, offset)]


def _minute_ms(at: float) -> int:
    return int(at // 60 * 60 * 1000)


def test_a_restricted_topic_read_is_on_the_chain_with_who_and_a_count(bus: Settings) -> None:
    chain_from = end_offsets(PRIVATE, AUDIT_TOPIC)[0]
    began = time.time()
    admission = Publisher.for_department("health", catalog=CATALOG).publish(
        "health.hospital_admission", _sample("health.hospital_admission.v1"))
    licence = Publisher.for_department("market", catalog=CATALOG).publish(
        "market.licence_granted", _sample("market.licence_granted.v1"))
    _read("health", ADMISSIONS, admission.event_id)
    _read("market", LICENCES, licence.event_id)
    read_until = time.time()

    deadline, entries, checkpointed = time.monotonic() + CHAINED_WITHIN, [], False
    while time.monotonic() < deadline:
        entries = _chained_since(chain_from)
        reads = [e for e in entries if e["kind"] == audit.ACCESS and e["who"] == "health" and e["topic"] == ADMISSIONS]
        if reads:
            last_read = entries.index(reads[-1])
            checkpointed = any(e["kind"] == audit.CHECKPOINT for e in entries[last_read:])
            if checkpointed:
                break
        time.sleep(2)
    reads = [e for e in entries if e["kind"] == audit.ACCESS and e["topic"] == ADMISSIONS and e["who"] == "health"]
    assert reads, "health's read of the admissions topic is not on the chain"
    assert checkpointed, "the access entries were not closed by a signed checkpoint"
    window = (_minute_ms(began), _minute_ms(read_until) + 60_000)
    ours = audit.accesses_between(reads, *window)
    assert any(e["operation"] == "read" and e["outcome"] == "allowed" and e["count"] > 0
               and e["principal"] == "User:dept-health" for e in ours)
    # Grouped: the subscriber's many fetches of a minute are one entry with their count, not an entry each.
    assert max(e["count"] for e in ours) > 1, ours
    # Reads of a public topic leave nothing on the trail; nothing secret is in an entry.
    assert not [e for e in entries if e["kind"] == audit.ACCESS and e["topic"].startswith("public.")]
    assert set().union(*(e.keys() for e in reads)) <= {
        "seq", "prev", "hash", "kind", "minute", "who", "principal", "topic", "operation", "outcome", "count",
        "hosts", "requests", "trail", "at_ms"}

    # Chained like the decisions: the walk from before these entries to the checkpoint after them verifies.
    result = CliRunner().invoke(audit_cli, ["verify", "--json", "--from", str(int(began * 1000))])
    assert result.exit_code == 0, result.output

    # The auditor's question, both halves: the ops function and the CLI.
    rows = access.trail(entries, vault_audit_log(bus), topic=ADMISSIONS, from_ms=window[0], to_ms=window[1])
    assert any(r["source"] == "kafka" and r["who"] == "health" and r["action"] == "read" and r["count"] > 0
               for r in rows), rows
    since = datetime.fromtimestamp(window[0] / 1000, tz=timezone.utc).isoformat()
    cli = CliRunner().invoke(audit_cli, ["query", "access", "--topic", ADMISSIONS, "--who", "health", "--from", since,
                                         "--json"])
    assert cli.exit_code == 0, cli.output
    answered = json.loads(cli.stdout)
    # Health's subscriber also had Vault unwrap the data keys of the admission's encrypted fields.
    assert {(r["source"], r["action"]) for r in answered} >= {("kafka", "read"), ("vault", "decrypt")}
    assert all(r["who"] == "health" for r in answered)
