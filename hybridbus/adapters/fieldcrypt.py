"""Field-level envelope encryption: AES-256-GCM under data keys from Vault Transit `datakey`, carried in the field.

A sealed field is one ASCII text, `hbus:enc:v1:<transit key>:<wrapped data key>:<base64(nonce|ciphertext|tag)>`, so any
Avro reader decodes the record; only an identity that Vault lets decrypt the wrapped key under that Transit key reads it.
"""
from __future__ import annotations

import base64
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hybridbus.adapters.exceptions import FieldDecryptError, KeyServiceUnavailable, NotClearedToDecrypt
from routing.catalog import EventType, FieldSpec

log = logging.getLogger("hybridbus.adapters.fieldcrypt")

ENVELOPE_PREFIX = "hbus:enc:v1:"
_ENVELOPE_BYTES = ENVELOPE_PREFIX.encode("ascii")
_NONCE_BYTES = 12  # AES-GCM's standard nonce; random per field, safe for far more uses than a data key is kept for
DEFAULT_KEY_MAX_AGE = 300.0  # seconds a data key encrypts for before a new one is asked of Vault
DEFAULT_KEY_MAX_USES = 10_000  # fields a data key encrypts before a new one is asked of Vault
DEFAULT_VAULT_TIMEOUT = 10.0  # how long a publish waits for Vault (retrying) before it fails


def field_key_name(dept: str, grade_id: str) -> str:
    """The Transit key that wraps the data keys of one department's fields of one grade."""
    return f"fields-{dept}-{grade_id}"


def associated_data(event_type_key: str, field_name: str, key_name: str) -> bytes:
    """What the ciphertext is bound to: a sealed value moved to another field, type or key does not open."""
    return f"{ENVELOPE_PREFIX}{key_name}|{event_type_key}|{field_name}".encode()


def is_sealed(value: object) -> bool:
    if isinstance(value, str):
        return value.startswith(ENVELOPE_PREFIX)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value[: len(_ENVELOPE_BYTES)]) == _ENVELOPE_BYTES
    return False


@dataclass(frozen=True)
class DataKey:
    """A data key as Transit's `datakey/plaintext` returns it: the key itself (memory only) and its wrapped form."""

    key_name: str
    wrapped: str  # "vault:v<N>:<base64>": Transit's ciphertext of the key, naming the Transit key version
    plaintext: bytes = field(repr=False)

    @property
    def version(self) -> int:
        return key_version(self.wrapped)


def key_version(wrapped: str) -> int:
    parts = wrapped.split(":")
    if len(parts) != 3 or parts[0] != "vault" or not parts[1].startswith("v") or not parts[1][1:].isdigit():
        raise FieldDecryptError("malformed", "the wrapped data key is not a Transit ciphertext")
    return int(parts[1][1:])


class KeyService(Protocol):
    """Where data keys come from and are unwrapped: Vault Transit, or a fixed local key for benchmarks and tests."""

    def new_data_key(self, key_name: str) -> DataKey: ...

    def unwrap(self, key_name: str, wrapped: str) -> bytes: ...


# --- sealing ---------------------------------------------------------------------------------------------------


@dataclass
class _Cached:
    key: DataKey
    aead: AESGCM = field(repr=False)
    born: float
    uses: int = 0


class FieldSealer:
    """Encrypts field values; one data key per Transit key, renewed after `max_age` seconds or `max_uses` fields."""

    def __init__(self, keys: KeyService, *, max_age: float = DEFAULT_KEY_MAX_AGE, max_uses: int = DEFAULT_KEY_MAX_USES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._keys = keys
        self._max_age = max_age
        self._max_uses = max_uses
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()
        self.keys_fetched = 0

    def __repr__(self) -> str:
        return f"FieldSealer(keys={type(self._keys).__name__}, cached={len(self._cache)})"

    def seal(self, key_name: str, aad: bytes, plaintext: bytes) -> str:
        cached = self._current(key_name)
        nonce = os.urandom(_NONCE_BYTES)
        sealed = cached.aead.encrypt(nonce, plaintext, aad)
        return f"{ENVELOPE_PREFIX}{key_name}:{cached.key.wrapped}:{base64.b64encode(nonce + sealed).decode('ascii')}"

    def _current(self, key_name: str) -> _Cached:
        with self._lock:
            cached = self._cache.get(key_name)
            now = self._clock()
            if cached is None or cached.uses >= self._max_uses or now - cached.born >= self._max_age:
                self._cache.pop(key_name, None)  # an expired key is forgotten before Vault is asked, even if it fails
                key = self._keys.new_data_key(key_name)
                cached = self._cache[key_name] = _Cached(key, AESGCM(key.plaintext), now)
                self.keys_fetched += 1
            cached.uses += 1
            return cached

    def forget(self) -> None:
        """Drop every cached data key (on shutdown, or to force new ones)."""
        with self._lock:
            self._cache.clear()


def seal_payload(event_type: EventType, payload: Any, sealer: FieldSealer | None,
                 fields: tuple[FieldSpec, ...] | None = None) -> Any:
    """`payload` with every encrypted field carried and of a sealable type (str or bytes) replaced by its envelope.

    A value of another type is left for the codec to refuse by its schema; None stays None (it carries nothing).
    Without a sealer, an event that carries an encrypted field is refused: it is never sent in plain text.
    """
    specs = event_type.encrypted_fields if fields is None else fields
    if not specs or not isinstance(payload, Mapping):
        return payload
    result = None
    for spec in specs:
        value = payload.get(spec.name)
        types = spec.avro_type if isinstance(spec.avro_type, list) else [spec.avro_type]
        # Only a value of the field's own kind: text handed in as bytes (or the reverse) is left for the codec and
        # the client to name as the wrong type, rather than hidden inside a valid envelope.
        if not (isinstance(value, str) and "string" in types) and not (
                isinstance(value, (bytes, bytearray)) and "bytes" in types):
            continue
        if sealer is None:
            raise KeyServiceUnavailable(f"field {spec.name!r} must be encrypted at the source, and "
                                        "this client has no key service: nothing is sent")
        if result is None:
            result = dict(payload)
        key_name = field_key_name(event_type.dept, spec.grade.id)
        aad = associated_data(event_type.key, spec.name, key_name)
        if isinstance(value, str):
            try:
                plain = value.encode("utf-8")
            except UnicodeEncodeError:
                # Not text (a lone surrogate): left as it is for the client to refuse by field, and no Avro writer
                # can encode it either, so it is never sent.
                continue
            result[spec.name] = sealer.seal(key_name, aad, plain)
        else:
            result[spec.name] = sealer.seal(key_name, aad, bytes(value)).encode("ascii")
    return payload if result is None else result


# --- opening ---------------------------------------------------------------------------------------------------


class FieldOpener:
    """Decrypts envelopes; unwrapped data keys (and refusals) are cached, bounded in number and age."""

    def __init__(self, keys: KeyService, *, max_keys: int = 1024, max_age: float = DEFAULT_KEY_MAX_AGE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._keys = keys
        self._max_keys = max_keys
        self._max_age = max_age
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, AESGCM | FieldDecryptError]] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FieldOpener(keys={type(self._keys).__name__}, cached={len(self._cache)})"

    def open(self, envelope: str | bytes, event_type_key: str, field_name: str) -> bytes:
        """The plaintext; FieldDecryptError (NotClearedToDecrypt when Vault refuses this identity) otherwise."""
        key_name, wrapped, sealed = parse_envelope(envelope)
        aead = self._aead(key_name, wrapped)
        raw = sealed
        try:
            return aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], associated_data(event_type_key, field_name, key_name))
        except InvalidTag:
            raise FieldDecryptError("tampered", f"{event_type_key}.{field_name}: the ciphertext does not authenticate "
                                                "(altered, or moved from another field)") from None

    def _aead(self, key_name: str, wrapped: str) -> AESGCM:
        cache_key = f"{key_name}:{wrapped}"
        now = self._clock()
        with self._lock:
            hit = self._cache.get(cache_key)
            if hit is not None and now - hit[0] < self._max_age:
                self._cache.move_to_end(cache_key)
                found = hit[1]
                if isinstance(found, FieldDecryptError):
                    raise found
                return found
        try:
            entry: AESGCM | FieldDecryptError = AESGCM(self._keys.unwrap(key_name, wrapped))
        except FieldDecryptError as exc:
            entry = exc  # remembered, so an identity that is not cleared does not ask Vault once per record
        except ValueError:
            entry = FieldDecryptError("malformed", "the unwrapped data key is not an AES key")
        with self._lock:
            self._cache[cache_key] = (now, entry)
            self._cache.move_to_end(cache_key)
            while len(self._cache) > self._max_keys:
                self._cache.popitem(last=False)
        if isinstance(entry, FieldDecryptError):
            raise entry
        return entry


def parse_envelope(envelope: str | bytes) -> tuple[str, str, bytes]:
    """(Transit key name, wrapped data key, nonce|ciphertext|tag) of an envelope; FieldDecryptError when malformed."""
    if isinstance(envelope, (bytes, bytearray)):
        try:
            envelope = bytes(envelope).decode("ascii")
        except UnicodeDecodeError:
            raise FieldDecryptError("malformed", "not an encrypted-field envelope") from None
    if not isinstance(envelope, str) or not envelope.startswith(ENVELOPE_PREFIX):
        raise FieldDecryptError("malformed", "not an encrypted-field envelope")
    parts = envelope[len(ENVELOPE_PREFIX):].split(":")
    if len(parts) != 5 or not parts[0]:
        raise FieldDecryptError("malformed", "an encrypted-field envelope has five parts after its prefix")
    key_name, wrapped, body = parts[0], ":".join(parts[1:4]), parts[4]
    key_version(wrapped)
    try:
        raw = base64.b64decode(body, validate=True)
    except ValueError:
        raise FieldDecryptError("malformed", "the ciphertext is not base64") from None
    if len(raw) < _NONCE_BYTES + 16:
        raise FieldDecryptError("malformed", "the ciphertext is too short")
    return key_name, wrapped, raw


@dataclass(frozen=True)
class SealedField:
    """A field a subscriber received still encrypted, and why: not cleared, or a typed decryption failure."""

    field: str
    reason: str  # "not-cleared" | "tampered" | "unknown-key-version" | "malformed"
    error: FieldDecryptError


def open_payload(event_type: EventType, payload: Any, opener: FieldOpener | None
                 ) -> tuple[Any, tuple[SealedField, ...]]:
    """`payload` with each envelope this identity may open replaced by its value, and the fields left sealed.

    A field left sealed keeps its envelope (never garbage). KeyServiceUnavailable propagates: the record is not
    handled rather than handed over half-read.
    """
    specs = event_type.encrypted_fields
    if not specs or not isinstance(payload, Mapping):
        return payload, ()
    result = dict(payload)
    sealed: list[SealedField] = []
    for spec in specs:
        value = payload.get(spec.name)
        if value is None or not is_sealed(value):
            continue
        if opener is None:
            sealed.append(SealedField(spec.name, "not-cleared", NotClearedToDecrypt(
                "not-cleared", f"{event_type.key}.{spec.name}: this subscriber has no key service")))
            continue
        try:
            plain = opener.open(value, event_type.key, spec.name)
        except FieldDecryptError as exc:
            sealed.append(SealedField(spec.name, exc.kind, exc))
            continue
        if isinstance(value, str):  # text was sealed as a text envelope, bytes as a bytes one
            try:
                result[spec.name] = plain.decode("utf-8")
            except UnicodeDecodeError:
                sealed.append(SealedField(spec.name, "malformed", FieldDecryptError(
                    "malformed", f"{event_type.key}.{spec.name}: decrypted value is not text")))
        else:
            result[spec.name] = plain
    return result, tuple(sealed)


# --- key services ----------------------------------------------------------------------------------------------


class TransitKeyService:
    """Data keys from Vault Transit through the identity's own session; retries an unreachable Vault until `timeout`."""

    def __init__(self, session: Any, *, timeout: float = DEFAULT_VAULT_TIMEOUT, retry_interval: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._session = session  # a hybridbus.adapters.vault.VaultSession
        self._timeout = timeout
        self._retry_interval = retry_interval
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"TransitKeyService(identity={getattr(self._session, 'identity', '?')!r})"

    def new_data_key(self, key_name: str) -> DataKey:
        plaintext, wrapped = self._retrying(lambda: self._session.data_key(key_name), key_name)
        return DataKey(key_name, wrapped, plaintext)

    def unwrap(self, key_name: str, wrapped: str) -> bytes:
        return self._retrying(lambda: self._session.unwrap_data_key(key_name, wrapped), key_name)

    def _retrying(self, call: Callable[[], Any], key_name: str) -> Any:
        from hybridbus.adapters.vault import VaultUnavailable

        deadline = time.monotonic() + self._timeout
        while True:
            try:
                return call()
            except VaultUnavailable:
                if time.monotonic() + self._retry_interval > deadline:
                    log.warning("transit unreachable key=%s waited_s=%.1f", key_name, self._timeout)
                    raise KeyServiceUnavailable(
                        f"Vault Transit did not answer within {self._timeout:g}s for key {key_name!r}: "
                        "the event is not sent (it is never sent unencrypted)") from None
                self._sleep(self._retry_interval)


class LocalKeyService:
    """A fixed in-memory master key standing in for Transit: for benchmarks and tests only, never a deployment."""

    def __init__(self, master: bytes | None = None, *, version: int = 1, cleared: bool = True) -> None:
        self._master = AESGCM(master or os.urandom(32))
        self._version = version
        self._cleared = cleared
        self.calls = 0

    def new_data_key(self, key_name: str) -> DataKey:
        self.calls += 1
        plaintext = os.urandom(32)
        nonce = os.urandom(_NONCE_BYTES)
        wrapped = self._master.encrypt(nonce, plaintext, key_name.encode())
        return DataKey(key_name, f"vault:v{self._version}:{base64.b64encode(nonce + wrapped).decode()}", plaintext)

    def unwrap(self, key_name: str, wrapped: str) -> bytes:
        self.calls += 1
        if not self._cleared:
            raise NotClearedToDecrypt("not-cleared", f"this identity may not decrypt with key {key_name!r}")
        if key_version(wrapped) != self._version:
            raise FieldDecryptError("unknown-key-version", f"key {key_name!r} has no version {key_version(wrapped)}")
        raw = base64.b64decode(wrapped.split(":")[2])
        try:
            return self._master.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], key_name.encode())
        except InvalidTag:
            raise FieldDecryptError("tampered", "the wrapped data key does not authenticate") from None
