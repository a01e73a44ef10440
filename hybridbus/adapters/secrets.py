"""Credential values as typed objects whose repr never shows the secret.

Anything that logs, prints or raises with one of these in reach shows `***` instead of the value.
"""
from __future__ import annotations

import json
import os
import secrets as _random
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class KafkaCredentials:
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class S3Credentials:
    access_key: str
    secret_key: str = field(repr=False)


def new_password(nbytes: int = 24) -> str:
    return _random.token_urlsafe(nbytes)


def new_access_key() -> str:
    return "HB" + _random.token_hex(9).upper()


def write_private(path: Path, data: dict) -> None:  # type: ignore[type-arg]
    """Write `data` as JSON readable by the owner only (0600), in a 0700 directory."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
    os.replace(tmp, path)


def read_private(path: Path) -> dict:  # type: ignore[type-arg]
    return json.loads(path.read_text())
