"""Vault (OpenBao) through hvac: AppRole login, token renewal, KV v2 reads and Transit HMAC/sign/datakey/decrypt.

Each process holds one `VaultSession` for its own identity; secrets it reads never reach a log line.
"""
from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
import requests

from hybridbus.adapters.config import Settings, settings
from hybridbus.adapters.exceptions import FieldDecryptError, NotClearedToDecrypt, VaultError
from hybridbus.adapters.secrets import KafkaCredentials, S3Credentials, read_private

KV_MOUNT = "secret"
TRANSIT_MOUNT = "transit"
PSEUDONYM_KEY = "pseudonym"
AUDIT_SIGNING_KEY = "audit-signing"
# Rule sets are signed per duty: the engineer who proposes (and applies) and the approver of a widening each sign
# with their role's key, so a single role can never put a widening in force alone.
RULES_PROPOSER_KEY = "rules-proposer"
RULES_APPROVER_KEY = "rules-approver"
RULES_SIGNING_KEYS = (RULES_PROPOSER_KEY, RULES_APPROVER_KEY)
BOUNDARY_KEY = "boundary-operator"  # operators sign the emergency stop's reopening with it


class VaultUnavailable(VaultError):
    """Vault cannot be reached; callers keep what they hold and retry (they never fail open)."""


def approle_file(identity: str, cfg: Settings | None = None) -> Path:
    return (cfg or settings()).secrets_dir / "approle" / f"{identity}.json"


def kafka_kv_path(cluster: str, identity: str) -> str:
    return f"kafka/{cluster}/{identity}"


def s3_kv_path(identity: str) -> str:
    return f"s3/{identity}"


@dataclass
class VaultSession:
    """A logged-in AppRole identity; renews its token before expiry and logs in again when needed."""

    identity: str
    cfg: Settings = field(default_factory=settings)
    role_id: str | None = field(default=None, repr=False)
    secret_id: str | None = field(default=None, repr=False)
    client: hvac.Client = field(init=False, repr=False)
    expires_at: float = field(init=False, default=0.0)
    ttl: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.role_id is None or self.secret_id is None:
            data = read_private(approle_file(self.identity, self.cfg))
            self.role_id, self.secret_id = data["role_id"], data["secret_id"]
        self.client = hvac.Client(url=self.cfg.vault_addr, timeout=5)

    def login(self) -> None:
        try:
            result = self.client.auth.approle.login(role_id=self.role_id, secret_id=self.secret_id)
        except (requests.ConnectionError, requests.Timeout, hvac.exceptions.VaultDown) as exc:
            raise VaultUnavailable(f"vault at {self.cfg.vault_addr} is unreachable: {type(exc).__name__}") from None
        self.ttl = int(result["auth"]["lease_duration"])
        self.expires_at = time.time() + self.ttl

    def ensure_token(self, margin: float = 0.3) -> None:
        """Renew when less than `margin` of the TTL is left; log in again when renewal is refused."""
        if not self.client.token or time.time() >= self.expires_at:
            self.login()
            return
        if self.expires_at - time.time() > self.ttl * margin:
            return
        try:
            result = self.client.auth.token.renew_self()
            self.ttl = int(result["auth"]["lease_duration"])
            self.expires_at = time.time() + self.ttl
        except (requests.ConnectionError, requests.Timeout):
            raise VaultUnavailable(f"vault at {self.cfg.vault_addr} is unreachable") from None
        except hvac.exceptions.VaultError:
            self.login()

    def token_ttl_seconds(self) -> float:
        return max(0.0, self.expires_at - time.time())

    def read_kv(self, path: str) -> dict[str, Any]:
        self.ensure_token()
        try:
            result = self.client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=KV_MOUNT, raise_on_deleted_version=True
            )
        except (requests.ConnectionError, requests.Timeout):
            raise VaultUnavailable(f"vault at {self.cfg.vault_addr} is unreachable") from None
        return dict(result["data"]["data"])

    def kafka_credentials(self, cluster: str) -> KafkaCredentials:
        data = self.read_kv(kafka_kv_path(cluster, self.identity))
        return KafkaCredentials(data["username"], data["password"])

    def s3_credentials(self) -> S3Credentials:
        data = self.read_kv(s3_kv_path(self.identity))
        return S3Credentials(data["access_key"], data["secret_key"])

    def hmac(self, data: bytes, key: str = PSEUDONYM_KEY) -> str:
        """Keyed HMAC computed inside Vault Transit: the key never leaves Vault."""
        import base64

        self.ensure_token()
        result = self.client.secrets.transit.generate_hmac(
            name=key, hash_input=base64.b64encode(data).decode(), algorithm="sha2-256", mount_point=TRANSIT_MOUNT
        )
        return str(result["data"]["hmac"])

    def hmac_batch(self, inputs: Sequence[bytes], key: str = PSEUDONYM_KEY) -> list[str]:
        """Keyed HMACs of many inputs in one Transit request (`batch_input`), in the order given.

        VaultUnavailable when Vault cannot be reached; VaultError when it refuses or answers any item with an
        error or not at all (no partial answer is ever returned: the caller has every pseudonym or none).
        """
        if not inputs:
            return []
        body = {"algorithm": "sha2-256", "batch_input": [{"input": base64.b64encode(d).decode()} for d in inputs]}
        try:
            self.ensure_token()
            response = self.client.adapter.post(f"/v1/{TRANSIT_MOUNT}/hmac/{key}", json=body)
        except (requests.ConnectionError, requests.Timeout, hvac.exceptions.VaultDown):
            raise VaultUnavailable(f"vault at {self.cfg.vault_addr} is unreachable") from None
        except hvac.exceptions.Forbidden:
            raise VaultError(f"identity {self.identity!r} may not compute HMACs with Transit key {key!r}") from None
        except hvac.exceptions.VaultError as exc:
            raise VaultError(f"Transit refused the batch HMAC with key {key!r}: {type(exc).__name__}") from None
        results = (response or {}).get("data", {}).get("batch_results") if isinstance(response, dict) else None
        if not isinstance(results, list) or len(results) != len(inputs) or any(
                not isinstance(r, dict) or not r.get("hmac") for r in results):
            raise VaultError(f"Transit answered the batch HMAC with key {key!r} incompletely")
        return [str(r["hmac"]) for r in results]

    def sign(self, data: bytes, key: str = AUDIT_SIGNING_KEY) -> str:
        """Signature made inside Vault Transit (`vault:v<N>:...`): the signing key never leaves Vault."""
        self.ensure_token()
        return Transit(self.client).sign(data, key)

    def signature_valid(self, data: bytes, signature: str, key: str = AUDIT_SIGNING_KEY) -> bool:
        """Whether Vault Transit confirms `signature` over `data`; a malformed signature is simply not valid."""
        self.ensure_token()
        return Transit(self.client).signature_valid(data, signature, key)

    def data_key(self, key: str) -> tuple[bytes, str]:
        """A new data key from Transit `datakey/plaintext`: (the key, kept in memory only; its wrapped form)."""
        import base64

        self.ensure_token()
        try:
            result = self.client.secrets.transit.generate_data_key(
                name=key, key_type="plaintext", mount_point=TRANSIT_MOUNT)
        except (requests.ConnectionError, requests.Timeout, hvac.exceptions.VaultDown):
            raise VaultUnavailable(f"vault at {self.cfg.vault_addr} is unreachable") from None
        except hvac.exceptions.Forbidden:
            raise VaultError(f"identity {self.identity!r} may not make data keys under Transit key {key!r}") from None
        except hvac.exceptions.InvalidPath:
            raise VaultError(f"Transit key {key!r} does not exist (run `hbus stack up` to create it)") from None
        data = result["data"]
        return base64.b64decode(data["plaintext"]), str(data["ciphertext"])

    def unwrap_data_key(self, key: str, wrapped: str) -> bytes:
        """The data key inside `wrapped`, decrypted by Transit if this identity's policy allows it.

        NotClearedToDecrypt when the policy refuses; FieldDecryptError for a version Transit no longer (or never) had,
        or a wrapped key that does not authenticate.
        """
        import base64

        self.ensure_token()
        try:
            result = self.client.secrets.transit.decrypt_data(name=key, ciphertext=wrapped, mount_point=TRANSIT_MOUNT)
        except (requests.ConnectionError, requests.Timeout, hvac.exceptions.VaultDown):
            raise VaultUnavailable(f"vault at {self.cfg.vault_addr} is unreachable") from None
        except hvac.exceptions.Forbidden:
            raise NotClearedToDecrypt("not-cleared", f"identity {self.identity!r} may not decrypt with key {key!r}") from None
        except hvac.exceptions.InvalidPath:
            raise FieldDecryptError("unknown-key", f"Transit key {key!r} does not exist") from None
        except hvac.exceptions.InvalidRequest as exc:
            text = str(exc).lower()
            if "version" in text or "too old" in text or "disallowed" in text:
                raise FieldDecryptError("unknown-key-version", f"Transit key {key!r} has no usable version for this "
                                                               "record (rotated past its minimum, or destroyed)") from None
            if "not found" in text or "no existing key" in text:
                raise FieldDecryptError("unknown-key", f"Transit key {key!r} does not exist") from None
            raise FieldDecryptError("tampered", f"Transit refused the wrapped data key of key {key!r}") from None
        return base64.b64decode(result["data"]["plaintext"])


@dataclass(frozen=True)
class Transit:
    """Sign and verify inside Vault Transit with any logged-in client (an AppRole, a person, the local root)."""

    client: hvac.Client = field(repr=False)

    def sign(self, data: bytes, key: str) -> str:
        try:
            result = self.client.secrets.transit.sign_data(
                name=key, hash_input=base64.b64encode(data).decode(), mount_point=TRANSIT_MOUNT)
        except (requests.ConnectionError, requests.Timeout, hvac.exceptions.VaultDown):
            raise VaultUnavailable(f"vault at {self.client.url} is unreachable") from None
        except hvac.exceptions.Forbidden:
            raise VaultError(f"this Vault login may not sign with the {key!r} key") from None
        return str(result["data"]["signature"])

    def signature_valid(self, data: bytes, signature: str, key: str) -> bool:
        try:
            result = self.client.secrets.transit.verify_signed_data(
                name=key, hash_input=base64.b64encode(data).decode(), signature=signature, mount_point=TRANSIT_MOUNT)
        except hvac.exceptions.InvalidRequest:
            return False
        except (requests.ConnectionError, requests.Timeout, hvac.exceptions.VaultDown):
            raise VaultUnavailable(f"vault at {self.client.url} is unreachable") from None
        return bool(result["data"]["valid"])


@dataclass(frozen=True)
class PersonToken:
    """A person's Vault login (userpass locally, OIDC/LDAP in production): who, in which roles, and the token."""

    name: str
    policies: tuple[str, ...]
    token: str = field(repr=False)

    def client(self, cfg: Settings | None = None) -> hvac.Client:
        return hvac.Client(url=(cfg or settings()).vault_addr, token=self.token, timeout=10)


def userpass_login(username: str, password: str, cfg: Settings | None = None) -> PersonToken:
    """Log a person in with their own password; the token is theirs (short-lived, their policies only)."""
    client = hvac.Client(url=(cfg or settings()).vault_addr, timeout=10)
    try:
        result = client.auth.userpass.login(username=username, password=password)
    except (requests.ConnectionError, requests.Timeout, hvac.exceptions.VaultDown):
        raise VaultUnavailable(f"vault at {client.url} is unreachable") from None
    except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden, hvac.exceptions.InvalidPath):
        raise VaultError(f"login of {username!r} refused") from None
    auth = result["auth"]
    return PersonToken(str(auth["metadata"].get("username", username)), tuple(auth["policies"]),
                       str(auth["client_token"]))


def person_of(token: str, cfg: Settings | None = None) -> PersonToken:
    """Who a token belongs to, as Vault says (never as the caller says): expired or revoked tokens are refused."""
    client = hvac.Client(url=(cfg or settings()).vault_addr, token=token, timeout=10)
    try:
        data = client.auth.token.lookup_self()["data"]
    except (requests.ConnectionError, requests.Timeout, hvac.exceptions.VaultDown):
        raise VaultUnavailable(f"vault at {client.url} is unreachable") from None
    except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest):
        raise VaultError("the cached login has expired or was revoked: run `hbus login`") from None
    name = (data.get("meta") or {}).get("username") or ""
    if not name:
        raise VaultError("this Vault token is not a person's login: run `hbus login`")
    return PersonToken(str(name), tuple(data.get("policies") or ()), token)


def root_client(cfg: Settings | None = None) -> hvac.Client:
    """The local stack's root token client; used only by `hbus stack` bootstrap and admin commands."""
    cfg = cfg or settings()
    data = read_private(cfg.secrets_dir / "vault-init.json")
    return hvac.Client(url=cfg.vault_addr, token=data["root_token"], timeout=10)
