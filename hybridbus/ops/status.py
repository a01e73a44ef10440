"""The operator's one-screen view of the bus, read from Prometheus's HTTP API and the local stack.

`collect` gathers a `BusStatus`; `attention` says what needs a person; `render` draws it. `hbus status` is
a thin shell around these three, so the rules for "needs attention" are tested without a terminal.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import requests

from hybridbus.adapters.config import Settings
from hybridbus.ops.stack.workers import PROCESSORS

TOKEN_TTL_WARNING = 300.0  # seconds, as HbusVaultTokenExpiring
# Alerts that repeat a check `attention` makes itself (without waiting for a rule evaluation): not listed twice.
CHECKED_DIRECTLY = frozenset({"HbusBoundaryBlocked", "HbusBoundaryClosed", "HbusForgedHeader", "HbusVaultTokenExpiring", "HbusProcessorDown",
                              "HbusKafkaPartitionsOffline", "HbusKafkaUnderMinIsr"})


class PrometheusUnavailable(Exception):
    """Prometheus cannot be reached or refused a query; the status cannot be told."""


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


class PrometheusAPI:
    """The two read endpoints `hbus status` needs: instant queries and the alerts Prometheus holds."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, **params: str) -> Any:
        try:
            response = requests.get(f"{self.url}{path}", params=params, timeout=self.timeout)
            body = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise PrometheusUnavailable(f"prometheus at {self.url} is unreachable: {type(exc).__name__}") from None
        if body.get("status") != "success":
            raise PrometheusUnavailable(f"prometheus refused {path}: {body.get('error', response.status_code)}")
        return body["data"]

    def query(self, expr: str) -> list[Sample]:
        """An instant vector query; NaN samples (a quantile of no traffic) are left out."""
        data = self._get("/api/v1/query", query=expr)
        samples = [Sample(r["metric"], float(r["value"][1])) for r in data["result"]]
        return [s for s in samples if not math.isnan(s.value)]

    def firing_alerts(self) -> list[dict[str, Any]]:
        """Alerts firing now: name, severity, summary, their labels and value (pending ones are left out)."""
        return [{"alert": a["labels"].get("alertname", ""), "severity": a["labels"].get("severity", ""),
                 "summary": a.get("annotations", {}).get("summary", ""), "labels": a["labels"],
                 "value": float(a.get("value", "nan"))}
                for a in self._get("/api/v1/alerts")["alerts"] if a.get("state") == "firing"]


@dataclass(frozen=True)
class BusStatus:
    """Everything on the operator's screen, as plain data (also the `--json` form)."""

    prometheus: str
    components: list[dict[str, Any]] = field(default_factory=list)  # name, kind (stack|scrape), healthy
    flow: list[dict[str, Any]] = field(default_factory=list)  # component, grade, destination, per_second
    lag: dict[str, float] = field(default_factory=dict)  # processor -> records behind
    dlq: dict[str, float | None] = field(default_factory=dict)  # retained, last_hour, per_second
    blocked_last_hour: float = 0.0
    forged_last_hour: float = 0.0
    boundary_closed: list[str] = field(default_factory=list)  # processors holding at the emergency stop
    rules: list[dict[str, str]] = field(default_factory=list)  # component, role, version
    secrets: list[dict[str, Any]] = field(default_factory=list)  # component, token_ttl_seconds, oldest_secret_seconds
    alerts: list[dict[str, Any]] = field(default_factory=list)  # firing only
    # cluster, reachable, brokers, brokers_expected, under_replicated, under_min_isr, offline (the Kafka exporter)
    kafka: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "attention": attention(self)}


def attention(status: BusStatus) -> list[str]:
    """Why a person should look now (empty when all is well); `hbus status` exits 1 when not empty."""
    reasons = [f"{c['name']} is not healthy" for c in status.components if not c["healthy"]
               and (c["kind"] == "stack" or c["name"] in PROCESSORS)]  # the gateway is optional
    if status.boundary_closed:
        reasons.append(f"boundary CLOSED (emergency stop): {', '.join(status.boundary_closed)} send nothing")
    if status.blocked_last_hour > 0:
        reasons.append(f"{status.blocked_last_hour:.0f} non-public record(s) blocked at the boundary in the last hour")
    if status.forged_last_hour > 0:
        reasons.append(f"{status.forged_last_hour:.0f} forged grade header(s) in the last hour")
    reasons += [f"{s['component']} Vault token expires in {s['token_ttl_seconds']:.0f} s" for s in status.secrets
                if s["token_ttl_seconds"] is not None and s["token_ttl_seconds"] < TOKEN_TTL_WARNING]
    for k in status.kafka:
        # Offline or below min ISR stops writes now: said at once, not after the alert's `for`.
        if k.get("offline"):
            reasons.append(f"{k['offline']:.0f} partition(s) of the {k['cluster']} Kafka cluster offline (no leader)")
        if k.get("under_min_isr"):
            reasons.append(f"{k['under_min_isr']:.0f} partition(s) of the {k['cluster']} Kafka cluster below min ISR: "
                           "acks=all producers wait")
    reasons += [f"alert {a['alert']}: {a['summary']}" for a in status.alerts if a["alert"] not in CHECKED_DIRECTLY]
    return reasons


def collect(prometheus: PrometheusAPI, stack: Settings | None = None) -> BusStatus:
    """Read the bus's state now; `stack` adds the local stack's own components and the DLQ topic size."""
    components = _stack_components(stack) if stack else []
    components += [{"name": s.labels.get("component", s.labels.get("job", "")), "kind": "scrape",
                    "healthy": s.value == 1} for s in prometheus.query('max by (component, job) (up{job=~"hbus-.*"})')]

    def one(expr: str) -> float:
        samples = prometheus.query(expr)
        return samples[0].value if samples else 0.0

    secrets: dict[str, dict[str, Any]] = {}
    for s in prometheus.query("min by (component) (hbus_vault_token_ttl_seconds)"):
        secrets.setdefault(s.labels["component"], {})["token_ttl_seconds"] = s.value
    for s in prometheus.query("max by (component) (hbus_secret_age_seconds)"):
        secrets.setdefault(s.labels["component"], {})["oldest_secret_seconds"] = s.value

    return BusStatus(
        prometheus=prometheus.url,
        components=components,
        flow=[{"component": s.labels.get("component", ""), "grade": s.labels.get("grade", ""),
               "destination": s.labels.get("destination", ""), "per_second": s.value}
              for s in prometheus.query("hbus:events_out:rate1m")],
        lag={s.labels["component"]: s.value for s in prometheus.query("hbus:consumer_lag:sum")},
        dlq={"retained": _dlq_retained(stack) if stack else None,
             "last_hour": one("sum(increase(hbus_dlq_total[1h]))"),
             "per_second": one("sum(hbus:dlq:rate5m)")},
        blocked_last_hour=one("sum(hbus:boundary_blocked:increase1h)"),
        forged_last_hour=one("sum(hbus:forged_headers:increase1h)"),
        boundary_closed=sorted(s.labels.get("component", "")
                               for s in prometheus.query("max by (component) (hbus_boundary_closed) == 1")),
        rules=[{"component": s.labels.get("component", ""), "role": s.labels.get("role", ""),
                "version": s.labels.get("version", "")}
               for s in prometheus.query("max by (component, role, version) (hbus_rules_info)")],
        secrets=[{"component": name, "token_ttl_seconds": values.get("token_ttl_seconds"),
                  "oldest_secret_seconds": values.get("oldest_secret_seconds")}
                 for name, values in sorted(secrets.items())],
        alerts=prometheus.firing_alerts(),
        kafka=_kafka(prometheus),
    )


def _kafka(prometheus: PrometheusAPI) -> list[dict[str, Any]]:
    """Per cluster, what the stack's Kafka exporter last saw; partition counts are None while it could not look."""
    clusters: dict[str, dict[str, Any]] = {}
    for s in prometheus.query("max by (cluster) (hbus_kafka_metadata_ok)"):
        clusters[s.labels["cluster"]] = {"cluster": s.labels["cluster"], "reachable": s.value == 1,
                                         "brokers": None, "brokers_expected": None, "under_replicated": None,
                                         "under_min_isr": None, "offline": None}
    for key, expr in (("brokers", "max by (cluster) (hbus_kafka_brokers)"),
                      ("brokers_expected", "max by (cluster) (hbus_kafka_brokers_expected)")):
        for s in prometheus.query(expr):
            if s.labels.get("cluster") in clusters:
                clusters[s.labels["cluster"]][key] = s.value
    for s in prometheus.query('max by (cluster, state) (hbus_kafka_partitions{state!="all"})'):
        if s.labels.get("cluster") in clusters:
            clusters[s.labels["cluster"]][s.labels["state"]] = s.value
    return [clusters[c] for c in sorted(clusters)]


def _stack_components(cfg: Settings) -> list[dict[str, Any]]:
    from hybridbus.ops.stack import manager

    return [{"name": s.name, "kind": "stack", "healthy": s.healthy} for s in manager.status(cfg)]


def _dlq_retained(cfg: Settings) -> float | None:
    """Records the DLQ topic holds now (end minus start of every partition), or None when Kafka is away."""
    from confluent_kafka import KafkaException, TopicPartition

    from hybridbus.adapters import kafka
    from hybridbus.adapters.topology import DLQ_TOPIC, PRIVATE

    try:
        consumer = kafka.consumer(PRIVATE, kafka.admin_credentials(PRIVATE, cfg), group="hbus-status")
    except (OSError, KeyError, KafkaException):  # no local admin login: not the local stack
        return None
    try:
        partitions = consumer.list_topics(DLQ_TOPIC, timeout=5).topics[DLQ_TOPIC].partitions
        total = 0
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(DLQ_TOPIC, p), timeout=5)
            total += high - low
        return float(total)
    except KafkaException:
        return None
    finally:
        consumer.close()


def render(status: BusStatus) -> str:
    """The screen: components, flow, lag and DLQ, the boundary, rules, secrets, then what needs attention."""
    from hybridbus.ops.tables import table

    def num(value: float | None, digits: int = 0) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    parts = [
        f"hybridbus status (from {status.prometheus})",
        "components: " + ", ".join(f"{c['name']} {'up' if c['healthy'] else 'DOWN'}" for c in status.components),
        table(["component", "grade", "destination", "events/s"],
              [[f["component"], f["grade"], f["destination"], num(f["per_second"], 2)]
               for f in sorted(status.flow, key=lambda f: (f["component"], f["grade"], f["destination"]))]
              or [["-", "-", "-", "0"]]),
        "lag: " + (", ".join(f"{name} {num(v)}" for name, v in sorted(status.lag.items())) or "-")
        + f"   DLQ: {num(status.dlq.get('retained'))} held, {num(status.dlq.get('last_hour'))} in the last hour, "
          f"{num(status.dlq.get('per_second'), 2)}/s",
        ("boundary: CLOSED (emergency stop) on " + ", ".join(status.boundary_closed) if status.boundary_closed
         else "boundary: open")
        + f"; last hour: {num(status.blocked_last_hour)} blocked, {num(status.forged_last_hour)} forged headers",
        "kafka: " + ("; ".join(
            f"{k['cluster']} " + (f"{num(k['brokers'])}/{num(k['brokers_expected'])} brokers, "
                                  f"{num(k['under_replicated'])} under-replicated, {num(k['under_min_isr'])} below "
                                  f"min ISR, {num(k['offline'])} offline" if k["reachable"] else "UNREACHABLE")
            for k in status.kafka) or "-"),
        "rules: " + (", ".join(f"{r['component']} {r['role']}={r['version']}" for r in status.rules) or "-"),
        table(["component", "vault token ttl s", "oldest secret s"],
              [[s["component"], num(s["token_ttl_seconds"]), num(s["oldest_secret_seconds"])] for s in status.secrets]
              or [["-", "-", "-"]]),
    ]
    reasons = attention(status)
    parts.append("needs attention:\n" + "\n".join(f"  - {r}" for r in reasons) if reasons else "all well")
    return "\n\n".join(parts)
