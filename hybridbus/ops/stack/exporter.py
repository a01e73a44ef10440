"""The local stack's Kafka exporter: brokers up and under-replicated, under-min-ISR and offline partitions of both
clusters, refreshed from the admin API every few seconds and served to Prometheus on `ports.kafka_exporter`.

In production the brokers' own JMX (ReplicaManager UnderReplicatedPartitions, KafkaController
OfflinePartitionsCount) gives the same figures; the alert rules read these names.
"""
from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from hybridbus.adapters.config import settings
from hybridbus.adapters.topology import PRIVATE, PUBLIC
from hybridbus.ops.stack.health import ClusterHealth, admin, read

REFRESH_S = 5.0
STATES = ("all", "under_replicated", "under_min_isr", "offline")

log = logging.getLogger("hbus.kafka-exporter")


class ClusterGauges:
    """The exported series; one label set per cluster, partitions by state."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge("hbus_kafka_metadata_ok", "1 when a broker of the cluster answered the last metadata request",
                        ["cluster"], registry=registry)
        self.brokers = Gauge("hbus_kafka_brokers", "Brokers registered and unfenced", ["cluster"], registry=registry)
        self.expected = Gauge("hbus_kafka_brokers_expected", "Brokers the cluster is made of", ["cluster"],
                              registry=registry)
        self.partitions = Gauge("hbus_kafka_partitions", "Partitions by state: all, under_replicated, "
                                "under_min_isr, offline", ["cluster", "state"], registry=registry)

    def show(self, health: ClusterHealth) -> None:
        c = health.cluster
        self.up.labels(c).set(1 if health.reachable else 0)
        self.expected.labels(c).set(health.expected_brokers)
        if not health.reachable:
            # Unknown is not zero: the partition series go stale rather than claim all is well.
            self.brokers.labels(c).set(0)
            for state in STATES:
                try:
                    self.partitions.remove(c, state)
                except KeyError:
                    pass
            return
        self.brokers.labels(c).set(len(health.brokers))
        for state, value in zip(STATES, (health.partitions, health.under_replicated, health.under_min_isr,
                                         health.offline), strict=True):
            self.partitions.labels(c, state).set(value)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    cfg = settings()
    registry = CollectorRegistry()
    gauges = ClusterGauges(registry)
    start_http_server(cfg.ports.kafka_exporter, addr=cfg.host, registry=registry)
    clients = {cluster: admin(cfg, cluster) for cluster in (PRIVATE, PUBLIC)}
    last: dict[str, tuple[object, ...]] = {}
    while True:
        for cluster, client in clients.items():
            health = read(cfg, cluster, client, timeout=3.0)
            gauges.show(health)
            seen = (health.reachable, health.brokers, health.under_replicated, health.under_min_isr, health.offline)
            if last.get(cluster) != seen:  # one line per change, not one per refresh
                last[cluster] = seen
                log.log(logging.INFO if health.in_sync else logging.WARNING, "event=cluster_health cluster=%s in_sync=%s reachable=%s brokers=%d/%d under_replicated=%d "
                            "under_min_isr=%d offline=%d", cluster, health.in_sync, health.reachable, len(health.brokers),
                            health.expected_brokers, health.under_replicated, health.under_min_isr, health.offline)
        time.sleep(REFRESH_S)


if __name__ == "__main__":
    main()
