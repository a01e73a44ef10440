"""`hbus status` without a stack: what needs attention, and what the screen shows, from a given state."""
from __future__ import annotations

from dataclasses import replace

from hybridbus.ops.status import BusStatus, attention, render

HEALTHY = BusStatus(
    prometheus="http://127.0.0.1:19090",
    components=[{"name": "vault", "kind": "stack", "healthy": True},
                {"name": "router", "kind": "scrape", "healthy": True},
                {"name": "gateway", "kind": "scrape", "healthy": False}],
    flow=[{"component": "egress", "grade": "public", "destination": "public_cloud", "per_second": 12.5}],
    lag={"router": 0.0, "egress": 3.0},
    dlq={"retained": 4.0, "last_hour": 0.0, "per_second": 0.0},
    rules=[{"component": "router", "role": "live", "version": "2026.11.1"}],
    secrets=[{"component": "router", "token_ttl_seconds": 3100.0, "oldest_secret_seconds": 600.0},
             {"component": "gateway", "token_ttl_seconds": None, "oldest_secret_seconds": 30.0}],
)


def test_a_healthy_bus_needs_no_attention_even_without_a_gateway() -> None:
    assert attention(HEALTHY) == []
    screen = render(HEALTHY)
    assert "all well" in screen and "public_cloud" in screen and "live=2026.11.1" in screen
    assert "gateway DOWN" in screen  # shown, but optional


def test_each_kind_of_trouble_is_named() -> None:
    troubled = replace(
        HEALTHY,
        components=[*HEALTHY.components, {"name": "kafka-public", "kind": "stack", "healthy": False},
                    {"name": "egress", "kind": "scrape", "healthy": False}],
        blocked_last_hour=2.0, forged_last_hour=1.0,
        secrets=[{"component": "router", "token_ttl_seconds": 120.0, "oldest_secret_seconds": 600.0}],
        alerts=[{"alert": "HbusDLQRateHigh", "severity": "warning", "summary": "router sends 0.50 records/s to the DLQ",
                 "labels": {}, "value": 0.5},
                {"alert": "HbusBoundaryBlocked", "severity": "critical", "summary": "said above already",
                 "labels": {}, "value": 2.0}],
    )
    reasons = attention(troubled)
    assert reasons == [
        "kafka-public is not healthy",
        "egress is not healthy",
        "2 non-public record(s) blocked at the boundary in the last hour",
        "1 forged grade header(s) in the last hour",
        "router Vault token expires in 120 s",
        "alert HbusDLQRateHigh: router sends 0.50 records/s to the DLQ",
    ]
    assert troubled.as_dict()["attention"] == reasons
    assert render(troubled).endswith("\n".join(f"  - {r}" for r in reasons))


def test_kafka_partitions_offline_or_below_min_isr_need_attention_at_once() -> None:
    kafka = [{"cluster": "private", "reachable": True, "brokers": 2.0, "brokers_expected": 3.0,
              "under_replicated": 60.0, "under_min_isr": 12.0, "offline": 4.0},
             {"cluster": "public", "reachable": True, "brokers": 1.0, "brokers_expected": 1.0,
              "under_replicated": 0.0, "under_min_isr": 0.0, "offline": 0.0}]
    troubled = replace(HEALTHY, kafka=kafka, alerts=[
        {"alert": "HbusKafkaUnderMinIsr", "severity": "critical", "summary": "said above already", "labels": {},
         "value": 12.0}])
    assert attention(troubled) == [
        "4 partition(s) of the private Kafka cluster offline (no leader)",
        "12 partition(s) of the private Kafka cluster below min ISR: acks=all producers wait",
    ]
    screen = render(troubled)
    assert "private 2/3 brokers, 60 under-replicated, 12 below min ISR, 4 offline" in screen
    assert "public 1/1 brokers, 0 under-replicated" in screen


def test_under_replication_alone_is_shown_but_waits_for_its_alert() -> None:
    kafka = [{"cluster": "private", "reachable": True, "brokers": 3.0, "brokers_expected": 3.0,
              "under_replicated": 5.0, "under_min_isr": 0.0, "offline": 0.0}]
    assert attention(replace(HEALTHY, kafka=kafka)) == []
    assert "5 under-replicated" in render(replace(HEALTHY, kafka=kafka))


def test_a_closed_boundary_is_shown_and_needs_attention() -> None:
    closed = replace(HEALTHY, boundary_closed=["archiver", "egress"],
                     alerts=[{"alert": "HbusBoundaryClosed", "severity": "critical", "summary": "said above already",
                              "labels": {}, "value": 1.0}])
    assert attention(closed) == ["boundary CLOSED (emergency stop): archiver, egress send nothing"]
    assert "boundary: CLOSED (emergency stop) on archiver, egress" in render(closed)
    assert "boundary: open" in render(HEALTHY)
