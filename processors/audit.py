"""The audit writer (Faust worker, confluent-kafka data plane): chains every decision of `_hbus.decisions` onto the
one-partition `_hbus.audit`.

Every CHECKPOINT_EVERY entries, at least every CHECKPOINT_INTERVAL seconds, and right after a pass of the access
trail chained entries, a checkpoint signed in Vault Transit closes a segment, which is then archived to the audit
bucket. On start the writer reads the chain's tail back: it goes on from the last hash and skips every decision
already chained, so a crash never forks the chain and never chains a decision twice.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from confluent_kafka import Message, Producer

from hybridbus.adapters import kafka, metrics
from hybridbus.adapters.exceptions import DeliveryError
from hybridbus.adapters.s3 import s3_client
from hybridbus.adapters.secrets import KafkaCredentials
from hybridbus.adapters.topology import AUDIT_TOPIC, DECISIONS_TOPIC, PRIVATE
from hybridbus.adapters.vault import VaultSession
from hybridbus.runtime.accesstrail import Source, authorizer_logs, trail_pass
from hybridbus.runtime.audit import ACCESS, CHECKPOINT, DECISION, Appended, Appender
from hybridbus.runtime.auditstore import ARCHIVE_MAX_ENTRIES, AuditArchive, RecentEntries, read_chain, resume_chain
from hybridbus.runtime.dataplane import DataPlane
from hybridbus.runtime.decisions import decode_record
from hybridbus.runtime.faustapp import kafka_login, login, make_app, serve
from hybridbus.runtime.heap import Heap
from hybridbus.runtime.vaulttrail import vault_audit_logs

log = logging.getLogger("hbus.audit")

# A `_hbus.decisions` record holds a batch's decisions (400 in a JSON array, thousands in a compact record), so
# batches and read-ahead are counted in few records, and the entries waiting for Kafka's acknowledgement in
# entries: whatever the records hold, the writer has at most CONFIRM_EVERY entries in flight.
BATCH_RECORDS = 50
BATCH_WITHIN = 0.2  # seconds
# Fetched ahead, compressed: decompressed, decision records are several times larger, so a fetch of librdkafka's
# default size (6 partitions x 1 MB) briefly took 40-70 MB.
FETCH_AHEAD = {"queued.max.messages.kbytes": 4_096, "fetch.max.bytes": 1_048_576,
               "max.partition.fetch.bytes": 262_144}
CONFIRM_EVERY = 10_000
# Entries per segment at most. The next entry links to the checkpoint's hash, so each signature (a Vault round
# trip, 5-30 ms) stops the chain: 5,000 keeps that a few µs an entry, where 500 made it the writer's largest cost.
CHECKPOINT_EVERY = 5_000
CHECKPOINT_INTERVAL = 60.0  # seconds: a quiet bus still gets its recent entries signed within a minute
SIGNING_RETRY = 10.0  # seconds to wait before asking an unavailable Vault to sign again
ARCHIVE_EVERY = 5.0  # seconds between archive passes while segments close; sooner once an object's worth waits
TRAIL_EVERY = 10.0  # seconds between passes over the authorizer and OpenBao audit logs (a minute is chained once over)
RECENT_ENTRIES = 2 * ARCHIVE_MAX_ENTRIES  # kept for the archive (a few hundred bytes each); further back, it reads Kafka


class VaultSigner:
    """Checkpoint signatures from Vault Transit; while Vault cannot sign, None, without asking for a while."""

    def __init__(self, vault: VaultSession) -> None:
        self.vault = vault
        self.paused_until = 0.0

    def __call__(self, message: bytes) -> str | None:
        if time.monotonic() < self.paused_until:
            return None
        try:
            return self.vault.sign(message)
        except Exception as exc:  # noqa: BLE001 - Vault away: keep chaining, sign when it is back
            log.warning("event=checkpoint_deferred error=%s", type(exc).__name__)
            self.paused_until = time.monotonic() + SIGNING_RETRY
            return None


class ChainWriter:
    """Appends what the appender links to `_hbus.audit`, in order, nothing acknowledged twice, and keeps what
    Kafka acknowledged for the archive.

    Its own producer rather than the processors' `BatchProducer`: the archive needs the offset of every entry,
    which only a delivery report per record gives. Used from the data-plane thread only.
    """

    def __init__(self, appender: Appender, producer: Producer, recent: RecentEntries) -> None:
        self.appender = appender
        self.producer = producer
        self.recent = recent
        self.errors: list[str] = []
        self.unconfirmed: list[bytes] = []
        self.offsets: list[int] = []  # of the unconfirmed entries: reports come in the order they were produced
        self.decisions = 0
        self.accesses = 0
        self.checkpoints_at_ms: list[int] = []
        self.segments_closed = False
        self.unarchived = 0  # entries written since the archive last looked
        self._decisions = metrics.AUDIT_ENTRIES.labels(DECISION)
        self._checkpoints = metrics.AUDIT_ENTRIES.labels(CHECKPOINT)
        self._accesses = metrics.AUDIT_ENTRIES.labels(ACCESS)
        self._paused = metrics.PAUSED.labels("audit", "private-kafka")

    def chain_batch(self, records: Iterable[tuple[int, int, bytes | None, bytes | None]]) -> None:
        """Chain the decisions of `(partition, offset, key, value)` records; return once Kafka has them all."""
        for partition, offset, key, value in records:
            # A record's decisions, compact or JSON array; an unreadable record is chained as such, never skipped.
            self.send(self.appender.append([(partition, offset, decode_record(key, value))]))
            if len(self.unconfirmed) >= CONFIRM_EVERY:
                self.confirm()
        self.confirm()

    def collect_trail(self, sources: dict[str, Source]) -> None:
        """Chain the access trail's groups of the minutes closed since the last pass; return once Kafka has them."""
        try:
            appended, gaps = trail_pass(self.appender, sources, int(time.time() * 1000))
        except OSError as exc:  # a log unreadable for now: the next pass reads from the same position
            log.warning("event=access_trail_unreadable error=%s", type(exc).__name__)
            return
        for source in gaps:
            log.warning("event=access_trail_gap source=%s reason=rotated_away_unread", source)
        self.send(appended)
        if appended.accesses:  # at most once a minute: an access is signed as soon as it is chained
            self.send(self.appender.close())
        self.confirm()

    def sign_recent(self) -> None:
        self.send(self.appender.close())
        self.confirm()

    def send(self, appended: Appended) -> None:
        for raw in appended.entries:
            while True:
                try:
                    self.producer.produce(AUDIT_TOPIC, raw, partition=0, on_delivery=self._delivered)
                    break
                except BufferError:
                    self.producer.poll(0.1)
        self.unconfirmed += appended.entries
        self.decisions += appended.decisions
        self.accesses += appended.accesses
        self.checkpoints_at_ms += appended.checkpoints_at_ms

    def confirm(self) -> None:
        """Wait until Kafka acknowledged every entry sent; raise `DeliveryError` if it refused any."""
        while self.producer.flush(5.0) > 0:
            self._paused.set(1)
        self._paused.set(0)
        if self.errors or len(self.offsets) != len(self.unconfirmed):
            raise DeliveryError(AUDIT_TOPIC, self.errors[0] if self.errors else "delivery reports missing",
                                max(len(self.errors), 1))
        if self.offsets:
            first = self.offsets[0]
            if self.offsets == list(range(first, first + len(self.offsets))):
                self.recent.add(first, self.unconfirmed)
            else:
                self.recent.forget()  # something else wrote to the topic in between: the archive reads it there
        self.unarchived += len(self.unconfirmed)
        self._decisions.inc(self.decisions)
        self._accesses.inc(self.accesses)
        if self.checkpoints_at_ms:
            self._checkpoints.inc(len(self.checkpoints_at_ms))
            metrics.AUDIT_LAST_CHECKPOINT.set(self.checkpoints_at_ms[-1] / 1000)
            self.segments_closed = True
        self.unconfirmed, self.offsets, self.decisions, self.accesses, self.checkpoints_at_ms = [], [], 0, 0, []

    def _delivered(self, err, msg) -> None:  # type: ignore[no-untyped-def]
        if err is not None:
            self.errors.append(str(err))
        else:
            self.offsets.append(msg.offset())


def chain_producer(creds: KafkaCredentials) -> Producer:
    """Idempotent and ordered: a retried send can neither repeat nor reorder entries of the chain, and delivery
    reports come in the order the entries were sent."""
    return kafka.producer(PRIVATE, creds, **{"max.in.flight.requests.per.connection": 5, "message.timeout.ms": 0,
                                             "batch.num.messages": 10_000})


def main() -> None:
    heap = Heap()  # before the first thread starts
    cfg, vault = login("audit")
    creds = kafka_login(vault, "audit", PRIVATE)
    appender = Appender(resume_chain(creds, reach=2 * CHECKPOINT_EVERY), VaultSigner(vault), CHECKPOINT_EVERY,
                        lambda: int(time.time() * 1000))
    writer = ChainWriter(appender, chain_producer(creds), RecentEntries(RECENT_ENTRIES))
    writer.segments_closed = True  # archive whatever a previous run closed but did not archive
    archive = AuditArchive(s3_client(cfg, vault.s3_credentials()), cfg.audit_bucket)
    log.warning("event=chain_resumed next_seq=%d", appender.chain.seq)

    def chain_records(messages: list[Message]) -> None:
        writer.chain_batch((m.partition(), m.offset(), m.key(), m.value()) for m in messages)

    def read_closed(offset: int) -> list[tuple[int, bytes]]:
        held = writer.recent.read(offset, stop_after=ARCHIVE_MAX_ENTRIES)
        return held if held is not None else read_chain(creds, AUDIT_TOPIC, offset, stop_after=ARCHIVE_MAX_ENTRIES)

    def archive_pass() -> None:
        archive.catch_up(read_closed)
        heap.trim()  # the pass's pieces and objects are freed now: hand their pages back

    app = make_app("audit", creds, cfg)
    # The data-plane thread is the only one that appends: batches, and the timer's checkpoints between them.
    plane = DataPlane(app, "audit", creds, [DECISIONS_TOPIC], chain_records, batch_size=BATCH_RECORDS,
                      within=BATCH_WITHIN, **FETCH_AHEAD)

    @app.timer(CHECKPOINT_INTERVAL)
    async def sign_recent() -> None:
        plane.between_batches(writer.sign_recent)

    @app.timer(TRAIL_EVERY)
    async def collect_trail() -> None:
        # Read where this writer runs: the local stack's brokers keep their authorizer logs, and OpenBao its audit
        # device, under its state dir.
        plane.between_batches(lambda: writer.collect_trail(authorizer_logs(cfg.state_dir)
                                                           | vault_audit_logs(cfg.state_dir)))

    @app.task
    async def archive_closed() -> None:
        """Every ARCHIVE_EVERY seconds while segments close, and as soon as an object's worth of entries is written
        (each pass rewrites a day's manifest, so not more often), copy the closed segments to the bucket."""
        loop, last_pass = asyncio.get_running_loop(), 0.0
        while True:
            await asyncio.sleep(1.0)
            if not writer.segments_closed or (writer.unarchived < ARCHIVE_MAX_ENTRIES
                                              and time.monotonic() - last_pass < ARCHIVE_EVERY):
                continue
            writer.segments_closed, writer.unarchived, last_pass = False, 0, time.monotonic()
            try:
                await loop.run_in_executor(None, archive_pass)
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
