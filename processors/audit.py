"""The audit writer (Faust): chains every decision of `_hbus.decisions` onto the one-partition `_hbus.audit`.

Every CHECKPOINT_EVERY entries, and at least every CHECKPOINT_INTERVAL seconds, a checkpoint signed in Vault
Transit closes a segment, which is then archived to the audit bucket. On start the writer reads the chain's
tail back: it goes on from the last hash and skips every decision already chained, so a crash never forks the
chain and never chains a decision twice.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from hybridbus.adapters import kafka, metrics
from hybridbus.adapters.exceptions import DeliveryError
from hybridbus.adapters.s3 import s3_client
from hybridbus.adapters.topology import AUDIT_TOPIC, DECISIONS_TOPIC, PRIVATE
from hybridbus.adapters.vault import VaultSession
from hybridbus.runtime.audit import CHECKPOINT, Chain, canonical, checkpoint_message
from hybridbus.runtime.auditstore import ARCHIVE_MAX_ENTRIES, AuditArchive, read_chain, read_tail
from hybridbus.runtime.faustapp import exit_on_error, kafka_login, login, make_app, serve

log = logging.getLogger("hbus.audit")

# A `_hbus.decisions` record carries up to 400 decisions, so batches and buffers are counted in few records:
# a backlog is then chained at most 10,000 entries at a time (2,000 records a batch could hold 800,000).
# The writer's memory still grows with the backlog it starts behind (README, Known limits).
BATCH_SIZE = 25
BATCH_WITHIN = 0.2
BUFFERED_RECORDS = 100
CHECKPOINT_EVERY = 500  # entries per segment at most
CHECKPOINT_INTERVAL = 60.0  # seconds: a quiet bus still gets its recent entries signed within a minute
SIGNING_RETRY = 10.0  # seconds to wait before asking an unavailable Vault to sign again
ARCHIVE_EVERY = 5.0  # seconds between looks for newly closed segments


def decisions_of(key: bytes | None, value: bytes | None) -> list[dict[str, Any]]:
    """The decisions of one `_hbus.decisions` record; an unreadable record is chained as such, never skipped."""
    try:
        items = json.loads(value or b"")
        if isinstance(items, list) and all(isinstance(i, dict) for i in items):
            return items
    except ValueError:
        pass
    component = (key or b"").decode("utf-8", "replace")
    return [{"component": component, "verdict": "unreadable", "reason": "decision record is not a JSON array"}]


class ChainWriter:
    """The chain head plus the producer that appends to `_hbus.audit`, in order, nothing acknowledged twice."""

    def __init__(self, chain: Chain, vault: VaultSession, creds) -> None:  # type: ignore[no-untyped-def]
        self.chain = chain
        self.vault = vault
        # Idempotent and ordered: a retried send can neither repeat nor reorder entries of the chain.
        self.producer = kafka.producer(PRIVATE, creds, **{"max.in.flight.requests.per.connection": 5,
                                                          "message.timeout.ms": 0})
        self.errors: list[str] = []
        self.segments_closed = False
        self.signing_paused_until = 0.0

    def checkpoint(self) -> list[dict[str, Any]]:
        """A signed checkpoint, or none while Vault cannot sign (the entries wait for the next one, never lost)."""
        if time.monotonic() < self.signing_paused_until:
            return []
        try:
            signature = self.vault.sign(checkpoint_message(self.chain.seq - 1, self.chain.head))
        except Exception as exc:  # noqa: BLE001 - Vault away: keep chaining, sign when it is back
            log.warning("event=checkpoint_deferred error=%s", type(exc).__name__)
            self.signing_paused_until = time.monotonic() + SIGNING_RETRY
            return []
        self.segments_closed = True
        return [self.chain.checkpoint(signature, int(time.time() * 1000))]

    def chain_batch(self, records: list[tuple[int, int, bytes | None, bytes | None]]) -> None:
        """Chain the decisions of `(partition, offset, key, value)` records and wait until Kafka has them all."""
        entries = []
        for partition, offset, key, value in records:
            for index, decision in enumerate(decisions_of(key, value)):
                if self.chain.chained(partition, (offset, index)):
                    continue  # chained before a restart
                entries.append(self.chain.append(partition, (offset, index), decision))
                if self.chain.since_checkpoint >= CHECKPOINT_EVERY:
                    entries += self.checkpoint()
        self.write(entries)

    def write(self, entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            while True:
                try:
                    self.producer.produce(AUDIT_TOPIC, canonical(entry), partition=0, on_delivery=self._delivered)
                    break
                except BufferError:
                    self.producer.poll(0.1)
        while self.producer.flush(5.0) > 0:
            metrics.PAUSED.labels("audit", "private-kafka").set(1)
        metrics.PAUSED.labels("audit", "private-kafka").set(0)
        if self.errors:
            raise DeliveryError(AUDIT_TOPIC, self.errors[0], len(self.errors))
        for entry in entries:
            metrics.AUDIT_ENTRIES.labels(entry["kind"]).inc()
            if entry["kind"] == CHECKPOINT:
                metrics.AUDIT_LAST_CHECKPOINT.set(entry["at_ms"] / 1000)

    def _delivered(self, err, _msg) -> None:  # type: ignore[no-untyped-def]
        if err is not None:
            self.errors.append(str(err))


def main() -> None:
    cfg, vault = login("audit")
    creds = kafka_login(vault, "audit", PRIVATE)
    writer = ChainWriter(Chain.resume(read_tail(creds, reach=4 * CHECKPOINT_EVERY)), vault, creds)
    writer.segments_closed = True  # archive whatever a previous run closed but did not archive
    archive = AuditArchive(s3_client(cfg, vault.s3_credentials()), cfg.audit_bucket)
    log.warning("event=chain_resumed next_seq=%d", writer.chain.seq)

    app = make_app("audit", creds, cfg, stream_buffer_maxsize=BUFFERED_RECORDS, broker_max_poll_records=BUFFERED_RECORDS)
    appending = asyncio.Lock()  # the agent and the checkpoint timer both append: one at a time

    @app.agent(app.topic(DECISIONS_TOPIC))
    async def chain_decisions(stream):  # type: ignore[no-untyped-def]
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(BATCH_SIZE, BATCH_WITHIN):
            with exit_on_error():
                records = [(e.message.partition, e.message.offset, e.message.key, e.message.value) for e in events]
                async with appending:
                    # Acknowledged by Kafka before the batch's offsets can be committed.
                    await loop.run_in_executor(None, writer.chain_batch, records)

    @app.timer(CHECKPOINT_INTERVAL)
    async def sign_recent() -> None:
        with exit_on_error():
            async with appending:
                if writer.chain.since_checkpoint:
                    loop = asyncio.get_running_loop()
                    await loop.run_in_executor(None, lambda: writer.write(writer.checkpoint()))

    @app.timer(ARCHIVE_EVERY)
    async def archive_closed() -> None:
        if not writer.segments_closed:
            return
        writer.segments_closed = False
        try:
            await asyncio.get_running_loop().run_in_executor(None, archive.catch_up, lambda offset: read_chain(
                creds, AUDIT_TOPIC, offset, stop_after=ARCHIVE_MAX_ENTRIES))
        except Exception as exc:  # noqa: BLE001 - S3 away or key rotated: the segments stay on the topic, try again
            writer.segments_closed = True
            log.warning("event=archive_failed error=%s", type(exc).__name__)
            try:
                archive.s3 = s3_client(cfg, vault.s3_credentials())
            except Exception as vault_exc:  # noqa: BLE001 - Vault away too: keep the key we have
                log.warning("event=vault_unavailable error=%s", type(vault_exc).__name__)

    serve(app, "audit", vault, None, None, creds, [DECISIONS_TOPIC], cfg.ports.audit_metrics, cfg.host)


if __name__ == "__main__":
    main()
