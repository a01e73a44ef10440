"""The production-shape benchmark: the end-to-end path (events/s, paced p50/p99) on whatever cluster the stack runs
(RF 1 on one broker, RF 3 / min ISR 2 on three), and router workers 1 → 2 → 3 on the 6 partitions with each one's CPU.

It drives the configurations of `runner.Bench` on the same workload; `hbus bench --shape` runs it, once per stack.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from hybridbus.adapters.config import Settings
from hybridbus.ops.bench.report import machine
from hybridbus.ops.bench.runner import E2E, LATENCY, LATENCY_FIXED, Bench, Figures, Options, Progress
from hybridbus.ops.stack import workers

ROUTER_WORKERS = (1, 2, 3)


def run(cfg: Settings, options: Options, progress: Progress,
        router_workers: tuple[int, ...] = ROUTER_WORKERS) -> dict[str, list[Figures]]:
    """End to end and paced latency with router and egress running, then the router alone with 1, 2, 3 workers."""
    bench = Bench(cfg, options, progress)
    was_running = tuple(s.name for s in workers.status(cfg) if s.running)
    results: dict[str, list[Figures]] = {E2E: [], LATENCY: []}
    try:
        workers.start(cfg, ("router", "egress"))
        bench._settle()  # noqa: SLF001 - the same steps as the full bench, in a shorter order
        workers.stop(cfg, tuple(n for n in workers.PROCESSORS if n not in ("router", "egress")))
        for i in range(options.runs):
            bench._end_to_end(i)  # noqa: SLF001
        for i in range(options.runs):
            bench._latency(i)  # noqa: SLF001
        bench._fixed_latency()  # noqa: SLF001
        for name in (E2E, LATENCY, LATENCY_FIXED):
            results[name] = bench.results[name]
        workers.stop(cfg, ("egress",))
        for count in router_workers:
            names = workers.worker_names("router", count)
            key = f"router-{count}-workers"
            results[key] = [bench._backlog_routed(f"{key} {i + 1}/{options.runs}", names)  # noqa: SLF001
                            for i in range(options.runs)]
    finally:
        workers.stop(cfg, workers.extra_running(cfg))
        workers.start(cfg, tuple(dict.fromkeys(("router", "egress", *was_running))))
    return results


def summarise(results: dict[str, list[Figures]], cfg: Settings, options: Options, started: float) -> dict[str, Any]:
    """Medians per configuration, with the CPU each router worker spent per 100k events it handled."""
    def median(values: list[float]) -> float:
        return round(statistics.median(values), 1) if values else float("nan")

    rows: dict[str, Any] = {}
    for name, figures in results.items():
        cpu: dict[str, list[float]] = {}
        for f in figures:
            for process, seconds in f.cpu_s_per_100k.items():
                cpu.setdefault(process, []).append(seconds)
        extra: dict[str, list[float]] = {}
        for f in figures:
            for key, value in f.extra.items():
                extra.setdefault(key, []).append(value)
        rows[name] = {"events_per_s": median([f.events_per_s for f in figures]),
                      "runs": [round(f.events_per_s, 1) for f in figures],
                      "cpu_s_per_100k": {p: median(v) for p, v in sorted(cpu.items())},
                      **{k: median(v) for k, v in extra.items()}}
    return {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)), "machine": machine(),
            "private_brokers": cfg.private_brokers, "events": options.events, "runs": options.runs,
            "latency_seconds": options.latency_seconds, "results": rows}


def markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    lines = [f"Run {data['started']} on {m['cores']} cores ({m['cpu']}), load average {m['load_average_at_start'][0]} "
             f"at start; private cluster of {data['private_brokers']} broker(s); {data['events']:,} events, "
             f"{data['runs']} run(s) each (median).", "",
             "| configuration | events/s | runs | CPU s / 100k events | p50 ms | p99 ms |", "|---|---:|---|---|---:|---:|"]
    for name, row in data["results"].items():
        cpu = ", ".join(f"{p} {s}" for p, s in row["cpu_s_per_100k"].items()) or "–"
        lines.append(f"| {name} | {row['events_per_s']:,.0f} | {', '.join(f'{r:,.0f}' for r in row['runs'])} | {cpu} "
                     f"| {row.get('p50_ms', '–')} | {row.get('p99_ms', '–')} |")
    return "\n".join(lines)


def write(data: dict[str, Any], results_dir: Path) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{data['started'][:10]}-shape-{data['private_brokers']}-brokers"
    (results_dir / f"{stem}.md").write_text(markdown(data) + "\n", encoding="utf-8")
    path = results_dir / f"{stem}.json"
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path
