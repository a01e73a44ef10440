"""`hbus drill`: refusals before anything runs, and where the drill's own client logs go."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hybridbus.adapters.config import settings
from hybridbus.cli import drill
from hybridbus.cli.main import app
from hybridbus.cli.output import USAGE

runner = CliRunner()


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("HBUS_STATE_DIR", str(tmp_path))
    settings.cache_clear()
    log = logging.getLogger("hbus")
    handlers, propagate = list(log.handlers), log.propagate
    yield tmp_path
    for handler in log.handlers[len(handlers):]:
        handler.close()
    log.handlers[:], log.propagate = handlers, propagate
    settings.cache_clear()


@pytest.mark.parametrize("args", [["no-such-drill"], ["router-kill", "--events", "0"]])
def test_an_unknown_drill_or_no_events_is_refused_before_anything_runs(args: list[str], state_dir: Path) -> None:
    result = runner.invoke(app, ["drill", *args])
    assert result.exit_code == USAGE
    assert "unknown drill" in result.output
    assert not (state_dir / "logs" / "drill.log").exists()


def test_client_log_lines_go_to_the_drill_log_not_the_terminal(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = drill._logs_to_file(settings())
    logging.getLogger("hbus.rdkafka").error("FAIL [rdkafka#producer-1]: Connect to 127.0.0.1:19092 failed")
    for handler in logging.getLogger("hbus").handlers:
        handler.flush()
    assert path == state_dir / "logs" / "drill.log"
    assert "hbus.rdkafka FAIL [rdkafka#producer-1]" in path.read_text(encoding="utf-8")
    assert "rdkafka" not in capsys.readouterr().err


def test_a_production_shape_drill_on_a_one_broker_stack_is_refused_before_anything_runs(state_dir: Path) -> None:
    result = runner.invoke(app, ["drill", "broker-kill", "--events", "10"])
    assert result.exit_code == USAGE
    assert "needs --brokers 3" in result.output
    assert not (state_dir / "logs" / "drill.log").exists()


def test_all_runs_the_drills_of_the_clusters_shape() -> None:
    from hybridbus.ops.drills import DRILLS, drills_for

    three = drills_for(3)
    assert {"broker-kill", "rolling-restart", "below-min-isr", "router-worker-kill", "egress-worker-kill"} == set(three)
    assert not set(three) & set(drills_for(1))
    assert set(three) | set(drills_for(1)) == set(DRILLS)
    assert DRILLS["router-worker-kill"].worker_names().count("router-2") == 1
