"""`hbus stack up|status|down`: start the components in order, bootstrap them, report their health.

`up` is idempotent and all-or-nothing: a component that fails stops what this call started.
"""
from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from hybridbus.adapters.config import SHAPE_FILE, Settings, recorded_brokers, settings
from hybridbus.adapters.topology import PRIVATE, PUBLIC
from hybridbus.ops.stack import bootstrap, health
from hybridbus.ops.stack.components import Component, KafkaBroker, OpenBao, all_components, brokers
from hybridbus.ops.stack.exceptions import StackError
from hybridbus.ops.stack.process import port_open

START_TIMEOUT = 300.0  # a JVM starting on a 2-core machine shared with other heavy work has taken over 180 s


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


def load_topology(cfg: Settings, brokers: Mapping[str, int] | None = None):  # type: ignore[no-untyped-def]
    """The topology of the shipped catalog and rules (the same model production renders), on clusters of
    `brokers` brokers (default: the local stack's)."""
    from hybridbus.adapters.loaders import topology_for

    return topology_for(cfg, brokers)


def shaped(cfg: Settings, private_brokers: int | None = None, public_brokers: int | None = None) -> Settings:
    """`cfg` for clusters of the sizes asked (default: the state dir's), recorded in the state dir for every
    later command; a state dir whose brokers were formatted for another size is refused, not reshaped."""
    want = {PRIVATE: private_brokers or cfg.private_brokers, PUBLIC: public_brokers or cfg.public_brokers}
    if any(n < 1 for n in want.values()):
        raise StackError("stack", f"a cluster needs at least one broker, not {want}")
    recorded = recorded_brokers(cfg.state_dir)
    for cluster, n in want.items():
        has_data = (cfg.state_dir / f"kafka-{cluster}" / "data" / "meta.properties").exists()
        was = recorded.get(cluster, 1 if has_data else n)
        if was != n and has_data:
            raise StackError(f"kafka-{cluster}", f"{cfg.state_dir} holds a {was}-broker {cluster} cluster, not {n}: "
                                                 "use another HBUS_STATE_DIR, or `hbus stack down --purge` first")
    if recorded != want:
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        (cfg.state_dir / SHAPE_FILE).write_text(json.dumps({"brokers": want}) + "\n")
        settings.cache_clear()  # this process's own clients read the new broker lists from now on
    return cfg if (cfg.private_brokers, cfg.public_brokers) == (want[PRIVATE], want[PUBLIC]) \
        else cfg.with_brokers(want[PRIVATE], want[PUBLIC])


def up(cfg: Settings, echo=print, private_brokers: int | None = None,  # type: ignore[no-untyped-def]
       public_brokers: int | None = None) -> list[ComponentStatus]:
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    cfg = shaped(cfg, private_brokers, public_brokers)
    topology = load_topology(cfg)
    components = all_components(cfg)
    started: list[Component] = []
    try:
        _check_ports(cfg, components)
        kafkas: list[Component] = [c for c in components if isinstance(c, KafkaBroker)]
        vault, s3, rest = components[0], components[1], components[2 + len(kafkas):]
        _start(vault, started)
        client = bootstrap.vault_init_and_unseal(cfg)
        bootstrap.vault_bootstrap(client, cfg, topology)
        bootstrap.s3_write_identities(client, cfg)
        _start(s3, started)
        bootstrap.s3_bootstrap(cfg)
        # Every broker starts in parallel: each JVM takes several seconds on its own, and a cluster of three
        # elects its controller only once two of them are up.
        for broker in kafkas:  # one admin login and cluster id per cluster, drawn before the nodes race for them
            assert isinstance(broker, KafkaBroker)
            broker.admin_credentials()
            broker.cluster_id()
        with ThreadPoolExecutor(len(kafkas)) as pool:
            list(pool.map(lambda c: c.prepare(), kafkas))
            for component in kafkas:
                _launch(component, started)
            list(pool.map(_await_healthy, kafkas))
        for cluster in (PRIVATE, PUBLIC):
            first = brokers(cfg, cluster)[0]
            bootstrap.kafka_bootstrap(client, cfg, topology, cluster, first.admin_credentials())
        bootstrap.catalog_bootstrap(cfg, brokers(cfg, PRIVATE)[0].admin_credentials())
        for component in rest:
            _start(component, started)
    except BaseException:  # whatever stopped the start (an interrupt too), what it started is not left behind
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


def _start(component: Component, started: list[Component], timeout: float = START_TIMEOUT) -> None:
    if component.process.running():
        _await_healthy(component, timeout)
        return
    component.prepare()
    _launch(component, started)
    _await_healthy(component, timeout)


def _launch(component: Component, started: list[Component]) -> None:
    if not component.process.running():
        component.start()
        started.append(component)


def _await_healthy(component: Component, timeout: float = START_TIMEOUT) -> None:
    def check() -> bool:
        if not component.process.running():
            raise StackError(component.name, "the process exited during start", component.process.log_file)
        return component.healthy()

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except StackError:
            raise
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.5)
    raise StackError(component.name, f"not healthy within {timeout:.0f}s", component.process.log_file)


def start_component(cfg: Settings, name: str, timeout: float = START_TIMEOUT) -> float:
    """Start one stopped component (a broker after a drill's fault) and wait until it is healthy; seconds taken."""
    began = time.monotonic()
    _start(component(cfg, name), [], timeout)
    return round(time.monotonic() - began, 1)


def cluster_health(cfg: Settings) -> list[health.ClusterHealth]:
    """Brokers up and partitions under-replicated, below min ISR or offline, of both local clusters."""
    return [health.read(cfg, cluster) for cluster in (PRIVATE, PUBLIC)]


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
        (cfg.state_dir / SHAPE_FILE).unlink(missing_ok=True)
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

