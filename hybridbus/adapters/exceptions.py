"""Errors of the adapters (codec, Kafka delivery, Vault); each carries a reason a person can act on, never a
field value or a secret."""
from __future__ import annotations

from routing.exceptions import HybridbusError


class CodecError(HybridbusError):
    """Bytes or a payload that cannot be turned into the other."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class UnknownSchemaError(CodecError):
    """The record names a schema fingerprint the catalog does not know."""


class DecodeError(CodecError):
    """The bytes are not a well-formed single-object Avro record of a known schema."""


class EncodeError(CodecError):
    """A payload does not fit its schema; `field` names the first field that does not."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        super().__init__(f"field {field!r}: {reason}" if field else reason)


class DeliveryError(HybridbusError):
    """Kafka refused or could not acknowledge records; names the topic and the broker's reason."""

    def __init__(self, topic: str, reason: str, count: int = 1) -> None:
        self.topic = topic
        self.reason = reason
        self.count = count
        super().__init__(f"{topic}: {count} record(s) not delivered: {reason}")


class VaultError(HybridbusError):
    """Vault refused or could not be reached; never carries a token or a secret."""


class KeyServiceUnavailable(VaultError):
    """No data key could be had (Vault unreachable past the timeout, or no key service at all): nothing is sent."""


class FieldDecryptError(HybridbusError):
    """One encrypted field that did not open; `kind` is "not-cleared", "tampered", "unknown-key-version",
    "unknown-key" or "malformed". Carries neither the ciphertext nor any key."""

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        super().__init__(reason)


class NotClearedToDecrypt(FieldDecryptError):
    """Vault's policy does not let this identity decrypt under the field's key: the field stays sealed, not an error
    of the record."""
