"""Small shared helpers for CLI output: plain tables for people, JSON for machines, meaningful exit codes."""
from __future__ import annotations

import json
import sys
from typing import Any

import typer

from hybridbus.ops.tables import table  # noqa: F401 - re-exported for the commands

# Exit codes shared by every `hbus` command.
OK = 0
FAILED = 1  # the thing checked is wrong (a bad schema, a failing rule test, an unhealthy component)
USAGE = 2  # the command was called wrongly (Typer's own code)
UNAVAILABLE = 3  # a dependency (Kafka, Vault, S3, Prometheus) could not be reached


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def fail(message: str, code: int = FAILED) -> typer.Exit:
    typer.echo(f"hbus: {message}", err=True)
    return typer.Exit(code)


def err(message: str) -> None:
    print(message, file=sys.stderr)
