"""Encrypted fields at rest: canaries published through the client and the gateway are nowhere in plain text on the
private brokers' disks (DLQ included) nor in S3; only identities Vault clears read them back."""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Producer

from hybridbus.adapters import kafka
from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.config import REPO_ROOT, Settings
from hybridbus.adapters.fieldcrypt import FieldOpener, TransitKeyService, is_sealed
from hybridbus.adapters.topology import DLQ_TOPIC, PRIVATE
from hybridbus.adapters.vault import VaultSession
from hybridbus.ops.rotation import rotate_transit
from hybridbus.ops.stack.components import vault_audit_log
from hybridbus.runtime.vaulttrail import parse_line
from producers.publisher import Publisher
from producers.subscriber import ReceivedEvent, Subscriber
from routing import headers as h
from tests.integration.kafkatools import read_topic
from tests.integration.test_gateway import department_token, gateway_url  # noqa: F401 - the gateway fixture
from tests.integration.test_publisher import CATALOG

SAMPLES = REPO_ROOT / "schemas" / "samples"
ADMISSIONS = "restricted.health.hospital_admission"


def _sample(name: str) -> dict:
    return json.loads((SAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def _canaries(tag: str) -> tuple[dict, dict, str, str]:
    """An admission (restricted canaries in its encrypted fields, a sensitive one in the name) and a citizen's
    feedback (sensitive canaries only), with the two canary stems."""
    restricted, sensitive = f"RCANARY{tag}", f"SCANARY{tag}"
    admission = _sample("health.hospital_admission.v1") | {
        "patient_id_number": f"{restricted}ID", "diagnosis_code": f"{restricted}DX", "patient_name": f"{sensitive}NAME"}
    feedback = _sample("govservice.citizen_feedback.v1") | {"text": f"{sensitive}TEXT", "contact": f"{sensitive}TEL"}
    return admission, feedback, restricted, sensitive


def _scan(roots: list[Path], needles: dict[str, bytes]) -> tuple[dict[str, list[str]], int]:
    """Which files under `roots` hold each needle (as UTF-8 bytes), and how many files were read."""
    found: dict[str, list[str]] = {name: [] for name in needles}
    files = 0
    for root in roots:
        for path in root.rglob("*"):
            if not path.is_file():
                continue
            try:
                blob = path.read_bytes()  # the page cache's view: what the broker wrote, flushed or not
            except OSError:
                continue
            files += 1
            for name, needle in needles.items():
                if needle in blob:
                    found[name].append(str(path.relative_to(root.parent)))
    return found, files


def _dlq_copy(value: bytes, dept_creds_of: str) -> str:
    """Send the client's sealed bytes with an unknown schema fingerprint, so the router keeps them in the DLQ."""
    event_id = uuid.uuid4().hex
    broken = value[:2] + bytes(b ^ 0xFF for b in value[2:10]) + value[10:]
    producer = Producer(kafka.client_config(PRIVATE, VaultSession(dept_creds_of).kafka_credentials(PRIVATE)))
    producer.produce("ingress.health.hospital_admission", broken, key=event_id.encode(),
                     headers=[(h.EVENT_ID, event_id.encode()), (h.DEPT, b"health")])
    assert producer.flush(30) == 0
    return event_id


def _wait_for(topic: str, keys: set[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = {r.key.decode() for r in read_topic(PRIVATE, topic, timeout=10) if r.key}
        if keys <= seen:
            return
        time.sleep(1)
    pytest.fail(f"{topic} did not get {keys - seen}")


def test_no_encrypted_field_canary_is_on_the_private_brokers_disks_or_in_s3(bus: Settings, gateway_url: str) -> None:  # noqa: F811
    tag = uuid.uuid4().hex[:12].upper()
    admission, feedback, restricted, sensitive = _canaries(tag)
    client_health = Publisher.for_department("health", catalog=CATALOG)
    client_gov = Publisher.for_department("govservice", catalog=CATALOG)
    sent = [client_health.publish("health.hospital_admission", admission).event_id,
            client_gov.publish("govservice.citizen_feedback", feedback).event_id]
    gateway_admission = admission | {"patient_id_number": f"{restricted}GWID", "diagnosis_code": f"{restricted}GWDX"}
    for key, payload in (("health.hospital_admission", gateway_admission), ("govservice.citizen_feedback", feedback)):
        response = httpx.post(f"{gateway_url}/v1/events/{key}", json={"payload": payload}, timeout=30,
                              headers={"Authorization": f"Bearer {department_token(key.split('.')[0])}"})
        assert response.status_code == 202, response.text
        sent.append(response.json()["event_id"])
    dlq_id = _dlq_copy(client_health.prepare("health.hospital_admission", admission).value, "health")

    # The router has copied each onto its graded topic, and the bad copy into the DLQ: every place a byte rests.
    _wait_for(ADMISSIONS, {sent[0], sent[2]})
    _wait_for("sensitive.govservice.citizen_feedback", {sent[1], sent[3]})
    _wait_for(DLQ_TOPIC, {dlq_id})

    roots = sorted(p / "data" for p in bus.state_dir.glob(f"kafka-{PRIVATE}*") if (p / "data").is_dir())
    roots.append(bus.state_dir / "s3")
    assert len(roots) >= 2
    found, files = _scan(roots, {"restricted": restricted.encode(), "sensitive": sensitive.encode(),
                                 "dlq record": dlq_id.encode()})
    assert files > 0
    assert found["restricted"] == [], f"restricted canary in plain text in {found['restricted']}"
    assert found["sensitive"], "the scan found no sensitive canary: it did not read the segments it should"
    assert any("_hbus.dlq-" in where for where in found["dlq record"]), "the DLQ's segments were not scanned"
    assert any(f"{ADMISSIONS}-" in where for where in found["sensitive"])


def _read_as(who: str, event_ids: set[str], timeout: float = 60) -> dict[str, ReceivedEvent]:
    """The admissions `event_ids` as health's subscriber reads them, data keys unwrapped by Vault identity `who`."""
    creds = VaultSession("health").kafka_credentials(PRIVATE)
    found: dict[str, ReceivedEvent] = {}

    def keep(event: ReceivedEvent) -> None:
        if event.event_id in event_ids:
            found[event.event_id] = event  # type: ignore[index]

    opener = FieldOpener(TransitKeyService(VaultSession(who)))
    with Subscriber.with_credentials("health", creds, name=f"it-{uuid.uuid4().hex[:8]}", topics=[ADMISSIONS],
                                     catalog=CATALOG, opener=opener) as subscriber:
        deadline = time.monotonic() + timeout
        while set(found) != event_ids and time.monotonic() < deadline:
            subscriber.run(keep, timeout=2)
    assert set(found) == event_ids, f"not read: {event_ids - set(found)}"
    return found


def test_a_cleared_subscriber_reads_restricted_fields_and_another_identity_sees_them_sealed(bus: Settings) -> None:
    admission, _, _, _ = _canaries(uuid.uuid4().hex[:12].upper())
    event_id = Publisher.for_department("health", catalog=CATALOG).publish("health.hospital_admission", admission).event_id
    # Health's own Kafka identity reads its restricted topic; only the Vault identity unwrapping the data keys varies.
    cleared = _read_as("health", {event_id})[event_id]
    other = _read_as("market", {event_id})[event_id]
    assert dict(cleared.payload) == admission and cleared.sealed == ()
    assert [(s.field, s.reason) for s in other.sealed] == [("patient_id_number", "not-cleared"),
                                                           ("diagnosis_code", "not-cleared")]
    assert other.decrypt_errors == ()
    assert is_sealed(other.payload["patient_id_number"]) and other.payload["patient_name"] == admission["patient_name"]
    # Both asks are in OpenBao's audit log as the access trail reads it (chained by the audit writer once the minute
    # is over: tests/integration/test_access_trail.py): who, which key, allowed or not.
    lines = vault_audit_log(bus).read_text(encoding="utf-8", errors="replace").splitlines()
    trail = {(c.who, c.outcome) for c in map(parse_line, lines)
             if c is not None and c.topic == "fields-health-restricted" and c.operation == "transit-decrypt"}
    assert {("health", "allowed"), ("market", "denied")} <= trail


def test_records_sealed_before_a_transit_key_rotation_stay_readable(bus: Settings) -> None:
    admission, _, _, _ = _canaries(uuid.uuid4().hex[:12].upper())
    before = Publisher.for_department("health", catalog=CATALOG).publish("health.hospital_admission", admission).event_id
    version = rotate_transit("fields-health-restricted")
    publisher = Publisher.for_department("health", catalog=CATALOG)  # a new client: its first data key is of the new version
    envelope = publisher.prepare("health.hospital_admission", admission)
    after = publisher.send(envelope).event_id
    _, payload = AvroCodec.for_catalog(CATALOG).decode(envelope.value)
    assert f":vault:v{version}:" in payload["patient_id_number"] and version >= 2
    read = _read_as("health", {before, after})
    assert all(dict(event.payload) == admission and event.sealed == () for event in read.values())
