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
def up(quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing on success."),
       brokers: int | None = typer.Option(None, "--brokers", min=1,
                                          help="Brokers of the private cluster (3: production's shape, RF 3, min "
                                               "ISR 2). Default: what this state dir has, else 1."),
       public_brokers: int | None = typer.Option(None, "--public-brokers", min=1,
                                                 help="Brokers of the public cluster. Default: what this state dir has, else 1.")) -> None:
    """Install what is missing, start every component, bootstrap users, topics, ACLs, Vault and buckets.

    Idempotent: a second `up` while running changes nothing. The broker counts are kept in the state dir; a state
    dir formatted for other counts is refused (use another HBUS_STATE_DIR, or `down --purge`).

    Example: hbus stack up --brokers 3
    """
    cfg = settings()
    started = time.monotonic()
    try:
        result = manager.up(cfg, private_brokers=brokers, public_brokers=public_brokers)
    except StackError as exc:
        raise fail(str(exc)) from None
    cfg = settings()  # the sizes `up` recorded
    if not quiet:
        typer.echo(table(["component", "healthy", "endpoint"],
                         [[s.name, "yes" if s.healthy else "NO", s.endpoint] for s in result]))
        typer.echo(f"state: {cfg.state_dir}  (up in {time.monotonic() - started:.1f}s)")
    if not all(s.healthy for s in result):
        raise typer.Exit(FAILED)


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Health of each component (every broker on its own line), then of each Kafka cluster: brokers up, the
    controller, and partitions under-replicated, below min ISR or offline. Exit 1 when a component is not healthy
    or a partition is offline.

    Example: hbus stack status --json
    """
    cfg = settings()
    result = manager.status(cfg)
    clusters = manager.cluster_health(cfg) if any(s.healthy for s in result if s.name.startswith("kafka-")) else []
    if as_json:
        emit_json({"components": [s.as_dict() for s in result], "clusters": [c.as_dict() for c in clusters]})
    else:
        typer.echo(table(["component", "running", "healthy", "pid", "rss_mb", "endpoint"],
                         [[s.name, "yes" if s.running else "no", "yes" if s.healthy else "NO", s.pid, s.rss_mb,
                           s.endpoint] for s in result]))
        total = sum(s.rss_mb or 0 for s in result)
        typer.echo(f"total rss: {total:.0f} MiB")
        if clusters:
            typer.echo(table(["cluster", "brokers up", "controller", "partitions", "under-replicated",
                              "below min ISR", "offline", "leaders (node: partitions)"],
                             [[c.cluster, f"{len(c.brokers)}/{c.expected_brokers}" if c.reachable else "unreachable",
                               c.controller, c.partitions, c.under_replicated, c.under_min_isr, c.offline,
                               " ".join(f"{n}:{k}" for n, k in c.leaders) or "-"] for c in clusters]))
    if not all(s.healthy for s in result) or any(c.offline or not c.reachable for c in clusters):
        raise typer.Exit(FAILED)


@app.command()
def down(purge: bool = typer.Option(False, "--purge", help="Also delete all data and generated credentials.")) -> None:
    """Stop what `up` started (by pid); data is kept unless --purge.

    Example: hbus stack down
    """
    manager.down(settings(), purge=purge)


@app.command()
def logs(name: str = typer.Argument(..., help="Component: vault, s3, kafka-private[-N], kafka-public[-N], "
                                               "kafka-exporter, prometheus."),
         lines: int = typer.Option(50, "--lines", "-n")) -> None:
    """The last lines of a component's log.

    Example: hbus stack logs kafka-private -n 100
    """
    try:
        component = manager.component(settings(), name)
    except StackError as exc:
        raise fail(str(exc)) from None
    typer.echo(component.process.tail(lines))
