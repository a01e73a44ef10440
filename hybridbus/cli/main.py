"""Entry point of `hbus`: assembles the sub-commands of each concept into one CLI.

Quiet on success, `--json` for machines, exit codes that mean something (see `hybridbus.cli.exits`).
"""
from __future__ import annotations

import typer

from hybridbus.cli import stack

app = typer.Typer(
    name="hbus",
    help="hybridbus: route government events by data grade across a private and a public cloud.\n\n"
    "Example: hbus stack up && hbus stack status",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(stack.app, name="stack")

if __name__ == "__main__":  # pragma: no cover
    app()
