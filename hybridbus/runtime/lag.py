"""Consumer lag of a processor, per topic and partition, measured from Kafka itself and exported as a gauge.

Lag is the high watermark minus the group's committed offset: what a crash would replay plus what is not yet
read. It is measured beside the consumer (its own client, no group membership), so it never disturbs a
rebalance and still reports partitions no worker of this process owns. The group is the Faust app's id, which
the data plane (`hybridbus.runtime.dataplane`) consumes and commits under.
"""
from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from hybridbus.adapters import kafka, metrics
from hybridbus.adapters.secrets import KafkaCredentials
from hybridbus.adapters.topology import PRIVATE

log = logging.getLogger("hbus.lag")

LAG_INTERVAL = 10.0  # seconds between measurements: twice per minute is plenty for a lag-growing alert


class LagMeter:
    """Reads the committed offsets of one consumer group and the end of its topics (a name starting with `^` is a
    pattern, as the data plane subscribes: topics created later are measured too)."""

    def __init__(self, component: str, group: str, creds: KafkaCredentials, topics: Sequence[str],
                 cluster: str = PRIVATE) -> None:
        self.component = component
        self.topics = sorted(topics)
        self._patterns = [re.compile(t) for t in self.topics if t.startswith("^")]
        # Same group id, but this client never subscribes: it only asks for the group's committed offsets.
        self._client: Consumer = kafka.consumer(cluster, creds, group=group)

    def partitions(self) -> list[TopicPartition]:
        meta = self._client.list_topics(timeout=10).topics
        names = sorted(t for t in meta if t in self.topics or any(p.match(t) for p in self._patterns))
        return [TopicPartition(t, p) for t in names for p in sorted(meta[t].partitions)]

    def measure(self) -> dict[tuple[str, int], int]:
        """Lag of every partition now, also set on `hbus_consumer_lag`."""
        lags: dict[tuple[str, int], int] = {}
        for tp in self._client.committed(self.partitions(), timeout=10):
            low, high = self._client.get_watermark_offsets(tp, timeout=10, cached=False)
            start = tp.offset if tp.offset >= 0 else low  # nothing committed yet: all retained records wait
            lags[(tp.topic, tp.partition)] = max(0, high - start)
        for (topic, partition), lag in lags.items():
            metrics.CONSUMER_LAG.labels(self.component, topic, str(partition)).set(lag)
        return lags


def watch_lag(app: Any, component: str, creds: KafkaCredentials, topics: Sequence[str]) -> LagMeter:
    """Measure the lag of the Faust `app`'s group (its data plane's, or its agents') on `topics` every
    LAG_INTERVAL seconds."""
    meter = LagMeter(component, app.conf.id, creds, topics)

    @app.timer(LAG_INTERVAL)
    async def measure_lag() -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(None, meter.measure)
        except KafkaException as exc:  # the next round retries; a stale gauge is better than a dead timer
            log.warning("event=lag_unavailable error=%s", type(exc).__name__)

    return meter
