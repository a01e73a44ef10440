"""The results of a benchmark: medians and spreads, the ratios and targets, as JSON and as a Markdown table."""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hybridbus.ops.bench import client as client_bench
from hybridbus.ops.bench import step as step_bench
from hybridbus.ops.bench.runner import (
    CLIENT,
    CONFIGS,
    E2E,
    LATENCY,
    LATENCY_FIXED,
    MIRROR,
    PERF,
    RAW,
    ROUTER,
    ROUTER2,
    Figures,
    Options,
)

TITLES = {
    PERF: "broker limit: kafka-producer-perf-test",
    CLIENT: "department client: publish_many + flush",
    RAW: "raw pipe: confluent-kafka consume → produce",
    MIRROR: "MirrorMaker 2: private → public, byte copy",
    ROUTER: "hybridbus router alone (ingress → graded)",
    ROUTER2: "hybridbus router, 2 workers",
    E2E: "hybridbus end to end (router → egress → public)",
    LATENCY: "end to end, paced at half the e2e maximum",
    LATENCY_FIXED: "end to end, paced at a fixed rate",
}
TARGETS = {"router_vs_raw_pipe": 0.35, "end_to_end_vs_mirror_maker": 0.35, "p99_ms": 250.0, "rss_mb": 250.0,
           "client_events_per_s": client_bench.TARGET_EVENTS_PER_S,
           "router_step_us": step_bench.TARGETS_US["router"], "guard_step_us": step_bench.TARGETS_US["guard"]}
PROCESSORS = ("router", "egress", "bench-router-2")


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")))
    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": round(mem_kb / 2**20, 1),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version()}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarise(results: dict[str, list[Figures]], options: Options, workload_bytes: float,
              host: dict[str, Any], started: float,
              steps: dict[str, step_bench.StepFigure] | None = None) -> dict[str, Any]:
    """Everything the JSON file holds: every run, per configuration the median and spread of each figure, and the
    steps' CPU per event."""
    summary: dict[str, Any] = {}
    for name in CONFIGS:
        runs = results[name]
        if not runs:
            continue
        rates = [f.events_per_s for f in runs]
        entry: dict[str, Any] = {"events_per_s": round(_median(rates), 1), "min": round(min(rates), 1),
                                 "max": round(max(rates), 1),
                                 "spread_pct": round(100 * (max(rates) - min(rates)) / _median(rates), 1)}
        for key in ("cpu_s_per_100k", "peak_rss_mb"):
            names = sorted({n for f in runs for n in getattr(f, key)})
            entry[key] = {n: round(_median([getattr(f, key)[n] for f in runs if n in getattr(f, key)]), 2)
                          for n in names}
        names = sorted({k for f in runs for k in f.extra})
        entry["extra"] = {k: {"median": round(_median([f.extra[k] for f in runs]), 1),
                              "min": min(f.extra[k] for f in runs), "max": max(f.extra[k] for f in runs)}
                          for k in names}
        summary[name] = entry
    ratios = {
        "router_vs_raw_pipe": _ratio(summary, ROUTER, RAW),
        "end_to_end_vs_mirror_maker": _ratio(summary, E2E, MIRROR),
        "two_routers_vs_one": _ratio(summary, ROUTER2, ROUTER),
    }
    rss = {n: v for name in (ROUTER, ROUTER2, E2E) for n, v in summary.get(name, {}).get("peak_rss_mb", {}).items()
           if n in PROCESSORS}
    # The latency target is stated at a fixed rate; a run without one is judged at half the maximum.
    p99 = summary.get(LATENCY_FIXED if LATENCY_FIXED in summary else LATENCY, {}).get("extra", {}).get(
        "p99_ms", {}).get("median")
    targets = {
        "router_vs_raw_pipe": ratios["router_vs_raw_pipe"] >= TARGETS["router_vs_raw_pipe"],
        "end_to_end_vs_mirror_maker": ratios["end_to_end_vs_mirror_maker"] >= TARGETS["end_to_end_vs_mirror_maker"],
        "p99_ms": p99 is not None and p99 <= TARGETS["p99_ms"],
        "rss_mb": bool(rss) and max(rss.values()) <= TARGETS["rss_mb"],
        "client_events_per_s": summary.get(CLIENT, {}).get("events_per_s", 0.0) >= TARGETS["client_events_per_s"],
    }
    step_figures = {name: figure.as_json() for name, figure in (steps or {}).items()}
    for name, figure in step_figures.items():
        targets[f"{name}_step_us"] = figure["met"]
    return {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "duration_s": round(time.time() - started, 1), "machine": host,
            "workload": {**asdict(options), "mean_event_bytes": round(workload_bytes, 1), "partitions": 6},
            "summary": summary, "steps": step_figures, "ratios": ratios, "targets": {"wanted": TARGETS, "met": targets},
            "runs": {name: [asdict(f) for f in runs] for name, runs in results.items()}}


def _ratio(summary: dict[str, Any], top: str, bottom: str) -> float:
    if top not in summary or bottom not in summary:
        return float("nan")
    return round(summary[top]["events_per_s"] / summary[bottom]["events_per_s"], 3)


def _latency_rate(data: dict[str, Any]) -> str:
    fixed = data["summary"].get(LATENCY_FIXED)
    return f"{fixed['events_per_s']:,.0f} events/s" if fixed else "half the maximum rate"


def markdown(data: dict[str, Any]) -> str:
    """The table of the README: one row per configuration, then the ratios and targets."""
    host, work = data["machine"], data["workload"]
    lines = [
        f"Run {data['started_at']} on {host['cores']} cores ({host['cpu']}), {host['memory_gib']} GiB, load average "
        f"{host['load_average_at_start'][0]} at start; {work['events']:,} events of {work['mean_event_bytes']:.0f} B, "
        f"{work['partitions']} partitions, {work['runs']} runs each (median, min–max)"
        + (f", after {work['warmup_seconds']:.0f} s of unmeasured warm-up traffic." if work.get("warmup_seconds")
           else "."),
        "",
        "| configuration | events/s | min–max | CPU s / 100k events | peak RSS MB | other |",
        "|---|---:|---:|---|---|---|",
    ]
    for name in CONFIGS:
        entry = data["summary"].get(name)
        if not entry:
            continue
        cpu = ", ".join(f"{n} {v:.1f}" for n, v in entry["cpu_s_per_100k"].items()) or "–"
        rss = ", ".join(f"{n} {v:.0f}" for n, v in entry["peak_rss_mb"].items()) or "–"
        other = ", ".join(f"{k} {v['median']:g} ({v['min']:g}–{v['max']:g})" for k, v in entry["extra"].items()) or "–"
        lines.append(f"| {TITLES[name]} | {entry['events_per_s']:,.0f} | {entry['min']:,.0f}–{entry['max']:,.0f} "
                     f"| {cpu} | {rss} | {other} |")
    ratios, met, wanted = data["ratios"], data["targets"]["met"], data["targets"]["wanted"]
    mark = {True: "met", False: "missed"}
    lines += [
        "",
        f"- router / raw pipe: **{ratios['router_vs_raw_pipe']:.2f}** (target ≥ {wanted['router_vs_raw_pipe']:.2f}, "
        f"{mark[met['router_vs_raw_pipe']]})",
        f"- end to end / MirrorMaker 2: **{ratios['end_to_end_vs_mirror_maker']:.2f}** (target ≥ "
        f"{wanted['end_to_end_vs_mirror_maker']:.2f}, {mark[met['end_to_end_vs_mirror_maker']]})",
        f"- two router workers / one: **{ratios['two_routers_vs_one']:.2f}**",
        f"- p99 occurred-at → public arrival at {_latency_rate(data)} ≤ {wanted['p99_ms']:.0f} ms: {mark[met['p99_ms']]}; "
        f"every processor ≤ {wanted['rss_mb']:.0f} MB RSS: {mark[met['rss_mb']]}",
    ]
    if CLIENT in data["summary"]:
        rate = data["summary"][CLIENT]["events_per_s"]
        lines.append(f"- department client, batched from one process: **{rate:,.0f} events/s** "
                     f"(target ≥ {wanted['client_events_per_s']:,.0f}, {mark[met['client_events_per_s']]})")
    steps = data.get("steps") or {}
    if steps:
        figures = "; ".join(f"{name} step **{fig['us_per_event']:.1f} µs/event** "
                            f"(target ≤ {fig['target_us']:.0f}, {mark[fig['met']]})" for name, fig in steps.items())
        lines.append(f"- CPU per event without a broker, median of {len(next(iter(steps.values()))['runs_us'])} runs: "
                     f"{figures}; {step_bench.PSEUDONYMISER_NOTE}")
    return "\n".join(lines) + "\n"


def write(data: dict[str, Any], directory: Path, stem: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / f"{stem}.json", directory / f"{stem}.md"
    json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    md_path.write_text(markdown(data))
    return json_path, md_path
