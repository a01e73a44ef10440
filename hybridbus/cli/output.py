"""Small shared helpers for CLI output: plain tables for people, JSON for machines, meaningful exit codes."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import typer

# Exit codes shared by every `hbus` command.
OK = 0
FAILED = 1  # the thing checked is wrong (a bad schema, a failing rule test, an unhealthy component)
USAGE = 2  # the command was called wrongly (Typer's own code)
UNAVAILABLE = 3  # a dependency (Kafka, Vault, S3, Prometheus) could not be reached


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    rows = [["" if v is None else str(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], _width(value))
    lines = ["  ".join(_pad(h.upper(), widths[i]) for i, h in enumerate(headers)).rstrip()]
    for row in rows:
        lines.append("  ".join(_pad(v, widths[i]) for i, v in enumerate(row)).rstrip())
    return "\n".join(lines)


def _width(text: str) -> int:
    # CJK characters take two columns in a terminal.
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def fail(message: str, code: int = FAILED) -> typer.Exit:
    typer.echo(f"hbus: {message}", err=True)
    return typer.Exit(code)


def err(message: str) -> None:
    print(message, file=sys.stderr)
