"""Errors of the shared plumbing (codec); each carries a reason a person can act on, never a field value."""
from __future__ import annotations


class CodecError(Exception):
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
