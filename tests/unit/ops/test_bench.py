"""`hbus bench step` without a broker, and the bench table with the step and client figures (no stack needed).

Only that every figure is measured and shown: the speed targets are judged by the benchmark, never by a test.
"""
from __future__ import annotations

import json
import math

from typer.testing import CliRunner

from hybridbus.cli.main import app
from hybridbus.ops.bench import report
from hybridbus.ops.bench.runner import CLIENT, CONFIGS, Figures, Options
from hybridbus.ops.bench.step import PSEUDONYMISER_NOTE, StepFigure
from hybridbus.ops.bench.step import table as step_table


def test_bench_step_measures_both_steps_without_a_broker() -> None:
    result = CliRunner().invoke(app, ["bench", "step", "--records", "300", "--runs", "2", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["note"] == PSEUDONYMISER_NOTE
    assert data["router"]["records"] == 300
    assert 0 < data["guard"]["records"] < 300  # what the router wrote to the public topics and views
    for step in ("router", "guard"):
        assert len(data[step]["runs_us"]) == 2 and all(math.isfinite(r) and r >= 0 for r in data[step]["runs_us"])
        assert data[step]["target_us"] > 0 and isinstance(data[step]["met"], bool)
    figures = {"router": StepFigure("router", 300, (30.0, 20.0, 24.0)), "guard": StepFigure("guard", 150, (21.0,))}
    lines = step_table(figures).splitlines()
    assert lines[1].split()[:3] == ["router", "step", "24.0"] and lines[1].endswith("met")
    assert lines[2].split()[:3] == ["guard", "step", "21.0"] and lines[2].endswith("missed")


def test_the_bench_table_shows_the_client_and_the_step_figures() -> None:
    results = {name: [Figures(1000.0 + i, {"p": 1.0}, {"p": 10.0}) for i in range(3)] for name in CONFIGS}
    results[CLIENT] = [Figures(31_000.0, {"client": 2.0}, extra={"cpu_us_per_event": 20.0})]
    steps = {"router": StepFigure("router", 1000, (30.0, 20.0, 24.0)), "guard": StepFigure("guard", 500, (21.0,))}
    data = report.summarise(results, Options(), 1024.0, report.machine(), 0.0, steps)
    assert data["steps"]["router"]["us_per_event"] == 24.0 and data["steps"]["guard"]["us_per_event"] == 21.0
    assert data["targets"]["met"] | {"router_step_us": True, "guard_step_us": False, "client_events_per_s": True} \
        == data["targets"]["met"]
    table = report.markdown(data)
    assert "department client: publish_many + flush" in table and "**31,000 events/s**" in table
    assert "router step **24.0 µs/event** (target ≤ 25, met)" in table
    assert "guard step **21.0 µs/event** (target ≤ 20, missed)" in table


def test_bench_crypto_measures_sealing_and_opening_without_vault() -> None:
    result = CliRunner().invoke(app, ["bench", "crypto", "--events", "200", "--runs", "2", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    for side in ("seal", "open"):
        assert data[side]["events"] == 200 and data[side]["fields_per_event"] == 2
        assert len(data[side]["runs_us"]) == 2 and all(math.isfinite(r) and r > 0 for r in data[side]["runs_us"])
    assert data["bytes_sealed"] > data["bytes_plain"] > 0 and data["data_keys_made"] >= 1
