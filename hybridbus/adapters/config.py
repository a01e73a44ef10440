"""Typed settings for every hybridbus process, read once from the environment (`HBUS_*`).

Defaults describe the local stack on 127.0.0.1; production overrides endpoints through the same names.
"""
from __future__ import annotations

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
    private_bootstrap: str | None = None
    public_bootstrap: str | None = None
    vault_addr: str | None = None
    s3_endpoint: str | None = None
    open_data_bucket: str = "hbus-open-data"
    audit_bucket: str = "hbus-audit"

    def model_post_init(self, __context: object) -> None:
        self.private_bootstrap = self.private_bootstrap or os.environ.get(
            "HBUS_PRIVATE_BOOTSTRAP", f"{self.host}:{self.ports.private_kafka}"
        )
        self.public_bootstrap = self.public_bootstrap or os.environ.get(
            "HBUS_PUBLIC_BOOTSTRAP", f"{self.host}:{self.ports.public_kafka}"
        )
        self.vault_addr = self.vault_addr or os.environ.get(
            "HBUS_VAULT_ADDR", f"http://{self.host}:{self.ports.vault}"
        )
        self.s3_endpoint = self.s3_endpoint or os.environ.get(
            "HBUS_S3_ENDPOINT", f"http://{self.host}:{self.ports.s3}"
        )

    @property
    def secrets_dir(self) -> Path:
        """Dev credentials generated at `stack up` (mode 0700); never inside the repo's tracked files."""
        return self.state_dir / "secrets"


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings()
