"""Entry point of `hbus`: assembles the sub-commands of each concept into one CLI.

Quiet on success, `--json` for machines, exit codes that mean something (see `hybridbus.cli.output`).
"""
from __future__ import annotations

import typer

from hybridbus.cli import (
    audit,
    bench,
    boundary,
    catalog,
    client,
    demo,
    dlq,
    drill,
    infra,
    leakscan,
    login,
    processors,
    quarantine,
    rules,
    schemas,
    secrets,
    stack,
    status,
)

app = typer.Typer(
    name="hbus",
    help="hybridbus: route government events by data grade across a private and a public cloud.\n\n"
    "Example: hbus stack up && hbus stack status",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(stack.app, name="stack")
app.add_typer(processors.app, name="processors")
app.add_typer(rules.app, name="rules")
app.add_typer(schemas.app, name="schemas")
app.add_typer(catalog.app, name="catalog")
app.add_typer(dlq.app, name="dlq")
app.add_typer(secrets.app, name="secrets")
app.add_typer(audit.app, name="audit")
app.add_typer(infra.app, name="infra")
app.add_typer(bench.app, name="bench")
app.add_typer(boundary.app, name="boundary")
app.add_typer(quarantine.app, name="quarantine")
app.command("drill")(drill.drill)
app.command("status")(status.status)
app.command("demo")(demo.demo)
app.command("login")(login.login)
app.command("leak-scan")(leakscan.leak_scan)
client.register(app)  # publish, tail, outbox, gateway

if __name__ == "__main__":  # pragma: no cover
    app()
