"""`hbus status`: the operator's one screen (components, flow, lag, DLQ, boundary, rules, secrets, alerts).

The data and the "needs attention" rules live in `hybridbus.ops.status`; this module only prints and exits.
"""
from __future__ import annotations

import json
import time

import typer

from hybridbus.adapters.config import settings
from hybridbus.cli.output import FAILED, OK, UNAVAILABLE, emit_json, fail
from hybridbus.ops.status import BusStatus, PrometheusAPI, PrometheusUnavailable, attention, collect, render


def status(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output (one JSON document per refresh)."),
    watch: bool = typer.Option(False, "--watch", "-w", help="Refresh the screen until interrupted (Ctrl-C)."),
    interval: float = typer.Option(5.0, "--interval", min=1.0, help="Seconds between refreshes with --watch."),
    prometheus: str | None = typer.Option(None, "--prometheus", metavar="URL",
                                          help="Another Prometheus than the local stack's (the stack is then "
                                               "not checked directly)."),
) -> None:
    """One screen for an operator, from Prometheus and the local stack.

    Components up, events per second per grade and destination, consumer lag, DLQ size, records blocked at
    the boundary and forged headers in the last hour, rule-set versions, Vault token and secret health,
    firing alerts. Exit 0 when all is well, 1 when something needs attention, 3 when Prometheus cannot be
    reached.

    Example: hbus status --watch
    """
    cfg = settings()
    api = PrometheusAPI(prometheus or f"http://{cfg.host}:{cfg.ports.prometheus}")
    stack = None if prometheus else cfg
    code = OK
    try:
        while True:
            try:
                current = collect(api, stack)
            except PrometheusUnavailable as exc:
                raise fail(str(exc), UNAVAILABLE) from None
            code = FAILED if attention(current) else OK
            _show(current, as_json, watch)
            if not watch:
                break
            time.sleep(interval)
    except KeyboardInterrupt:  # the end of --watch: exit with what the last screen said
        pass
    raise typer.Exit(code)


def _show(current: BusStatus, as_json: bool, watch: bool) -> None:
    """Pretty JSON once, or one JSON line per refresh when watching; the screen is redrawn in place."""
    if as_json:
        if watch:
            typer.echo(json.dumps(current.as_dict(), ensure_ascii=False, default=str))
        else:
            emit_json(current.as_dict())
        return
    if watch:
        typer.echo("\033[2J\033[H", nl=False)
    typer.echo(render(current))
