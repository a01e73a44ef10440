"""How `routing` receives files: their bytes and their names, read by the adapters; routing itself reads nothing."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceFile:
    """A file's bytes and where they came from: how `routing` is handed what the adapters read from disk.

    `data` is None when the file does not exist; `path` names it in every error and carries the
    `<dept>/<event>.v<N>.avsc` naming the catalog checks.
    """

    path: str
    data: bytes | None
