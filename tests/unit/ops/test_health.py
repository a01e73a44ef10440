"""Kafka cluster health from metadata: what counts as under-replicated, below min ISR and offline."""
from __future__ import annotations

from hybridbus.ops.stack.health import PartitionState, summarise


def part(leader: int, isr: tuple[int, ...], replicas: tuple[int, ...] = (1, 2, 3), n: int = 0) -> PartitionState:
    return PartitionState("ingress.market.licence_granted", n, leader, replicas, isr)


def test_a_full_cluster_is_in_sync_and_counts_each_nodes_leaders() -> None:
    health = summarise("private", 3, [3, 1, 2], 2, [part(1, (1, 2, 3)), part(2, (2, 3, 1)), part(1, (1, 3, 2))], 2)
    assert health.in_sync
    assert (health.brokers, health.controller, health.partitions) == ((1, 2, 3), 2, 3)
    assert health.leaders == ((1, 2), (2, 1))
    assert (health.under_replicated, health.under_min_isr, health.offline) == (0, 0, 0)


def test_one_broker_lost_leaves_partitions_under_replicated_but_writable() -> None:
    health = summarise("private", 3, [1, 2], 1, [part(1, (1, 2)), part(2, (2, 1))], 2)
    assert not health.in_sync
    assert (health.under_replicated, health.under_min_isr, health.offline) == (2, 0, 0)


def test_one_copy_left_is_below_min_isr_and_no_leader_is_offline() -> None:
    health = summarise("private", 3, [1], 1, [part(1, (1,)), part(-1, (2,))], 2)
    assert (health.under_replicated, health.under_min_isr, health.offline) == (2, 1, 1)
    assert health.as_dict()["leaders"] == {1: 1}


def test_a_single_broker_cluster_with_rf_1_is_in_sync() -> None:
    health = summarise("public", 1, [1], 1, [part(1, (1,), (1,))], 1)
    assert health.in_sync and health.under_min_isr == 0
