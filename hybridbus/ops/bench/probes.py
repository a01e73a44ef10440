"""What the benchmark reads while a configuration runs: records on topics, and each process's CPU and memory.

Counts come from partition end offsets (no consuming), process figures from /proc, so measuring costs the
measured processes nothing.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from hybridbus.adapters import kafka

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Answers of a partition whose leader is being elected: they pass within seconds.
ELECTING = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                      KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TRANSPORT, KafkaError.REQUEST_TIMED_OUT})


class OffsetCounter:
    """Sum of the end offsets of some topics of one cluster: how many records they ever received.

    One ListOffsets request per poll covers every partition, so polling costs the brokers next to nothing.
    """

    def __init__(self, cluster: str, topics: Iterable[str]) -> None:
        self._admin = kafka.admin(cluster, kafka.admin_credentials(cluster))
        metadata = self._admin.list_topics(timeout=10)
        self._partitions: list[TopicPartition] = []
        for topic in topics:
            if topic not in metadata.topics:
                raise RuntimeError(f"topic {topic} does not exist on the {cluster} cluster")
            self._partitions += [TopicPartition(topic, p) for p in metadata.topics[topic].partitions]

    def ends(self, patience: float = 30.0) -> dict[tuple[str, int], int]:
        """End offsets by partition. A topic created a moment ago (MirrorMaker 2's target, a topic after a broker
        restart) may answer "not leader" until its leader is elected: retriable errors are waited out."""
        deadline = time.monotonic() + patience
        while True:
            futures = self._admin.list_offsets({tp: OffsetSpec.latest() for tp in self._partitions},
                                               request_timeout=10)
            try:
                return {(tp.topic, tp.partition): future.result().offset for tp, future in futures.items()}
            except KafkaException as exc:
                error = exc.args[0]
                if not (error.retriable() or error.code() in ELECTING) or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def total(self) -> int:
        return sum(self.ends().values())


@dataclass(frozen=True)
class Span:
    """From the first poll that saw records arrive to the one that saw the last: how many, how long, and what
    each watched process spent meanwhile (CPU seconds) and at most held (MB), by name."""

    seconds: float
    count: int
    cpu_seconds: dict[str, float]
    peak_rss_mb: dict[str, float]

    @property
    def rate(self) -> float:
        return self.count / max(self.seconds, 1e-3)


def await_records(counter: OffsetCounter, baseline: int, count: int, timeout: float,
                  watched: Mapping[str, int] | None = None,
                  on_progress: Callable[[int], None] = lambda done: None, interval: float = 0.2) -> Span:
    """Poll until `count` records arrived after `baseline`.

    The clock starts at the first poll that sees anything new, so the start-up of the process under test is
    not counted: the span covers the records after that poll. `watched` ({name: pid}) are sampled at both ends.
    """
    watched = dict(watched or {})
    deadline = time.monotonic() + timeout
    first, first_done, cpu_at_first = None, 0, {}
    while True:
        done = counter.total() - baseline
        now = time.monotonic()
        if done > 0 and first is None:
            first, first_done = now, done
            cpu_at_first = {name: sample_process(pid).cpu_seconds for name, pid in watched.items()}
        on_progress(done)
        if done >= count:
            assert first is not None
            end = {name: sample_process(pid) for name, pid in watched.items()}
            return Span(now - first, max(count - first_done, 1),
                        {name: end[name].cpu_seconds - cpu_at_first[name] for name in watched},
                        {name: end[name].peak_rss_mb for name in watched})
        if now > deadline:
            raise TimeoutError(f"only {done} of {count} records arrived within {timeout:.0f} s")
        dead = [name for name, pid in watched.items() if not process_alive(pid)]
        if dead:
            raise RuntimeError(f"{', '.join(dead)} ended after {done} of {count} records")
        time.sleep(interval)


@dataclass(frozen=True)
class ProcessSample:
    cpu_seconds: float
    peak_rss_mb: float


def sample_process(pid: int) -> ProcessSample:
    """CPU seconds used so far (user + system, children included) and the peak resident memory (VmHWM)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    peak_kb = 0
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                peak_kb = int(line.split()[1])
    return ProcessSample((utime + stime + cutime + cstime) / CLOCK_TICKS, peak_kb / 1024)


def process_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie is not running)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def group_lag(cluster: str, group: str, topics: Iterable[str]) -> int:
    """Records of `topics` not yet committed by consumer group `group` (a partition never committed counts whole)."""
    consumer: Consumer = kafka.consumer(cluster, kafka.admin_credentials(cluster), group=group)
    try:
        metadata = consumer.list_topics(timeout=10)
        partitions = [TopicPartition(t, p) for t in topics for p in metadata.topics[t].partitions]
        lag = 0
        for tp in consumer.committed(partitions, timeout=10):
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            lag += high - (tp.offset if tp.offset >= 0 else low)
        return lag
    finally:
        consumer.close()
