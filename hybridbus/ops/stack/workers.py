"""Start, stop and check the hybridbus processors (router, egress, archiver, …) as local processes.

Each runs `python -m processors.<name>` with its log in `<state>/logs/<name>.log`; `down` stops them by pid.
Further workers of a processor are named `<processor>-<n>` (router-2, router-3): same consumer group, their own
metrics port, announced to Prometheus in a file it watches.
"""
from __future__ import annotations

import json
import re
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


_WORKER = re.compile(r"^(?P<processor>[a-z]+)(?:-(?P<index>[2-9]|[1-9][0-9]+))?$")


def worker_of(name: str) -> tuple[str, int]:
    """(processor, worker index) of a worker name: `router` is (router, 1), `router-3` is (router, 3)."""
    match = _WORKER.match(name)
    if not match or match["processor"] not in PROCESSORS:
        raise StackError(name, f"not a processor worker (known: {', '.join(PROCESSORS)}, or <processor>-<n>)")
    return match["processor"], int(match["index"] or 1)


def worker_names(processor: str, count: int) -> tuple[str, ...]:
    """The names of the first `count` workers of a processor: router, router-2, router-3."""
    return tuple(processor if i == 1 else f"{processor}-{i}" for i in range(1, count + 1))


def metrics_port(cfg: Settings, name: str) -> int:
    processor, index = worker_of(name)
    return cfg.ports.worker_metrics(processor, index)


def metrics_url(cfg: Settings, name: str) -> str:
    return f"http://{cfg.host}:{metrics_port(cfg, name)}/metrics"


def start(cfg: Settings, names: tuple[str, ...] = PROCESSORS, timeout: float = 60.0) -> list[WorkerStatus]:
    """Start each processor not already running and wait until its /metrics answers."""
    for name in names:
        proc = process(cfg, name)
        if not proc.running():
            processor, index = worker_of(name)
            env = {} if index == 1 else {f"HBUS_PORT_{processor.upper()}_METRICS": str(metrics_port(cfg, name))}
            proc.start([sys.executable, "-m", f"processors.{processor}"], env=env)
            if index > 1:
                _announce(cfg, name)
    deadline = time.monotonic() + timeout
    for name in names:
        while not _healthy(cfg, name):
            if not process(cfg, name).running():
                raise StackError(name, "the processor exited during start", process(cfg, name).log_file)
            if time.monotonic() > deadline:
                raise StackError(name, f"no /metrics within {timeout:.0f}s", process(cfg, name).log_file)
            time.sleep(0.5)
    return status(cfg, names)


def stop(cfg: Settings, names: tuple[str, ...] | None = None) -> list[str]:
    """Stop the named workers; by default every processor and every further worker that is running."""
    names = names if names is not None else (*PROCESSORS, *extra_running(cfg))
    stopped = [name for name in names if process(cfg, name).stop(timeout=20)]
    for name in names:
        if worker_of(name)[1] > 1:
            _target_file(cfg, name).unlink(missing_ok=True)
    return stopped


def extra_running(cfg: Settings) -> tuple[str, ...]:
    """Further workers (router-2, …) with a live pid file."""
    run = cfg.state_dir / "run"
    names = sorted(f.stem for f in run.glob("*-*.pid")) if run.exists() else []
    return tuple(n for n in names if _WORKER.match(n) and n.split("-")[0] in PROCESSORS and process(cfg, n).running())


def _target_file(cfg: Settings, name: str):  # type: ignore[no-untyped-def]
    return cfg.state_dir / "prometheus" / "workers" / f"{name}.json"


def _announce(cfg: Settings, name: str) -> None:
    """Tell Prometheus (file-based discovery) where this further worker's metrics are."""
    processor, index = worker_of(name)
    path = _target_file(cfg, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([{"targets": [f"{cfg.host}:{metrics_port(cfg, name)}"],
                                 "labels": {"component": processor, "worker": str(index)}}]))


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
