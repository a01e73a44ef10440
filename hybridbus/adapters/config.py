"""Typed settings for every hybridbus process, read once from the environment (`HBUS_*`).

Defaults describe the local stack on 127.0.0.1; production overrides endpoints through the same names.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field

REPO_ROOT = Path(__file__).resolve().parents[2]


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


class Ports(BaseModel):
    """Where each component of the local stack listens (all on 127.0.0.1).

    `HBUS_PORT_OFFSET` shifts every port, so a second stack (another state directory) can run beside the first.
    """

    private_kafka: int = 19092
    private_controller: int = 19093
    public_kafka: int = 29092
    public_controller: int = 29093
    vault: int = 18200
    s3: int = 18333
    s3_master: int = 18334
    s3_volume: int = 18335
    s3_filer: int = 18336
    prometheus: int = 19090
    router_metrics: int = 19101
    egress_metrics: int = 19102
    archiver_metrics: int = 19103
    audit_metrics: int = 19104
    kafka_exporter: int = 19105
    gateway: int = 19180

    def model_post_init(self, __context: object) -> None:
        offset = int(os.environ.get("HBUS_PORT_OFFSET", "0") or 0)
        for name in type(self).model_fields:
            # `HBUS_PORT_<NAME>` sets one port outright (0: any free port, e.g. for a second worker's metrics).
            explicit = os.environ.get(f"HBUS_PORT_{name.upper()}")
            if explicit is not None and explicit.strip():
                setattr(self, name, int(explicit))
            elif offset:
                setattr(self, name, getattr(self, name) + offset)

    def broker(self, cluster: str, index: int) -> tuple[int, int]:
        """(client port, controller port) of node `index` (1-based) of `cluster`: node 1 on the cluster's own two
        ports, each further node on the next pair up (private 19094/19095, 19096/19097 without an offset)."""
        step = 2 * (index - 1)
        return getattr(self, f"{cluster}_kafka") + step, getattr(self, f"{cluster}_controller") + step

    def worker_metrics(self, processor: str, index: int) -> int:
        """The metrics port of worker `index` (1-based) of a processor: the processor's own port for the first,
        ten up for each further one (router 19101, 19111, 19121)."""
        return int(getattr(self, f"{processor}_metrics")) + 10 * (index - 1)


SHAPE_FILE = "stack.json"  # under the state dir: the cluster sizes its data was formatted for


def recorded_brokers(state_dir: Path) -> dict[str, int]:
    """The brokers per cluster that `hbus stack up --brokers N` recorded for this state dir ({} when none)."""
    try:
        data = json.loads((state_dir / SHAPE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {cluster: int(n) for cluster, n in data.get("brokers", {}).items()}


class Settings(BaseModel):
    """Everything a hybridbus process needs to find the bus; no secret is ever held here."""

    host: str = "127.0.0.1"
    state_dir: Path = Field(default_factory=lambda: _env_path("HBUS_STATE_DIR", REPO_ROOT / ".state"))
    cache_dir: Path = Field(
        default_factory=lambda: _env_path("HBUS_CACHE_DIR", Path.home() / ".cache" / "hybridbus")
    )
    schemas_dir: Path = Field(
        default_factory=lambda: _env_path("HBUS_SCHEMAS_DIR", REPO_ROOT / "schemas" / "avro")
    )
    rules_dir: Path = Field(
        default_factory=lambda: _env_path("HBUS_RULES_DIR", REPO_ROOT / "routing" / "rules")
    )
    ports: Ports = Field(default_factory=Ports)
    # Brokers of each local cluster: `HBUS_PRIVATE_BROKERS`, else what the state dir was brought up with, else 1.
    private_brokers: int = 0
    public_brokers: int = 0
    private_bootstrap: str | None = None
    public_bootstrap: str | None = None
    vault_addr: str | None = None
    s3_endpoint: str | None = None
    open_data_bucket: str = "hbus-open-data"
    audit_bucket: str = "hbus-audit"
    # How long a processor holds back a record whose schema fingerprint its catalog does not know yet (a producer
    # ahead of the catalog on `_hbus.catalog`) before it gives the record up as unknown (`HBUS_UNKNOWN_SCHEMA_HOLD_S`).
    unknown_schema_hold_s: float = Field(
        default_factory=lambda: float(os.environ.get("HBUS_UNKNOWN_SCHEMA_HOLD_S") or 120.0))

    def model_post_init(self, __context: object) -> None:
        recorded = recorded_brokers(self.state_dir)
        self.private_brokers = self.private_brokers or int(
            os.environ.get("HBUS_PRIVATE_BROKERS") or recorded.get("private", 1))
        self.public_brokers = self.public_brokers or int(
            os.environ.get("HBUS_PUBLIC_BROKERS") or recorded.get("public", 1))
        # Every broker is listed, so that a client (re)starting while one is down still finds the cluster.
        self.private_bootstrap = self.private_bootstrap or os.environ.get(
            "HBUS_PRIVATE_BOOTSTRAP", self.broker_list("private"))
        self.public_bootstrap = self.public_bootstrap or os.environ.get(
            "HBUS_PUBLIC_BOOTSTRAP", self.broker_list("public"))
        self.vault_addr = self.vault_addr or os.environ.get(
            "HBUS_VAULT_ADDR", f"http://{self.host}:{self.ports.vault}"
        )
        self.s3_endpoint = self.s3_endpoint or os.environ.get(
            "HBUS_S3_ENDPOINT", f"http://{self.host}:{self.ports.s3}"
        )

    def brokers(self, cluster: str) -> int:
        return int(getattr(self, f"{cluster}_brokers"))

    def broker_list(self, cluster: str) -> str:
        """`host:port,…` of every broker of a local cluster."""
        return ",".join(f"{self.host}:{self.ports.broker(cluster, i)[0]}" for i in range(1, self.brokers(cluster) + 1))

    def with_brokers(self, private: int, public: int) -> Settings:
        """The same settings for clusters of another size (bootstrap lists derived again)."""
        fields = self.model_dump(exclude={"private_bootstrap", "public_bootstrap", "ports"})
        return Settings(**{**fields, "ports": self.ports, "private_brokers": private, "public_brokers": public})

    @property
    def secrets_dir(self) -> Path:
        """Dev credentials generated at `stack up` (mode 0700); never inside the repo's tracked files."""
        return self.state_dir / "secrets"


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings()
