"""`hbus bench --quick` on the real stack: the harness runs every configuration and writes every figure.

Nothing here is about speed (speed targets live in the benchmark itself); it checks that each figure was
measured, is a real number, and that the stack is left as it was found.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hybridbus.adapters.config import Settings
from hybridbus.cli.main import app
from hybridbus.ops.bench.runner import CONFIGS, E2E, LATENCY, LATENCY_FIXED, MIRROR, RAW, ROUTER, ROUTER2
from hybridbus.ops.stack import workers
from tests.integration.kafkatools import list_topics

pytestmark = pytest.mark.bulk


def test_quick_bench_produces_every_figure(bus: Settings, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "--quick", "--results-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output

    [json_file] = tmp_path.glob("*-quick.json")
    data = json.loads(json_file.read_text())
    summary = data["summary"]
    quick_configs = set(CONFIGS) - {LATENCY_FIXED}  # a quick run has no fixed-rate latency runs (`latency_rate` 0)
    assert set(summary) == quick_configs
    for name in quick_configs:
        assert summary[name]["events_per_s"] > 0, name
    processes = {RAW: {"raw-pipe"}, MIRROR: {"mirror-maker-2"}, ROUTER: {"router"},
                 ROUTER2: {"router", "bench-router-2"}, E2E: {"router", "egress"}}
    for name, expected in processes.items():
        for figure in ("cpu_s_per_100k", "peak_rss_mb"):
            assert set(summary[name][figure]) == expected, (name, figure)
        # A quick run's timed span can be shorter than one CPU clock tick; memory is always there.
        assert all(value >= 0 for value in summary[name]["cpu_s_per_100k"].values()), name
        assert all(value > 0 for value in summary[name]["peak_rss_mb"].values()), name
    latency = summary[LATENCY]["extra"]
    assert 0 <= latency["p50_ms"]["median"] <= latency["p99_ms"]["median"] <= latency["max_ms"]["median"]
    assert all(math.isfinite(value) for value in data["ratios"].values())

    table = json_file.with_suffix(".md").read_text()
    assert "router / raw pipe" in table and "end to end / MirrorMaker 2" in table
    assert table.split("\n\n")[0] in result.output

    # Left as found: no bench topic behind, the processors running again.
    assert not [t for t in list_topics("private") + list_topics("public") if t.startswith(("bench", "mm2-"))]
    assert all(s.running for s in workers.status(bus))
