"""`hbus bench`: hybridbus measured side by side with Kafka's perf tool, a raw Python pipe and MirrorMaker 2.

Runs on the local stack (`hbus stack up` first); writes `<results-dir>/<date>.json` and a Markdown table beside
it, and prints the table. See docs/benchmarks.md for what each configuration measures.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hybridbus.adapters.config import REPO_ROOT, settings
from hybridbus.cli.output import emit_json, fail
from hybridbus.ops.stack.exceptions import StackError
from routing.exceptions import HybridbusError

app = typer.Typer(help="Benchmark hybridbus against kafka-producer-perf-test, a raw pipe and MirrorMaker 2.\n\n"
                  "Example: hbus stack up && hbus bench --quick   (or: hbus bench step, hbus bench client)")

QUICK = {"events": 3_000, "runs": 1, "latency_seconds": 3.0, "latency_rate": 0.0, "warmup_seconds": 0.0}


@app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    quick: bool = typer.Option(False, "--quick", help="Smoke run: few events, one run each (checks the harness)."),
    events: int = typer.Option(200_000, help="Events per configuration run (full run: at least 200,000)."),
    runs: int = typer.Option(3, help="Runs of each configuration; the table shows median and min–max."),
    latency_seconds: float = typer.Option(20.0, help="Length of each paced latency run."),
    latency_rate: float = typer.Option(2_000.0, help="Events/s of the fixed-rate latency runs (0: none)."),
    warmup_seconds: float = typer.Option(90.0, min=0, help="Seconds of unmeasured traffic through router and egress "
                                         "before the first measurement, while the brokers compile (0: none)."),
    results_dir: Path = typer.Option(REPO_ROOT / "bench" / "results", help="Where the JSON and Markdown go."),
    shape: bool = typer.Option(False, "--shape", help="Only the end-to-end path (events/s, p50/p99) and router "
                               "workers 1 → 2 → 3 with their CPU, on the running stack's cluster (RF 1 on one "
                               "broker, RF 3 on `hbus stack up --brokers 3`)."),
) -> None:
    """Run every configuration on the same workload and print the table.

    Example: hbus bench --quick --results-dir /tmp/bench
    """
    if ctx.invoked_subcommand is not None:
        return
    from hybridbus.ops.bench import report
    from hybridbus.ops.bench.runner import Bench, Options

    options = (Options(**QUICK) if quick else
               Options(events, runs, latency_seconds, latency_rate=latency_rate, warmup_seconds=warmup_seconds))
    if shape:
        _shape(options, results_dir)
        return
    host, started = report.machine(), time.time()
    with _progress() as show:
        try:
            bench_run = Bench(settings(), options, show)
            results = bench_run.run()
        except (StackError, TimeoutError, RuntimeError) as exc:
            raise fail(f"bench failed: {exc}") from None
    data = report.summarise(results, options, bench_run.workload.mean_bytes(), host, started, bench_run.steps)
    stem = time.strftime("%Y-%m-%d", time.gmtime(started)) + ("-quick" if quick else "")
    json_path, md_path = report.write(data, results_dir, stem)
    typer.echo(report.markdown(data))
    typer.echo(f"results: {json_path} and {md_path}")


def _shape(options, results_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """`--shape`: the production-shape benchmark (hybridbus.ops.bench.shape) on the running stack."""
    from hybridbus.ops.bench import shape

    cfg, started = settings(), time.time()
    with _progress() as show:
        try:
            results = shape.run(cfg, options, show)
        except (StackError, TimeoutError, RuntimeError) as exc:
            raise fail(f"bench failed: {exc}") from None
    data = shape.summarise(results, cfg, options, started)
    path = shape.write(data, results_dir)
    typer.echo(shape.markdown(data))
    typer.echo(f"results: {path}")


@contextmanager
def _progress() -> Iterator[Callable[[str, int, int], None]]:
    """One progress bar per task label, as the bench reports (label, done, total)."""
    with Progress(TextColumn("{task.description:<40}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=False) as progress:
        tasks: dict[str, int] = {}

        def show(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(label, total=total)
            progress.update(tasks[label], completed=done, total=total)

        yield show


@app.command("step")
def step(
    records: int = typer.Option(20_000, min=100, help="Ingress records routed per run."),
    runs: int = typer.Option(5, min=1, help="Runs; the figure is the median."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of the table."),
) -> None:
    """CPU µs per event of the router step and the boundary guard step on the bench workload; no broker, no Vault.

    Example: hbus bench step --json
    """
    from hybridbus.ops.bench import step as steps

    figures = steps.measure(settings(), records=records, runs=runs)
    if as_json:
        emit_json({**{name: figure.as_json() for name, figure in figures.items()}, "note": steps.PSEUDONYMISER_NOTE})
    else:
        typer.echo(steps.table(figures))


@app.command("client")
def client(
    events: int = typer.Option(100_000, min=100, help="Events published per run."),
    runs: int = typer.Option(1, min=1, help="Runs; the figure is the median."),
    dept: str = typer.Option("transport", help="The department whose share of the bench mix is published."),
    api: str = typer.Option("many", help="many: publish_many in batches of 1,000; async: publish_async per event."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of the table."),
) -> None:
    """The department client's batched rate: 1 KB events by `publish_many` (or `publish_async`), then `flush()`,
    on the local stack.

    Example: hbus stack up && hbus bench client --runs 3 --json
    """
    from hybridbus.ops.bench import client as publish

    try:
        data = publish.summary([publish.measure(settings(), events, dept, api) for _ in range(runs)])
    except (StackError, HybridbusError, RuntimeError, ValueError) as exc:
        raise fail(f"bench client failed: {exc}") from None
    if as_json:
        emit_json(data)
    else:
        typer.echo(publish.table(data))


@app.command("crypto")
def crypto(
    events: int = typer.Option(20_000, min=100, help="Events sealed and opened per run."),
    runs: int = typer.Option(5, min=1, help="Runs; the figure is the median."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of the table."),
) -> None:
    """CPU µs per event to seal encrypted fields (client, gateway) and open them (subscriber); no broker, no Vault.

    Example: hbus bench crypto --json
    """
    from hybridbus.ops.bench import fieldcrypt

    data = fieldcrypt.measure(settings(), events=events, runs=runs)
    if as_json:
        emit_json(data)
    else:
        typer.echo(fieldcrypt.table(data))
