"""The consumer-path probe: CPU per message of reading one preloaded topic, by Faust's stream and by confluent-kafka.

It answers "what does the consuming alone cost?" before any decoding: a Faust agent that does nothing with its
batches (on asyncio's loop and on uvloop), a confluent-kafka `consume(num_messages=…)` loop that reads every
field and commits per batch, and hybridbus's own data plane (`hybridbus.runtime.dataplane`) with a handler that
does nothing, inside a Faust worker. Each reader runs in its own process, in a fresh consumer group, and reports
its process CPU time (every thread) from its first batch to its last, divided by the messages in between.

Run against the local stack: `python -m hybridbus.ops.bench.consumer_probe [--count 200000] [--runs 2]`;
prints one JSON document, then a small table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic

from hybridbus.adapters import kafka
from hybridbus.adapters.config import settings
from hybridbus.adapters.loaders import load_catalog
from hybridbus.adapters.topology import DEFAULT_PARTITIONS, PRIVATE

PROBE_TOPIC = "bench.consumer-probe"
BATCH = 1000
WITHIN = 0.02  # seconds, as the router's batches
MODES = ("faust", "faust-uvloop", "confluent", "dataplane")
CHILD_TIMEOUT = 1800.0
IDLE_S = 5.0  # seconds of waiting measured after the last message


class _Meter:
    """Counts messages and takes the process CPU time at the first batch and when `count` were seen.

    Then it measures IDLE_S seconds of the reader waiting for more, so a reader whose timers and pollers cost
    CPU by the second is not mistaken for one that costs it by the message; it prints and ends the process.
    """

    def __init__(self, mode: str, count: int) -> None:
        self.mode, self.count = mode, count
        self.seen = self.batches = 0
        self._start: tuple[float, float, int] | None = None
        self._done = False

    def batch(self, size: int) -> None:
        if self._start is None:
            self._start = (time.process_time(), time.monotonic(), size)
        self.seen += size
        self.batches += 1
        if self.seen < self.count or self._done:
            return
        self._done = True
        cpu0, wall0, first = self._start
        measured = max(self.seen - first, 1)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        result = {"mode": self.mode, "messages": measured, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
                  "mean_batch": round(self.seen / self.batches, 1), "us_per_msg": round(cpu / measured * 1e6, 2)}
        threading.Thread(target=self._idle_then_exit, args=(result,), daemon=True).start()

    def _idle_then_exit(self, result: dict[str, Any]) -> None:
        cpu0 = time.process_time()
        time.sleep(IDLE_S)
        idle = (time.process_time() - cpu0) / IDLE_S
        result["idle_cpu_ms_per_s"] = round(idle * 1000, 1)
        # What the reader spent per message beyond what it spends per second anyway.
        result["us_per_msg_net_of_idle"] = round(max(result["cpu_s"] - idle * result["wall_s"], 0.0)
                                                 / result["messages"] * 1e6, 2)
        print(json.dumps(result), flush=True)
        os._exit(0)


# --- the readers, each run in a child process ----------------------------------------------------------------

def _faust_agent(count: int, uvloop: bool) -> None:
    if uvloop:
        import asyncio

        import uvloop as uv

        asyncio.set_event_loop_policy(uv.EventLoopPolicy())
    from hybridbus.runtime.faustapp import make_app, run_worker

    creds = kafka.admin_credentials(PRIVATE)
    app = make_app(f"bench-probe-{uuid.uuid4().hex[:8]}", creds)
    meter = _Meter("faust-uvloop" if uvloop else "faust", count)

    @app.agent(app.topic(PROBE_TOPIC))
    async def nothing(stream):  # type: ignore[no-untyped-def]
        async for events in stream.take_events(BATCH, WITHIN):
            meter.batch(len(events))

    run_worker(app)


def _confluent_loop(count: int) -> None:
    """consume(num_messages=…) in a loop; every field read once; offsets committed per partition per batch."""
    consumer = kafka.consumer(PRIVATE, kafka.admin_credentials(PRIVATE), group=f"hbus-bench-probe-{uuid.uuid4().hex[:8]}",
                              **{"fetch.max.bytes": 8 << 20})
    consumer.subscribe([PROBE_TOPIC])
    meter = _Meter("confluent", count)
    while True:
        messages = consumer.consume(BATCH, timeout=WITHIN)
        last: dict[tuple[str, int], int] = {}
        for msg in messages:
            if msg.error():
                continue
            msg.key(), msg.value(), msg.headers(), msg.timestamp()
            last[(msg.topic(), msg.partition())] = msg.offset()
        if last:
            consumer.commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()], asynchronous=False)
            meter.batch(len(messages))


def _data_plane(count: int) -> None:
    from hybridbus.runtime.dataplane import DataPlane
    from hybridbus.runtime.faustapp import make_app, run_worker

    creds = kafka.admin_credentials(PRIVATE)
    app = make_app(f"bench-probe-{uuid.uuid4().hex[:8]}", creds)
    meter = _Meter("dataplane", count)

    def handle(messages: list[Any]) -> None:
        for msg in messages:
            msg.key(), msg.value(), msg.headers(), msg.timestamp()
        meter.batch(len(messages))

    DataPlane(app, "bench-probe", creds, [PROBE_TOPIC], handle, batch_size=BATCH, within=WITHIN)
    run_worker(app)


READERS: dict[str, Callable[[int], None]] = {
    "faust": lambda n: _faust_agent(n, uvloop=False),
    "faust-uvloop": lambda n: _faust_agent(n, uvloop=True),
    "confluent": _confluent_loop,
    "dataplane": _data_plane,
}


# --- the driver ----------------------------------------------------------------------------------------------

def preload(count: int) -> int:
    """(Re)create the probe topic and fill it with `count` workload events (about 1 KB, six headers each)."""
    from hybridbus.ops.bench.workload import Workload, new_run_tag

    cfg = settings()
    creds = kafka.admin_credentials(PRIVATE, cfg)
    admin = kafka.admin(PRIVATE, creds)
    if PROBE_TOPIC in admin.list_topics(timeout=10).topics:
        for future in admin.delete_topics([PROBE_TOPIC], operation_timeout=30).values():
            future.result(timeout=60)
        time.sleep(2.0)  # the broker finishes deleting before the name can be created again
    for future in admin.create_topics([NewTopic(PROBE_TOPIC, DEFAULT_PARTITIONS, 1)], operation_timeout=30).values():
        future.result(timeout=60)
    producer = kafka.producer(PRIVATE, creds, **{"batch.num.messages": 10_000})
    workload = Workload(load_catalog(cfg))
    workload.produce(producer, count, new_run_tag(), topic=PROBE_TOPIC)
    return round(workload.mean_bytes())


def run_child(mode: str, count: int, timeout: float) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "hybridbus.ops.bench.consumer_probe", "--child", mode,
                           "--count", str(count)], capture_output=True, text=True, timeout=timeout)
    # A Faust worker sends its stdout through logging, so the result may be on either stream, after a prefix.
    for line in reversed((proc.stdout + proc.stderr).splitlines()):
        if '{"mode"' in line:
            return json.loads(line[line.index('{"mode"'):].strip())
    raise RuntimeError(f"the {mode} reader printed no result (exit {proc.returncode}): {proc.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hybridbus.ops.bench.consumer_probe", description=__doc__)
    parser.add_argument("--count", type=int, default=200_000, help="records preloaded and read by each reader")
    parser.add_argument("--runs", type=int, default=2, help="runs of each reader (the median is reported)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--no-preload", action="store_true", help="read the records already on the probe topic")
    parser.add_argument("--timeout", type=float, default=CHILD_TIMEOUT, help="seconds one reader may take")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        READERS[args.child](args.count)
        return
    mean_bytes = None if args.no_preload else preload(args.count)
    modes = [m for m in args.modes.split(",") if m]
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for _ in range(args.runs):
        for mode in modes:
            result = run_child(mode, args.count, args.timeout)
            print(json.dumps(result), file=sys.stderr, flush=True)  # progress: one line per run
            runs[mode].append(result)
    summary = {m: {"us_per_msg": statistics.median(r["us_per_msg"] for r in rs),
                   "us_per_msg_net_of_idle": statistics.median(r["us_per_msg_net_of_idle"] for r in rs),
                   "idle_cpu_ms_per_s": statistics.median(r["idle_cpu_ms_per_s"] for r in rs),
                   "mean_batch": statistics.median(r["mean_batch"] for r in rs),
                   "runs_us_per_msg": [r["us_per_msg"] for r in rs]}
               for m, rs in runs.items()}
    print(json.dumps({"topic": PROBE_TOPIC, "records": args.count, "record_bytes": mean_bytes, "batch": BATCH,
                      "within_s": WITHIN, "load_avg_1m": os.getloadavg()[0], "readers": summary, "runs": runs}))
    print(f"\n{'reader':<14}{'CPU µs/msg':>12}{'net of idle':>13}{'idle ms/s':>11}{'mean batch':>12}  runs (µs/msg)")
    for mode, f in summary.items():
        print(f"{mode:<14}{f['us_per_msg']:>12.1f}{f['us_per_msg_net_of_idle']:>13.1f}{f['idle_cpu_ms_per_s']:>11.1f}"
              f"{f['mean_batch']:>12.1f}  {f['runs_us_per_msg']}")


if __name__ == "__main__":
    main()
