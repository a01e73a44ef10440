"""`hbus processors start|stop|status`: run the router, egress and archiver as local processes."""
from __future__ import annotations

import typer

from hybridbus.adapters.config import settings
from hybridbus.cli.output import FAILED, emit_json, fail, table
from hybridbus.ops.stack import workers
from hybridbus.ops.stack.exceptions import StackError

app = typer.Typer(help="Start, stop and check the hybridbus processors on the local stack.\n\n"
                  "Example: hbus processors start && hbus processors status", no_args_is_help=True)

NAMES = typer.Argument(None, help="Processors to act on (default: all of router, egress, archiver).")


def _names(names: list[str] | None) -> tuple[str, ...]:
    chosen = tuple(names or workers.PROCESSORS)
    unknown = [n for n in chosen if n not in workers.PROCESSORS]
    if unknown:
        raise fail(f"unknown processor(s): {', '.join(unknown)} (known: {', '.join(workers.PROCESSORS)})", 2)
    return chosen


@app.command()
def start(names: list[str] | None = NAMES) -> None:
    """Start processors that are not running and wait until each serves /metrics.

    Example: hbus processors start router
    """
    try:
        workers.start(settings(), _names(names))
    except StackError as exc:
        raise fail(str(exc)) from None


@app.command()
def stop(names: list[str] | None = NAMES) -> None:
    """Stop processors (SIGTERM, then SIGKILL after 20 s).

    Example: hbus processors stop egress
    """
    workers.stop(settings(), _names(names))


@app.command()
def status(names: list[str] | None = NAMES, as_json: bool = typer.Option(False, "--json")) -> None:
    """Which processors run and answer on /metrics; exit 1 when one does not.

    Example: hbus processors status --json
    """
    result = workers.status(settings(), _names(names))
    if as_json:
        emit_json([s.as_dict() for s in result])
    else:
        typer.echo(table(["processor", "running", "healthy", "pid", "metrics"],
                         [[s.name, "yes" if s.running else "no", "yes" if s.healthy else "NO", s.pid, s.metrics]
                          for s in result]))
    if not all(s.healthy for s in result):
        raise typer.Exit(FAILED)
