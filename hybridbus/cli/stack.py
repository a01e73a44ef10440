"""`hbus stack up|status|down|logs`: the local two-cloud stack on 127.0.0.1."""
from __future__ import annotations

import time

import typer

from hybridbus.adapters.config import settings
from hybridbus.cli.output import FAILED, emit_json, fail, table
from hybridbus.ops.stack import manager
from hybridbus.ops.stack.exceptions import StackError

app = typer.Typer(help="Start, check and stop the local stack (two Kafka clusters, OpenBao, SeaweedFS S3, "
                  "Prometheus).\n\nExample: hbus stack up && hbus stack status --json", no_args_is_help=True)


@app.command()
def up(quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing on success.")) -> None:
    """Install what is missing, start every component, bootstrap users, topics, ACLs, Vault and buckets.

    Idempotent: a second `up` while running changes nothing.

    Example: hbus stack up
    """
    cfg = settings()
    started = time.monotonic()
    try:
        result = manager.up(cfg)
    except StackError as exc:
        raise fail(str(exc)) from None
    if not quiet:
        typer.echo(table(["component", "healthy", "endpoint"],
                         [[s.name, "yes" if s.healthy else "NO", s.endpoint] for s in result]))
        typer.echo(f"state: {cfg.state_dir}  (up in {time.monotonic() - started:.1f}s)")
    if not all(s.healthy for s in result):
        raise typer.Exit(FAILED)


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Health of each component, as a table; exit 1 when any is not healthy.

    Example: hbus stack status --json
    """
    result = manager.status(settings())
    if as_json:
        emit_json([s.as_dict() for s in result])
    else:
        typer.echo(table(["component", "running", "healthy", "pid", "rss_mb", "endpoint"],
                         [[s.name, "yes" if s.running else "no", "yes" if s.healthy else "NO", s.pid, s.rss_mb,
                           s.endpoint] for s in result]))
        total = sum(s.rss_mb or 0 for s in result)
        typer.echo(f"total rss: {total:.0f} MiB")
    if not all(s.healthy for s in result):
        raise typer.Exit(FAILED)


@app.command()
def down(purge: bool = typer.Option(False, "--purge", help="Also delete all data and generated credentials.")) -> None:
    """Stop what `up` started (by pid); data is kept unless --purge.

    Example: hbus stack down
    """
    manager.down(settings(), purge=purge)


@app.command()
def logs(name: str = typer.Argument(..., help="Component: vault, s3, kafka-private, kafka-public, prometheus."),
         lines: int = typer.Option(50, "--lines", "-n")) -> None:
    """The last lines of a component's log.

    Example: hbus stack logs kafka-private -n 100
    """
    try:
        component = manager.component(settings(), name)
    except StackError as exc:
        raise fail(str(exc)) from None
    typer.echo(component.process.tail(lines))
