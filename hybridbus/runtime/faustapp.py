"""The one way hybridbus builds a Faust app: SCRAM login from Vault, no auto-created topics, state dir.

Processors call `make_app(identity)`, then attach their data plane (`hybridbus.runtime.dataplane`) or add agents;
settings stay Faust's own names.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import faust

from hybridbus.adapters.config import Settings, settings
from hybridbus.adapters.secrets import KafkaCredentials
from hybridbus.adapters.vault import VaultSession

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def login(component: str) -> tuple[Settings, VaultSession]:
    """The start of every processor: warnings-only logs, then its own AppRole login to Vault."""
    cfg = settings()
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    vault = VaultSession(component, cfg)
    vault.login()
    return cfg, vault


def kafka_login(vault: VaultSession, component: str, cluster: str) -> KafkaCredentials:
    """`component`'s SCRAM login to `cluster`, read from Vault now (its age is exported as a metric)."""
    from hybridbus.adapters import metrics

    creds = vault.kafka_credentials(cluster)
    metrics.secret_read(component, f"kafka-{cluster}")
    return creds


def make_app(identity: str, creds: KafkaCredentials, cfg: Settings | None = None, **overrides: Any) -> faust.App:
    cfg = cfg or settings()
    datadir = cfg.state_dir / "processors" / identity
    datadir.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {
        "broker": f"kafka://{cfg.private_bootstrap}",
        "broker_credentials": faust.SASLCredentials(
            username=creds.username, password=creds.password, mechanism="SCRAM-SHA-512"
        ),
        "value_serializer": "raw",
        "key_serializer": "raw",
        # Topics and ACLs come from the topology model; a processor never creates them.
        "topic_allow_declare": False,
        "topic_disable_leader": True,
        "web_enabled": False,
        "store": "memory://",
        "datadir": str(datadir),
        "consumer_auto_offset_reset": "earliest",
        "broker_commit_interval": 0.5,
        "broker_commit_every": 2000,
        "producer_acks": -1,
        "producer_linger_ms": 2,
        "producer_max_batch_size": 256 * 1024,
        "stream_buffer_maxsize": 16384,
        "broker_max_poll_records": 2000,
        # A killed worker's partitions move to the next one after this long (Faust's default is 60 s).
        "broker_session_timeout": 10.0,
        "broker_heartbeat_interval": 2.0,
    }
    options.update(overrides)
    return faust.App(f"hbus-{identity}", **options)


def run_worker(app: faust.App, loglevel: str = "warn") -> None:
    """Run the Faust worker in this process until it is stopped (SIGTERM) or killed.

    Whatever way the worker ends, the process ends with it: a crashed processor must not linger with only
    its metrics thread alive and look healthy.
    """
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    # Faust's terminal spinner lowers the root logger to DEBUG, so every debug call of aiokafka and Faust
    # (several per record) would build a log record only to drop it: about 4 % of the router's time.
    worker.spinner = None
    code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - logged by Faust already
        code = 1
    os._exit(code)


@contextmanager
def exit_on_error() -> Iterator[None]:
    """Wrap the body of a batch: if it fails, end the process at once (exit 70).

    Faust acknowledges a taken batch when its generator closes, even after an error; exiting first means
    the batch is never committed, so the next worker replays it instead of skipping it.
    """
    try:
        yield
    except BaseException:  # noqa: BLE001 - any failure, cancellation included, must not commit
        logging.getLogger("hbus").exception("event=batch_failed action=exit_without_commit")
        logging.shutdown()
        os._exit(70)


def add_housekeeping(app: faust.App, component: str, vault: Any, feed: Any, on_rules: Any,
                     catalogs: Any = None, on_catalog: Any = None) -> None:
    """The timers every processor runs: follow `_hbus.rules` (unless `feed` is None) and `_hbus.catalog` (unless
    `catalogs` is None), keep the Vault token alive.

    `on_rules` and `on_catalog` run on the Faust loop; a processor with a data plane hands the change to it from
    there, so that it takes effect between two batches (`DataPlane.between_batches`).
    """
    import asyncio

    from hybridbus.adapters import metrics

    if feed is not None:
        @app.timer(1.0)
        async def follow_rules() -> None:
            updates = feed.poll()
            if updates:
                on_rules(updates)

    if catalogs is not None:
        @app.timer(1.0)
        async def follow_catalog() -> None:
            # A snapshot is checked like the files on disk (every schema parsed): off the loop.
            in_force = await asyncio.get_running_loop().run_in_executor(None, catalogs.poll)
            if in_force is not None:
                on_catalog(in_force)

    @app.timer(10.0)
    async def keep_vault_token() -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(None, vault.ensure_token)
        except Exception as exc:  # noqa: BLE001 - a Vault outage is survivable until the token expires
            logging.getLogger(f"hbus.{component}").warning("event=vault_unavailable error=%s", type(exc).__name__)
        metrics.VAULT_TOKEN_TTL.labels(component).set(vault.token_ttl_seconds())


def serve(app: faust.App, component: str, vault: Any, feed: Any, on_rules: Any, creds: KafkaCredentials,
          topics: list[str], metrics_port: int, host: str, catalogs: Any = None, on_catalog: Any = None) -> None:
    """The end of every processor's start: its timers, its lag metric, its /metrics page, then the worker."""
    from hybridbus.adapters import metrics
    from hybridbus.runtime.lag import watch_lag

    add_housekeeping(app, component, vault, feed, on_rules, catalogs, on_catalog)
    watch_lag(app, component, creds, topics)
    metrics.serve(metrics_port, host)
    run_worker(app)
