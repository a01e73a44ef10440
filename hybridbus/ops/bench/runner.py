"""One benchmark run: every configuration, several times each, on the same workload and the same stack.

Order matters on a shared machine with one stack: a warm-up that sends traffic through router and egress until
the brokers' JVMs have compiled their hot paths (nothing is measured meanwhile), the per-event CPU of the steps
(no broker), the Java baselines, the department client publishing (router stopped meanwhile), then hybridbus end
to end (router and egress, both caught up), then rounds where one preloaded backlog is drained by the raw pipe and
then by the router alone, then two router workers started side by side on a backlog. Egress is stopped for the
router-alone rounds; it drains what they left when the processors are restored at the end.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic

from hybridbus.adapters import kafka
from hybridbus.adapters.config import Settings
from hybridbus.adapters.loaders import load_catalog, load_rules
from hybridbus.adapters.topology import DEFAULT_PARTITIONS, PRIVATE, PUBLIC, replication_for
from hybridbus.ops.bench import baselines
from hybridbus.ops.bench import client as client_bench
from hybridbus.ops.bench import step as step_bench
from hybridbus.ops.bench.probes import OffsetCounter, Span, await_records, group_lag
from hybridbus.ops.bench.workload import Expected, Workload, new_run_tag
from hybridbus.ops.demo import ensure_live_ruleset
from hybridbus.ops.stack import workers
from hybridbus.ops.stack.process import ManagedProcess
from routing import headers as H

PERF_TOPIC = "bench.perf"
PIPE_TOPIC = "bench.rawpipe"
MIRROR_PREFIX = "bench.mirror."
MIRROR_TOPICS = ("bench", "mm2-", "heartbeats")  # what a MirrorMaker 2 run leaves on either cluster
SETTLE_TIMEOUT = 600.0  # seconds for the processors to catch up between runs
SECOND_ROUTER = "bench-router-2"
ARRIVAL_POLL_S = 0.005  # seconds the latency watcher waits per read of the public side

PERF, CLIENT, RAW, MIRROR, ROUTER, ROUTER2, E2E, LATENCY, LATENCY_FIXED = (
    "kafka-producer-perf-test", "client-publish", "raw-pipe", "mirror-maker-2", "router", "router-2-workers",
    "end-to-end", "end-to-end-latency", "end-to-end-latency-fixed")
CONFIGS = (PERF, CLIENT, RAW, MIRROR, ROUTER, ROUTER2, E2E, LATENCY, LATENCY_FIXED)


@dataclass(frozen=True)
class Options:
    events: int = 200_000
    runs: int = 3
    latency_seconds: float = 20.0
    latency_share: float = 0.5  # of the end-to-end maximum rate
    latency_rate: float = 2_000.0  # events/s of the fixed-rate latency runs (0: none), the rate a target names
    # Seconds of unmeasured traffic through router and egress first: a broker started minutes before runs its
    # request path interpreted and compiles it meanwhile, on the cores the bench measures (0: no warm-up).
    warmup_seconds: float = 90.0

    @property
    def timeout(self) -> float:
        """Seconds one configuration run may take to see all its records (a stuck run fails the bench)."""
        return 60 + self.events / 250


@dataclass
class Figures:
    """What one run of one configuration measured."""

    events_per_s: float
    cpu_s_per_100k: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_span(cls, span: Span, events: int, records: int, **extra: float) -> Figures:
        """Figures of a span that counted `records` output records for `events` input events."""
        per_event = events / records
        handled = span.count * per_event
        return cls(span.rate * per_event, {n: round(c / handled * 100_000, 2) for n, c in span.cpu_seconds.items()},
                   {n: round(r, 1) for n, r in span.peak_rss_mb.items()}, dict(extra))


Progress = Callable[[str, int, int], None]  # (task label, done, total)


class Bench:
    def __init__(self, cfg: Settings, options: Options, progress: Progress) -> None:
        self.cfg, self.options, self.progress = cfg, options, progress
        self.catalog = load_catalog(cfg)
        self.workload = Workload(self.catalog)
        # The shipped set, signed, in force: the expected outputs are those of the set the router follows.
        self.expected: Expected = self.workload.expected(options.events, ensure_live_ruleset(cfg))
        self.admin = {c: kafka.admin(c, kafka.admin_credentials(c, cfg)) for c in (PRIVATE, PUBLIC)}
        # hybridbus.adapters.kafka's producer settings (linger 5 ms), as a department's publisher sends them.
        self.producer = kafka.producer(PRIVATE, kafka.admin_credentials(PRIVATE, cfg), **{"batch.num.messages": 10_000})
        self.results: dict[str, list[Figures]] = {name: [] for name in CONFIGS}
        self.steps: dict[str, step_bench.StepFigure] = {}
        self.private_graded = sorted(self.expected.graded)
        self.egress_sources = sorted(self.expected.public)

    # --- the whole run ------------------------------------------------------------------------------

    def run(self) -> dict[str, list[Figures]]:
        was_running = tuple(s.name for s in workers.status(self.cfg) if s.running)
        self._create_topics(PRIVATE, [PERF_TOPIC, PIPE_TOPIC])
        try:
            workers.start(self.cfg, ("router", "egress"))
            self._settle()
            # The other processors (archiver, …) would compete for the cores; they are restored at the end.
            workers.stop(self.cfg, tuple(n for n in workers.PROCESSORS if n not in ("router", "egress")))
            self._warm_up()
            self._steps()
            for i in range(self.options.runs):
                self._perf_test(i)
            self._client()
            for i in range(self.options.runs):
                self._mirror_maker(i)
            for i in range(self.options.runs):
                self._end_to_end(i)
            for i in range(self.options.runs):
                self._latency(i)
            self._fixed_latency()
            workers.stop(self.cfg, ("egress",))
            for i in range(self.options.runs):
                self._raw_pipe_then_router(i)
            for i in range(self.options.runs):
                self._two_routers(i)
        finally:
            self._second_router().stop(timeout=20)
            self._delete_topics(PRIVATE, [PERF_TOPIC, PIPE_TOPIC])
            workers.start(self.cfg, tuple(dict.fromkeys(("router", "egress", *was_running))))
        return self.results

    # --- configurations -----------------------------------------------------------------------------

    def _warm_up(self) -> None:
        """Backlogs of the workload through router and egress, each routed and copied before the next, until
        `warmup_seconds` have passed. Measured on a stack started minutes before, the first phases ran on brokers
        still compiling: the client's rate rose from ~26,000 to ~46,000 events/s over its first 40 s of traffic,
        and the router step read 24.4 µs/event beside them against 15.5 on a quiet machine."""
        if self.options.warmup_seconds <= 0:
            return
        started, rounds = time.monotonic(), 0
        while time.monotonic() - started < self.options.warmup_seconds:
            label = f"warm-up {rounds + 1} (not measured)"
            self._preload(label)
            self._settle()
            rounds += 1

    def _perf_test(self, i: int) -> None:
        label = self._label(PERF, i)
        self.progress(label, 0, 1)
        result = baselines.producer_perf_test(self.cfg, PERF_TOPIC, self.options.events,
                                              round(self.workload.mean_bytes()))
        self.progress(label, 1, 1)
        self.results[PERF].append(Figures(
            result.rate, {"perf-test": round(result.cpu_seconds / self.options.events * 100_000, 2)},
            {"perf-test": round(result.peak_rss_mb, 1)}, {"mb_per_s": result.mb_per_s, "p99_ms": result.p99_ms}))

    def _steps(self) -> None:
        """CPU per event of the router step and the guard step, in this process, without a broker."""
        records = min(self.options.events, step_bench.RECORDS)
        label = f"steps ({step_bench.RUNS} runs of {records:,} records)"
        done = iter(range(1, 2 * step_bench.RUNS + 1))
        self.progress(label, 0, 2 * step_bench.RUNS)
        self.steps = step_bench.measure(self.cfg, records=records,
                                        progress=lambda _: self.progress(label, next(done), 2 * step_bench.RUNS))
        self.progress(label, 2 * step_bench.RUNS, 2 * step_bench.RUNS)

    def _client(self) -> None:
        """The department client publishing 1 KB events, `publish_many` in batches then `flush()`; the router waits
        meanwhile, so that it does not take the cores from the client, and routes what the client sent afterwards."""
        events = min(self.options.events, client_bench.EVENTS)
        workers.stop(self.cfg, ("router",))
        try:
            for i in range(self.options.runs):
                label = self._label(CLIENT, i)
                self.progress(label, 0, 1)
                run = client_bench.measure(self.cfg, events)
                self.progress(label, 1, 1)
                cpu = {"client": round(run.cpu_seconds / events * 100_000, 2)}
                extra = {"cpu_us_per_event": round(run.cpu_us_per_event, 1),
                         "caller_cpu_us_per_event": round(run.caller_cpu_us_per_event, 1)}
                self.results[CLIENT].append(Figures(run.events_per_s, cpu, extra=extra))
        finally:
            workers.start(self.cfg, ("router",))
        self._settle()

    def _mirror_maker(self, i: int) -> None:
        n = self.options.events
        source = f"{MIRROR_PREFIX}{uuid.uuid4().hex[:6]}"
        before = {c: set(self.admin[c].list_topics(timeout=10).topics) for c in (PRIVATE, PUBLIC)}
        self._create_topics(PRIVATE, [source])
        try:
            self._preload(self._label(MIRROR, i) + " (load)", topic=source)
            with baselines.mirror_maker(self.cfg, source) as process:
                pid = process.pid()
                assert pid is not None
                counter = self._await_topic(PUBLIC, baselines.mirrored_topic(source), process)
                span = await_records(counter, 0, n, self.options.timeout, {"mirror-maker-2": pid},
                                     self._progress_for(self._label(MIRROR, i), n))
            self.results[MIRROR].append(Figures.from_span(span, n, n))
        finally:
            for cluster in (PRIVATE, PUBLIC):
                created = set(self.admin[cluster].list_topics(timeout=10).topics) - before[cluster]
                self._delete_topics(cluster, sorted(t for t in created if t.startswith(MIRROR_TOPICS)))

    def _end_to_end(self, i: int) -> None:
        """A backlog on the ingress topics, the router started on it while egress runs: until all is public."""
        n, label = self.options.events, self._label(E2E, i)
        workers.stop(self.cfg, ("router",))
        counter = OffsetCounter(PUBLIC, self.egress_sources)
        baseline = counter.total()
        self._preload(label + " (load)")
        pids = {"egress": workers.process(self.cfg, "egress").pid(), **self._start(("router",))}
        span = await_records(counter, baseline, self.expected.public_total, self.options.timeout, pids,
                             self._progress_for(label, self.expected.public_total))
        self.results[E2E].append(Figures.from_span(span, n, self.expected.public_total))
        self._settle()

    def _fixed_latency(self) -> None:
        """The paced runs at the fixed rate a latency target is stated for (none when `latency_rate` is 0)."""
        if self.options.latency_rate > 0:
            for i in range(self.options.runs):
                self._latency(i, LATENCY_FIXED, self.options.latency_rate)

    def _latency(self, i: int, config: str = LATENCY, rate: float | None = None) -> None:
        """Paced traffic at `rate` (default: a share of the end-to-end maximum); latency from occurred-at to arrival
        on the public side."""
        if rate is None:
            rate = self.options.latency_share * statistics.median(f.events_per_s for f in self.results[E2E])
        count = max(100, int(rate * self.options.latency_seconds))
        expected = self.workload.expected(count, load_rules(self.cfg)).public_total
        label = self._label(config, i)
        tag = new_run_tag()
        with _ArrivalWatch(self.egress_sources, tag) as watch:
            sender = threading.Thread(target=self.workload.produce, args=(self.producer, count, tag),
                                      kwargs={"rate": rate}, daemon=True)
            sender.start()
            deadline = time.monotonic() + self.options.latency_seconds + 120
            while len(watch.latencies_ms) < expected and time.monotonic() < deadline:
                self.progress(label, len(watch.latencies_ms), expected)
                time.sleep(0.2)
            sender.join()
        latencies = sorted(watch.latencies_ms)
        self.progress(label, len(latencies), expected)
        if len(latencies) < expected:
            raise TimeoutError(f"{label}: only {len(latencies)} of {expected} public records arrived")
        routed = sorted(watch.routed_ms)
        self.results[config].append(Figures(rate, extra={
            "p50_ms": _percentile(latencies, 50), "p99_ms": _percentile(latencies, 99), "max_ms": latencies[-1],
            "routed_p50_ms": _percentile(routed, 50), "routed_p99_ms": _percentile(routed, 99)}))
        self._settle()

    def _raw_pipe_then_router(self, i: int) -> None:
        """One backlog, two readers: the raw pipe copies it to a bench topic, then the router routes it."""
        self._settle_router()
        workers.stop(self.cfg, ("router",))
        start = OffsetCounter(PRIVATE, self.workload.topics).ends()
        self._preload(self._label(RAW, i) + " (load)")
        self.results[RAW].append(self._raw_pipe(i, start))
        self.results[ROUTER].append(self._routers(self._label(ROUTER, i), ("router",)))
        workers.stop(self.cfg, ("router",))

    def _raw_pipe(self, i: int, start: dict[tuple[str, int], int]) -> Figures:
        n = self.options.events
        spec_file = self.cfg.state_dir / "bench" / "rawpipe.json"
        spec_file.parent.mkdir(parents=True, exist_ok=True)
        spec = {"sink": PIPE_TOPIC, "count": n, "start": {}}
        for (topic, partition), offset in start.items():
            spec["start"].setdefault(topic, {})[str(partition)] = offset
        spec_file.write_text(json.dumps(spec))
        counter = OffsetCounter(PRIVATE, [PIPE_TOPIC])
        baseline = counter.total()
        proc = subprocess.Popen([sys.executable, "-m", "hybridbus.ops.bench.rawpipe", str(spec_file)],
                                stdout=subprocess.PIPE, text=True)
        span = await_records(counter, baseline, n, self.options.timeout, None, self._progress_for(self._label(RAW, i), n))
        output, _ = proc.communicate(timeout=120)
        own = json.loads(output.strip().splitlines()[-1])
        return Figures(span.rate, {"raw-pipe": round(own["cpu_seconds"] / n * 100_000, 2)},
                       {"raw-pipe": round(own["peak_rss_mb"], 1)})

    def _two_routers(self, i: int) -> None:
        label = self._label(ROUTER2, i)
        self.results[ROUTER2].append(self._backlog_routed(label, ("router", SECOND_ROUTER)))

    def _backlog_routed(self, label: str, names: tuple[str, ...]) -> Figures:
        """A backlog preloaded while no router runs, then routed by the named workers, started side by side."""
        self._settle_router()
        self._stop(names)
        self._preload(label + " (load)")
        figures = self._routers(label, names)
        self._stop(names)
        return figures

    def _routers(self, label: str, names: tuple[str, ...]) -> Figures:
        """Route the backlog preloaded on the ingress topics with the named router workers (one consumer group).

        With more than one, the clock starts once the group holds them all (`await_records` counts from its first
        poll, here the first after that): what the first to join routed alone meanwhile is not timed. (Before,
        the backlog was produced while the workers ran, so the bench's own producer, on the same two cores, set
        the pace: two workers / one 0.61–1.76 in runs of one day.)
        """
        n, outputs = self.options.events, self.expected.graded_total
        counter = OffsetCounter(PRIVATE, self.private_graded)
        baseline = counter.total()
        pids = self._start(names)
        if len(names) > 1:
            self._await_group_members("hbus-router", len(names))
        span = await_records(counter, baseline, outputs, self.options.timeout, pids, self._progress_for(label, outputs))
        self._settle_router()
        return Figures.from_span(span, n, outputs)

    # --- helpers ------------------------------------------------------------------------------------

    def _start(self, names: tuple[str, ...]) -> dict[str, int]:
        """Start the named workers side by side: every process is launched before any is waited for."""
        pids: dict[str, int] = {}
        if SECOND_ROUTER in names:
            process = self._second_router()
            # The first worker holds the router's metrics port; the second asks the OS for any free one.
            process.start([sys.executable, "-m", "processors.router"], env={"HBUS_PORT_ROUTER_METRICS": "0"})
        managed = tuple(name for name in names if name != SECOND_ROUTER)
        workers.start(self.cfg, managed)
        for name in names:
            pid = (self._second_router() if name == SECOND_ROUTER else workers.process(self.cfg, name)).pid()
            assert pid is not None
            pids[name] = pid
        return pids

    def _stop(self, names: tuple[str, ...]) -> None:
        if SECOND_ROUTER in names:
            self._second_router().stop(timeout=20)
        workers.stop(self.cfg, tuple(name for name in names if name != SECOND_ROUTER))

    def _second_router(self) -> ManagedProcess:
        return ManagedProcess(SECOND_ROUTER, self.cfg.state_dir / "run", self.cfg.state_dir / "logs")

    def _preload(self, label: str, topic: str | None = None) -> None:
        self.progress(label, 0, 1)
        self.workload.produce(self.producer, self.options.events, new_run_tag(), topic=topic)
        self.progress(label, 1, 1)

    def _settle(self) -> None:
        """Wait until router and egress have committed everything there is, so the next run starts level."""
        self._settle_router()
        _wait_for(lambda: group_lag(PRIVATE, "hbus-egress", self.egress_sources) == 0, "egress to catch up")

    def _settle_router(self) -> None:
        _wait_for(lambda: group_lag(PRIVATE, "hbus-router", self.workload.topics) == 0, "the router to catch up")

    def _await_group_members(self, group: str, members: int) -> None:
        def ready() -> bool:
            description = self.admin[PRIVATE].describe_consumer_groups([group])[group].result(timeout=10)
            return len(description.members) == members and str(description.state).endswith("STABLE")
        _wait_for(ready, f"{members} members in {group}")

    def _await_topic(self, cluster: str, topic: str, process: ManagedProcess) -> OffsetCounter:
        def exists() -> bool:
            if not process.running():
                raise RuntimeError(f"MirrorMaker 2 ended before it created {topic}; see {process.log_file}")
            return topic in self.admin[cluster].list_topics(timeout=10).topics
        _wait_for(exists, f"MirrorMaker 2 to create {topic}")
        return OffsetCounter(cluster, [topic])

    def _create_topics(self, cluster: str, names: list[str]) -> None:
        existing = set(self.admin[cluster].list_topics(timeout=10).topics)
        # Replicated like the bus's own topics (RF 3, min ISR 2 on three brokers), so baselines pay the same acks.
        replication = replication_for(self.cfg.brokers(cluster))
        new = [NewTopic(name, DEFAULT_PARTITIONS, replication.factor,
                        config={"min.insync.replicas": str(replication.min_insync)})
               for name in names if name not in existing]
        for future in self.admin[cluster].create_topics(new, operation_timeout=30).values() if new else ():
            future.result(timeout=60)

    def _delete_topics(self, cluster: str, names: list[str]) -> None:
        existing = set(self.admin[cluster].list_topics(timeout=10).topics)
        doomed = [name for name in names if name in existing]
        for future in self.admin[cluster].delete_topics(doomed, operation_timeout=30).values() if doomed else ():
            future.result(timeout=60)

    def _label(self, config: str, i: int) -> str:
        return f"{config} {i + 1}/{self.options.runs}"

    def _progress_for(self, label: str, total: int) -> Callable[[int], None]:
        return lambda done: self.progress(label, min(done, total), total)


class _ArrivalWatch:
    """Tails public topics from their current ends and keeps, for each record of one run, arrival − occurred-at."""

    def __init__(self, topics: list[str], run_tag: str) -> None:
        self.latencies_ms: list[int] = []
        self.routed_ms: list[int] = []  # occurred-at to the router's batch: the router's share of the latency
        self._prefix = f"{run_tag}-".encode()
        self._consumer = kafka.consumer(PUBLIC, kafka.admin_credentials(PUBLIC), group=f"hbus-bench-{run_tag}",
                                        **{"fetch.wait.max.ms": 20})
        metadata = self._consumer.list_topics(timeout=10)
        parts = [TopicPartition(t, p) for t in topics for p in metadata.topics[t].partitions]
        self._consumer.assign([TopicPartition(tp.topic, tp.partition,
                                              self._consumer.get_watermark_offsets(tp, timeout=10)[1]) for tp in parts])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tail, daemon=True)

    def __enter__(self) -> _ArrivalWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()

    def _tail(self) -> None:
        while not self._stop.is_set():
            # consume() waits for its whole timeout unless 500 records come first: a short one, so a record's
            # arrival is taken within a few ms of it being readable, not up to 100 ms later.
            for msg in self._consumer.consume(500, timeout=ARRIVAL_POLL_S):
                arrived = int(time.time() * 1000)
                if msg.error():
                    continue
                headers = dict(msg.headers() or [])
                if headers.get(H.EVENT_ID, b"").startswith(self._prefix) and headers.get(H.OCCURRED_AT):
                    occurred = int(headers[H.OCCURRED_AT])
                    self.latencies_ms.append(arrived - occurred)
                    self.routed_ms.append(int(headers.get(H.ROUTED_AT, occurred)) - occurred)


def _percentile(ordered: list[int], pct: float) -> float:
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return float(ordered[index])


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = SETTLE_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.5)

