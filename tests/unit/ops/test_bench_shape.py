"""`hbus bench --shape`: medians per configuration, each router worker's CPU, and the table it prints."""
from __future__ import annotations

from pathlib import Path

from hybridbus.adapters.config import Settings
from hybridbus.ops.bench import shape
from hybridbus.ops.bench.runner import E2E, LATENCY, Figures, Options


def test_summary_keeps_medians_per_worker_cpu_and_latency(tmp_path: Path) -> None:
    results = {
        E2E: [Figures(4000.0, {"router": 20.0, "egress": 11.0}), Figures(4200.0, {"router": 22.0, "egress": 12.0})],
        LATENCY: [Figures(2000.0, extra={"p50_ms": 400.0, "p99_ms": 900.0})],
        "router-2-workers": [Figures(8000.0, {"router": 9.5, "router-2": 9.1})],
    }
    cfg = Settings(state_dir=tmp_path).with_brokers(3, 1)
    data = shape.summarise(results, cfg, Options(events=1000, runs=2), 0.0)
    assert data["private_brokers"] == 3
    assert data["results"][E2E]["events_per_s"] == 4100.0
    assert data["results"][E2E]["cpu_s_per_100k"] == {"egress": 11.5, "router": 21.0}
    assert data["results"][LATENCY]["p99_ms"] == 900.0
    table = shape.markdown(data)
    assert "| router-2-workers | 8,000 | 8,000 | router 9.5, router-2 9.1 | – | – |" in table
    path = shape.write(data, tmp_path / "results")
    assert path.name == "1970-01-01-shape-3-brokers.json" and path.with_suffix(".md").exists()
