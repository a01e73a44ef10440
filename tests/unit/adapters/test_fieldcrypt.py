"""Envelope encryption of fields: what a sealed field looks like, how long a data key is used, and how each kind of
bad ciphertext is told apart from a subscriber that simply may not read it."""
from __future__ import annotations

import base64

import pytest

from hybridbus.adapters.exceptions import FieldDecryptError, KeyServiceUnavailable
from hybridbus.adapters.fieldcrypt import (
    ENVELOPE_PREFIX,
    FieldOpener,
    FieldSealer,
    LocalKeyService,
    SealedField,
    TransitKeyService,
    associated_data,
    field_key_name,
    open_payload,
    parse_envelope,
    seal_payload,
)
from hybridbus.adapters.loaders import load_catalog
from hybridbus.adapters.vault import VaultUnavailable

CATALOG = load_catalog()
ADMISSION = CATALOG.get("health.hospital_admission")
PLAIN = {"admission_id": "ZY-1", "patient_id_number": "110101199003078888", "patient_name": "张三",
         "diagnosis_code": "J18.9", "hospital": "市一医院", "ward": "呼吸科", "admitted_at": 1}
AAD = associated_data("health.hospital_admission", "patient_id_number", "fields-health-restricted")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_sealed_field_names_its_transit_key_and_wrapped_key_and_hides_the_value() -> None:
    sealed = seal_payload(ADMISSION, PLAIN, FieldSealer(LocalKeyService()))
    envelope = sealed["patient_id_number"]
    assert envelope.startswith(f"{ENVELOPE_PREFIX}fields-health-restricted:vault:v1:")
    assert PLAIN["patient_id_number"] not in envelope
    key_name, wrapped, _ = parse_envelope(envelope)
    assert (key_name, wrapped.split(":")[:2]) == (field_key_name("health", "restricted"), ["vault", "v1"])
    assert {k: v for k, v in sealed.items() if k not in ("patient_id_number", "diagnosis_code")} == {
        k: v for k, v in PLAIN.items() if k not in ("patient_id_number", "diagnosis_code")}


def test_a_data_key_is_renewed_after_its_use_count_and_its_age() -> None:
    keys, clock = LocalKeyService(), Clock()
    sealer = FieldSealer(keys, max_uses=3, max_age=60, clock=clock)
    wrapped = [parse_envelope(sealer.seal("k", b"a", b"x"))[1] for _ in range(4)]
    assert len(set(wrapped[:3])) == 1 and wrapped[3] != wrapped[0]
    assert sealer.keys_fetched == 2
    clock.now = 61
    sealer.seal("k", b"a", b"x")
    assert sealer.keys_fetched == 3
    assert "plaintext" not in repr(sealer) and "plaintext=" not in repr(keys.new_data_key("k"))


@pytest.mark.parametrize("damage, kind", [
    (lambda e: e[:-6] + ("AAAAAA" if not e.endswith("AAAAAA") else "BBBBBB"), "tampered"),
    (lambda e: e.replace(":vault:v1:", ":vault:v7:"), "unknown-key-version"),
    (lambda e: e.replace(ENVELOPE_PREFIX, "hbus:enc:v9:"), "malformed"),
    (lambda e: e.rsplit(":", 1)[0] + ":not base64!", "malformed"),
])
def test_a_damaged_envelope_is_a_typed_error(damage, kind: str) -> None:  # type: ignore[no-untyped-def]
    keys = LocalKeyService()
    envelope = FieldSealer(keys).seal("fields-health-restricted", AAD, b"110101199003078888")
    with pytest.raises(FieldDecryptError) as caught:
        FieldOpener(keys).open(damage(envelope), "health.hospital_admission", "patient_id_number")
    assert caught.value.kind == kind
    assert "110101199003078888" not in str(caught.value)


def test_a_value_moved_to_another_field_does_not_open() -> None:
    keys = LocalKeyService()
    envelope = FieldSealer(keys).seal("fields-health-restricted", AAD, b"110101199003078888")
    with pytest.raises(FieldDecryptError, match="does not authenticate") as caught:
        FieldOpener(keys).open(envelope, "health.hospital_admission", "diagnosis_code")
    assert caught.value.kind == "tampered"


def test_open_payload_decrypts_for_the_cleared_and_marks_fields_for_the_others() -> None:
    master = b"m" * 32
    sealed = seal_payload(ADMISSION, PLAIN, FieldSealer(LocalKeyService(master)))
    cleared = LocalKeyService(master)
    assert open_payload(ADMISSION, sealed, FieldOpener(cleared)) == (PLAIN, ())
    others = LocalKeyService(master, cleared=False)
    opener = FieldOpener(others)
    payload, marks = open_payload(ADMISSION, sealed, opener)
    assert payload == sealed
    assert [(m.field, m.reason) for m in marks] == [("patient_id_number", "not-cleared"), ("diagnosis_code", "not-cleared")]
    open_payload(ADMISSION, sealed, opener)
    assert others.calls == 1  # the refusal is remembered: Vault is not asked once per record
    assert all(isinstance(m, SealedField) for m in marks)


def test_a_tampered_field_is_marked_with_its_error_and_the_rest_still_opens() -> None:
    keys = LocalKeyService()
    sealed = dict(seal_payload(ADMISSION, PLAIN, FieldSealer(keys)))
    raw = base64.b64decode(sealed["diagnosis_code"].rsplit(":", 1)[1])
    flipped = bytes([raw[-1] ^ 1])
    sealed["diagnosis_code"] = sealed["diagnosis_code"].rsplit(":", 1)[0] + ":" + base64.b64encode(raw[:-1] + flipped).decode()
    payload, marks = open_payload(ADMISSION, sealed, FieldOpener(keys))
    assert payload["patient_id_number"] == PLAIN["patient_id_number"]
    assert payload["diagnosis_code"] == sealed["diagnosis_code"]  # still the envelope, never garbage
    assert [(m.field, m.reason) for m in marks] == [("diagnosis_code", "tampered")]


class FlakySession:
    identity = "health"

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def data_key(self, key: str) -> tuple[bytes, str]:
        if self.failures:
            self.failures -= 1
            raise VaultUnavailable("vault at http://127.0.0.1:1 is unreachable")
        return b"k" * 32, "vault:v1:" + base64.b64encode(b"w" * 60).decode()


def test_transit_is_retried_within_the_timeout_then_the_seal_fails() -> None:
    waits: list[float] = []
    service = TransitKeyService(FlakySession(2), timeout=5, retry_interval=0.01, sleep=waits.append)
    assert service.new_data_key("fields-health-restricted").version == 1
    assert len(waits) == 2
    down = TransitKeyService(FlakySession(10**9), timeout=0.05, retry_interval=0.01, sleep=lambda s: None)
    with pytest.raises(KeyServiceUnavailable, match="never sent unencrypted"):
        FieldSealer(down).seal("fields-health-restricted", AAD, b"x")
