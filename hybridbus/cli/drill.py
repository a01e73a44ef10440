"""`hbus drill NAME | all`: inject one fault into the running bus under a steady stream and count every event."""
from __future__ import annotations

import logging
from pathlib import Path

import typer

from hybridbus.adapters.config import Settings, settings
from hybridbus.cli.output import FAILED, USAGE, emit_json, fail, table
from hybridbus.ops.drills import DRILLS, DrillOptions, DrillResult, drills_for, machine, run
from hybridbus.ops.stack import manager
from hybridbus.ops.stack.exceptions import StackError
from routing.exceptions import HybridbusError


def drill(
    name: str = typer.Argument(..., help=f"A drill, or all: {', '.join(DRILLS)}."),
    events: int = typer.Option(DrillOptions.events, "--events", help="Events to publish during each drill."),
    outage: float = typer.Option(DrillOptions.outage, "--outage", help="Seconds a stopped component stays down."),
    rate: float = typer.Option(DrillOptions.rate, "--rate", help="Events per second of the steady stream."),
    brokers: int | None = typer.Option(None, "--brokers", min=1,
                                       help="Run on a private cluster of this many brokers (3: production's shape, "
                                            "and its drills); starts the stack so if it is not running."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable report."),
) -> None:
    """Drive a steady stream of sample events, inject one fault, wait for recovery, then count every copy.

    Reports per drill the events lost, unreadable (encrypted fields a cleared subscriber could not open, after
    a key rotation), duplicated outside (public cluster, bucket), leaked (canary scan) and
    the recovery time. Leaves the stack, the shipped rules and the processors running.
    Exit 1 if any figure is not zero.

    `all` runs the drills of the cluster's shape: one broker (the default), or with --brokers 3 the
    production-shape drills (broker kill, rolling restart, below min ISR, worker kills mid-rebalance).

    Example: hbus stack up && hbus processors start && hbus drill all --events 100000

    Example: hbus drill all --brokers 3 --events 100000
    """
    if (name != "all" and name not in DRILLS) or events < 1:
        raise fail(f"unknown drill {name!r} or --events below 1 (drills: all, {', '.join(DRILLS)})", USAGE)
    cfg = settings()
    size = brokers or cfg.private_brokers
    names = drills_for(size) if name == "all" else [name]
    short = [n for n in names if DRILLS[n].brokers > size]
    if short:
        raise fail(f"drill {', '.join(short)} needs --brokers {DRILLS[short[0]].brokers} (a private cluster of "
                   f"{size} broker(s) cannot show it)", USAGE)
    if brokers is not None:
        try:
            manager.up(cfg, echo=lambda *_: None, private_brokers=brokers)
        except StackError as exc:
            raise fail(str(exc)) from None
        cfg = settings()  # the broker list `up` recorded
    options = DrillOptions(events=events, rate=rate, outage=outage)
    typer.echo(f"logs of the drill's own clients: {_logs_to_file(cfg)}", err=True)
    results: list[DrillResult] = []
    broken: str | None = None
    for n in names:
        typer.echo(f"drill {n}: {DRILLS[n].proves} ...", err=True)
        try:
            result = run(n, cfg, options)
        except HybridbusError as exc:  # the drills before it keep their figures; the report says which broke
            broken = f"{n}: could not complete: {exc}"
            typer.echo(f"drill {broken}", err=True)
            break
        results.append(result)
        typer.echo(f"drill {n}: {result.as_dict()}", err=True)  # on the terminal as each ends, not only at the end
    if as_json:
        emit_json({"machine": machine(), "brokers": cfg.private_brokers, "events": events, "outage_s": outage,
                   "rate": rate, "drills": [r.as_dict() for r in results], "broken": broken})
    else:
        typer.echo(table(["drill", "published", "lost", "unreadable", "dup outside", "leaked", "recovery s", "restarted"],
                         [[r.name, r.published, r.lost, r.unreadable, r.duplicated, r.leaked,
                           "none" if r.recovery_s is None else r.recovery_s, ",".join(r.restarted) or "-"]
                          for r in results]))
        for r in (r for r in results if not r.ok):
            typer.echo(f"{r.name}: FAILED {r.as_dict()}", err=True)
        if broken is not None:
            typer.echo(f"FAILED {broken}", err=True)
        typer.echo(f"machine: {machine()}; private cluster of {cfg.private_brokers} broker(s)")
    if broken is not None or not all(r.ok for r in results):
        raise typer.Exit(FAILED)


def _logs_to_file(cfg: Settings) -> Path:
    """Send the drill's own log lines (its Kafka clients' included) to a file: a drill causes the faults they
    report, by the hundred while a broker is down, and the terminal is for the report."""
    path = cfg.state_dir / "logs" / "drill.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    log = logging.getLogger("hbus")
    log.addHandler(handler)
    log.propagate = False
    return path
