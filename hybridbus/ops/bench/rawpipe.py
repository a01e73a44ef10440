"""The raw pipe: a confluent-kafka consume → produce loop that copies bytes and decodes nothing.

It is the ceiling of a Python processor on this machine: the same batches, the same acks=all idempotent
producer and the same "acknowledged before committed" order as the router, with no work in between.
Run as `python -m hybridbus.ops.bench.rawpipe SPEC.json`; prints its own CPU and memory figures as JSON.
"""
from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from confluent_kafka import TopicPartition

from hybridbus.adapters import kafka
from hybridbus.adapters.topology import PRIVATE

BATCH = 1000


def pipe(start: dict[str, dict[str, int]], sink: str, count: int, timeout: float = 600.0) -> dict[str, float]:
    """Copy `count` records from the `start` offsets ({topic: {partition: offset}}) to `sink`, same partition."""
    creds = kafka.admin_credentials(PRIVATE)
    consumer = kafka.consumer(PRIVATE, creds, group="hbus-bench-rawpipe", **{"fetch.max.bytes": 8 << 20})
    producer = kafka.producer(PRIVATE, creds, **{"batch.num.messages": 10_000, "queue.buffering.max.messages": 200_000})
    consumer.assign([TopicPartition(topic, int(p), offset) for topic, parts in start.items() for p, offset in parts.items()])
    copied, first_cpu, deadline = 0, None, time.monotonic() + timeout
    while copied < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"raw pipe copied {copied} of {count} records in {timeout:.0f} s")
        batch = consumer.consume(BATCH, timeout=0.5)
        if batch and first_cpu is None:
            first_cpu = time.process_time()
        for msg in batch:
            if msg.error():
                continue
            while True:
                try:
                    producer.produce(sink, msg.value(), msg.key(), msg.partition(), headers=msg.headers())
                    break
                except BufferError:
                    producer.poll(0.05)
            copied += 1
        if batch:
            while producer.flush(5.0) > 0:  # acknowledged before the offsets are committed, as the router does
                pass
            consumer.commit(asynchronous=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    consumer.close()
    return {"copied": copied, "cpu_seconds": time.process_time() - (first_cpu or 0.0),
            "peak_rss_mb": usage.ru_maxrss / 1024}


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    print(json.dumps(pipe(spec["start"], spec["sink"], spec["count"])), flush=True)


if __name__ == "__main__":
    main()
