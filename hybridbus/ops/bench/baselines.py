"""The Java baselines, run from the stack's Kafka jars: Kafka's producer perf test and MirrorMaker 2.

Both log in with the stack's admin login of each cluster (a benchmark harness, not a bus identity); their
properties files hold that login, so they are written 0600 under the state dir and removed after each run.
"""
from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hybridbus.adapters import kafka
from hybridbus.adapters.config import REPO_ROOT, Settings
from hybridbus.adapters.secrets import KafkaCredentials
from hybridbus.adapters.topology import PRIVATE, PUBLIC
from hybridbus.ops.stack.components import kafka_libs
from hybridbus.ops.stack.process import ManagedProcess

JVM = ["-Xms64m", "-Xmx384m", "-XX:+UseSerialGC", "-Djava.awt.headless=true"]
LOG4J = REPO_ROOT / "infra" / "local" / "log4j2.properties"
MIRROR_SOURCE, MIRROR_TARGET = "benchsrc", "benchdst"  # cluster aliases: target topics are "benchsrc.<topic>"
# The producer settings every configuration shares with hybridbus's own producers (hybridbus.adapters.kafka.producer).
# batch.size is librdkafka's default (Java's is 16 KB, which would hold the Java side to 16 records a request).
PRODUCER_SETTINGS = {"acks": "all", "enable.idempotence": "true", "compression.type": "lz4", "linger.ms": "5",
                     "batch.size": "1000000"}

_PERF_LINE = re.compile(r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
                        r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th")


def java(cfg: Settings, main_class: str, *args: str) -> list[str]:
    # The log config names kafka.logs.dir: unset, log4j makes a directory called "${sys:kafka.logs.dir}" here.
    return ["java", *JVM, f"-Dlog4j2.configurationFile={LOG4J}",
            f"-Dkafka.logs.dir={cfg.state_dir / 'bench' / 'logs'}", "-cp", f"{kafka_libs(cfg)}/*", main_class, *args]


def sasl_lines(creds: KafkaCredentials, prefix: str = "") -> list[str]:
    return [f"{prefix}security.protocol=SASL_PLAINTEXT", f"{prefix}sasl.mechanism=SCRAM-SHA-512",
            f'{prefix}sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required '
            f'username="{creds.username}" password="{creds.password}";']


@contextmanager
def private_properties(path: Path, lines: list[str]) -> Iterator[Path]:
    """A properties file readable by the owner only, deleted when the block ends."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class PerfTestResult:
    rate: float
    mb_per_s: float
    p99_ms: float
    cpu_seconds: float
    peak_rss_mb: float


def producer_perf_test(cfg: Settings, topic: str, count: int, record_size: int) -> PerfTestResult:
    """`kafka-producer-perf-test`: `count` records of `record_size` bytes to `topic`, as fast as the broker takes them."""
    lines = sasl_lines(kafka.admin_credentials(PRIVATE, cfg)) + [f"{k}={v}" for k, v in PRODUCER_SETTINGS.items()]
    with private_properties(cfg.state_dir / "bench" / "perf-test.properties", lines) as props:
        argv = java(cfg, "org.apache.kafka.tools.ProducerPerformance", "--topic", topic, "--num-records", str(count),
                    "--record-size", str(record_size), "--throughput", "-1", "--producer.config", str(props),
                    "--producer-props", f"bootstrap.servers={cfg.private_bootstrap}")
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        output = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)  # reaped here, so its own CPU time and peak memory are known
        proc.returncode = os.waitstatus_to_exitcode(status)
    matches = _PERF_LINE.findall(output)
    if proc.returncode != 0 or not matches:
        raise RuntimeError(f"kafka-producer-perf-test failed (exit {proc.returncode}): {output.strip()[-300:]}")
    _sent, rate, mb, _avg, _max, _p50, _p95, p99 = matches[-1]
    return PerfTestResult(float(rate), float(mb), float(p99), usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def mirror_maker_lines(cfg: Settings, source_topic: str) -> list[str]:
    """A dedicated MirrorMaker 2 copying one topic of the private cluster to the public one, bytes as they are."""
    lines = [f"clusters={MIRROR_SOURCE}, {MIRROR_TARGET}",
             f"{MIRROR_SOURCE}.bootstrap.servers={cfg.private_bootstrap}",
             f"{MIRROR_TARGET}.bootstrap.servers={cfg.public_bootstrap}",
             *sasl_lines(kafka.admin_credentials(PRIVATE, cfg), f"{MIRROR_SOURCE}."),
             *sasl_lines(kafka.admin_credentials(PUBLIC, cfg), f"{MIRROR_TARGET}."),
             f"{MIRROR_SOURCE}->{MIRROR_TARGET}.enabled=true",
             f"{MIRROR_SOURCE}->{MIRROR_TARGET}.topics={re.escape(source_topic)}",
             f"{MIRROR_TARGET}->{MIRROR_SOURCE}.enabled=false",
             "tasks.max=2", "refresh.topics.interval.seconds=2", "sync.topic.configs.enabled=false",
             "sync.topic.acls.enabled=false", "emit.heartbeats.enabled=false", "emit.checkpoints.enabled=false",
             "sync.group.offsets.enabled=false", "replication.factor=1", "offset-syncs.topic.replication.factor=1",
             "heartbeats.topic.replication.factor=1", "checkpoints.topic.replication.factor=1",
             "offset.storage.replication.factor=1", "status.storage.replication.factor=1",
             "config.storage.replication.factor=1", "offset.flush.interval.ms=1000",
             # Find the connectors through their service files, not by scanning every jar (half a minute here).
             "plugin.discovery=service_load", f"{MIRROR_TARGET}.plugin.discovery=service_load"]
    lines += [f"{MIRROR_TARGET}.producer.{k}={v}" for k, v in PRODUCER_SETTINGS.items()]
    return lines


@contextmanager
def mirror_maker(cfg: Settings, source_topic: str) -> Iterator[ManagedProcess]:
    """MirrorMaker 2 running (dedicated mode) for the block; stopped, its properties file removed, after it."""
    process = ManagedProcess("bench-mirror-maker", cfg.state_dir / "run", cfg.state_dir / "logs")
    path = cfg.state_dir / "bench" / "mirror-maker.properties"
    with private_properties(path, mirror_maker_lines(cfg, source_topic)) as props:
        process.start(java(cfg, "org.apache.kafka.connect.mirror.MirrorMaker", str(props), "--clusters", MIRROR_TARGET))
        try:
            yield process
        finally:
            process.stop(timeout=20)


def mirrored_topic(source_topic: str) -> str:
    return f"{MIRROR_SOURCE}.{source_topic}"
