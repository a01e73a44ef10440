"""`hbus stack up|status|down`: start the components in order, bootstrap them, report their health.

`up` is idempotent and all-or-nothing: a component that fails stops what this call started.
"""
from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from hybridbus.adapters.config import Settings
from hybridbus.ops.stack import bootstrap
from hybridbus.ops.stack.components import Component, KafkaBroker, OpenBao, all_components
from hybridbus.ops.stack.exceptions import StackError
from hybridbus.ops.stack.process import port_open

START_TIMEOUT = 90.0


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    running: bool
    healthy: bool
    pid: int | None
    endpoint: str
    rss_mb: float | None

    def as_dict(self) -> dict:  # type: ignore[type-arg]
        return {"name": self.name, "running": self.running, "healthy": self.healthy, "pid": self.pid,
                "endpoint": self.endpoint, "rss_mb": self.rss_mb}


def load_topology(cfg: Settings):  # type: ignore[no-untyped-def]
    """The topology of the shipped catalog and rules (the same model production renders)."""
    from hybridbus.adapters.loaders import topology_for

    return topology_for(cfg)


def up(cfg: Settings, echo=print) -> list[ComponentStatus]:  # type: ignore[no-untyped-def]
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    topology = load_topology(cfg)
    components = all_components(cfg)
    started: list[Component] = []
    try:
        _check_ports(cfg, components)
        vault, s3, kafkas, rest = components[0], components[1], components[2:4], components[4:]
        _start(vault, started)
        client = bootstrap.vault_init_and_unseal(cfg)
        bootstrap.vault_bootstrap(client, cfg, topology)
        bootstrap.s3_write_identities(client, cfg)
        _start(s3, started)
        bootstrap.s3_bootstrap(cfg)
        # The two brokers start in parallel: each JVM takes several seconds on its own.
        with ThreadPoolExecutor(len(kafkas)) as pool:
            list(pool.map(lambda c: c.prepare(), kafkas))
            for component in kafkas:
                _launch(component, started)
            list(pool.map(_await_healthy, kafkas))
        for component in kafkas:
            assert isinstance(component, KafkaBroker)
            bootstrap.kafka_bootstrap(client, cfg, topology, component.cluster, component.admin_credentials())
        for component in rest:
            _start(component, started)
    except StackError:
        for component in reversed(started):
            component.process.stop()
        raise
    return status(cfg)


def _check_ports(cfg: Settings, components: list[Component]) -> None:
    for component in components:
        if component.process.running():
            continue
        for port in component.ports():
            if port_open(cfg.host, port):
                raise StackError(component.name, f"port {cfg.host}:{port} is already in use by another program")


def _start(component: Component, started: list[Component]) -> None:
    if component.process.running():
        _await_healthy(component)
        return
    component.prepare()
    _launch(component, started)
    _await_healthy(component)


def _launch(component: Component, started: list[Component]) -> None:
    if not component.process.running():
        component.start()
        started.append(component)


def _await_healthy(component: Component) -> None:
    def check() -> bool:
        if not component.process.running():
            raise StackError(component.name, "the process exited during start", component.process.log_file)
        return component.healthy()

    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except StackError:
            raise
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.5)
    raise StackError(component.name, f"not healthy within {START_TIMEOUT:.0f}s", component.process.log_file)


def status(cfg: Settings) -> list[ComponentStatus]:
    result = []
    for component in all_components(cfg):
        pid = component.process.pid()
        healthy = False
        if pid is not None:
            try:
                healthy = bool(component.ready() if isinstance(component, OpenBao) else component.healthy())
            except Exception:  # noqa: BLE001 - unhealthy is the answer
                healthy = False
        result.append(ComponentStatus(component.name, pid is not None, healthy, pid, component.endpoint(),
                                      _rss_mb(pid) if pid else None))
    return result


def down(cfg: Settings, purge: bool = False) -> list[str]:
    """Stop the processors, then every component, by pid; with `purge` also delete data and credentials."""
    from hybridbus.ops.stack import workers

    stopped = workers.stop(cfg)
    for component in reversed(all_components(cfg)):
        if component.process.stop():
            stopped.append(component.name)
    if purge:
        for component in all_components(cfg):
            shutil.rmtree(component.home, ignore_errors=True)
        shutil.rmtree(cfg.secrets_dir, ignore_errors=True)
        shutil.rmtree(cfg.state_dir / "logs", ignore_errors=True)
    return stopped


def component(cfg: Settings, name: str) -> Component:
    for candidate in all_components(cfg):
        if candidate.name == name:
            return candidate
    names = ", ".join(c.name for c in all_components(cfg))
    raise StackError(name, f"no such component (known: {names})")


def _rss_mb(pid: int) -> float | None:
    """Resident memory of the process and its children, in MiB."""
    total = 0
    try:
        pids = [pid] + _children(pid)
        for p in pids:
            with open(f"/proc/{p}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return round(total / 1024, 1)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            kids = [int(k) for k in handle.read().split()]
    except FileNotFoundError:
        return []
    return kids + [g for k in kids for g in _children(k)]

