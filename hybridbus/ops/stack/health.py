"""Health of a local Kafka cluster, read from its metadata: brokers up, partitions under-replicated, below min ISR
or offline. `summarise` is the pure rule; `read` makes the one admin call that feeds it; `await_in_sync` waits.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from hybridbus.adapters.config import Settings
from hybridbus.adapters.kafka import admin_credentials, client_config
from hybridbus.adapters.topology import replication_for
from hybridbus.ops.stack.exceptions import StackError


@dataclass(frozen=True)
class PartitionState:
    """One partition as the cluster's metadata describes it (leader -1: no leader, the partition is offline)."""

    topic: str
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


@dataclass(frozen=True)
class ClusterHealth:
    cluster: str
    expected_brokers: int
    brokers: tuple[int, ...] = ()  # registered and unfenced, by node id
    controller: int = -1
    partitions: int = 0
    under_replicated: int = 0  # fewer in-sync replicas than replicas
    under_min_isr: int = 0  # fewer in-sync replicas than min.insync.replicas: acks=all producers wait
    offline: int = 0  # no leader: nobody can read or write them
    leaders: tuple[tuple[int, int], ...] = ()  # (node, partitions it leads)
    reachable: bool = True

    @property
    def in_sync(self) -> bool:
        """Every broker back and every partition with its full set of in-sync replicas."""
        return (self.reachable and len(self.brokers) == self.expected_brokers
                and self.under_replicated == 0 and self.offline == 0)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "leaders": dict(self.leaders), "in_sync": self.in_sync}


def summarise(cluster: str, expected_brokers: int, brokers: Iterable[int], controller: int,
              partitions: Iterable[PartitionState], min_insync: int) -> ClusterHealth:
    """What an operator needs from the metadata; internal topics count too (a lost offsets partition stalls groups)."""
    parts = list(partitions)
    leaders: dict[int, int] = {}
    for p in parts:
        if p.leader >= 0:
            leaders[p.leader] = leaders.get(p.leader, 0) + 1
    return ClusterHealth(
        cluster=cluster, expected_brokers=expected_brokers, brokers=tuple(sorted(brokers)), controller=controller,
        partitions=len(parts),
        under_replicated=sum(len(p.isr) < len(p.replicas) for p in parts),
        under_min_isr=sum(p.leader >= 0 and len(p.isr) < min_insync for p in parts),
        offline=sum(p.leader < 0 for p in parts),
        leaders=tuple(sorted(leaders.items())),
    )


def admin(cfg: Settings, cluster: str) -> AdminClient:
    """The local stack's admin client of `cluster`, on `cfg`'s broker list (not the process-wide settings)."""
    return AdminClient(client_config(cluster, admin_credentials(cluster, cfg), cfg))


def partitions_of(metadata: Any, prefix: str = "") -> list[PartitionState]:
    """Every partition of the topics whose names start with `prefix`, from a `list_topics` answer."""
    return [PartitionState(name, p.id, p.leader, tuple(p.replicas), tuple(p.isrs))
            for name, topic in metadata.topics.items() if name.startswith(prefix)
            for p in topic.partitions.values()]


def read(cfg: Settings, cluster: str, client: AdminClient | None = None, timeout: float = 5.0) -> ClusterHealth:
    """The health of one local cluster now; `reachable=False` when no broker answers."""
    expected = cfg.brokers(cluster)
    try:
        metadata = (client or admin(cfg, cluster)).list_topics(timeout=timeout)
    except KafkaException:
        return ClusterHealth(cluster, expected, reachable=False)
    return summarise(cluster, expected, metadata.brokers, metadata.controller_id, partitions_of(metadata),
                     replication_for(expected).min_insync)


def await_in_sync(cfg: Settings, cluster: str, timeout: float = 300.0) -> float:
    """Wait until every broker is back and no partition is under-replicated; the seconds it took."""
    client = admin(cfg, cluster)
    started = time.monotonic()
    health = read(cfg, cluster, client)
    while not health.in_sync:
        if time.monotonic() - started > timeout:
            raise StackError(f"kafka-{cluster}", f"not in sync within {timeout:.0f}s: {health.as_dict()}")
        time.sleep(1.0)
        health = read(cfg, cluster, client)
    return round(time.monotonic() - started, 1)
