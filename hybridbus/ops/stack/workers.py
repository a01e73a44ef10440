"""Start, stop and check the hybridbus processors (router, egress, archiver, …) as local processes.

Each runs `python -m processors.<name>` with its log in `<state>/logs/<name>.log`; `down` stops them by pid.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import requests

from hybridbus.adapters.config import Settings
from hybridbus.ops.stack.exceptions import StackError
from hybridbus.ops.stack.process import ManagedProcess

PROCESSORS = ("router", "egress", "archiver", "audit")


@dataclass(frozen=True)
class WorkerStatus:
    name: str
    running: bool
    healthy: bool
    pid: int | None
    metrics: str

    def as_dict(self) -> dict:  # type: ignore[type-arg]
        return {"name": self.name, "running": self.running, "healthy": self.healthy, "pid": self.pid,
                "metrics": self.metrics}


def process(cfg: Settings, name: str) -> ManagedProcess:
    return ManagedProcess(name, cfg.state_dir / "run", cfg.state_dir / "logs")


def metrics_port(cfg: Settings, name: str) -> int:
    return int(getattr(cfg.ports, f"{name.split('-')[0]}_metrics"))


def metrics_url(cfg: Settings, name: str) -> str:
    return f"http://{cfg.host}:{metrics_port(cfg, name)}/metrics"


def start(cfg: Settings, names: tuple[str, ...] = PROCESSORS, timeout: float = 60.0) -> list[WorkerStatus]:
    """Start each processor not already running and wait until its /metrics answers."""
    for name in names:
        proc = process(cfg, name)
        if not proc.running():
            proc.start([sys.executable, "-m", f"processors.{name}"])
    deadline = time.monotonic() + timeout
    for name in names:
        while not _healthy(cfg, name):
            if not process(cfg, name).running():
                raise StackError(name, "the processor exited during start", process(cfg, name).log_file)
            if time.monotonic() > deadline:
                raise StackError(name, f"no /metrics within {timeout:.0f}s", process(cfg, name).log_file)
            time.sleep(0.5)
    return status(cfg, names)


def stop(cfg: Settings, names: tuple[str, ...] = PROCESSORS) -> list[str]:
    return [name for name in names if process(cfg, name).stop(timeout=20)]


def status(cfg: Settings, names: tuple[str, ...] = PROCESSORS) -> list[WorkerStatus]:
    result = []
    for name in names:
        pid = process(cfg, name).pid()
        result.append(WorkerStatus(name, pid is not None, pid is not None and _healthy(cfg, name), pid,
                                   metrics_url(cfg, name)))
    return result


def _healthy(cfg: Settings, name: str) -> bool:
    try:
        return requests.get(metrics_url(cfg, name), timeout=2).status_code == 200
    except requests.RequestException:
        return False
