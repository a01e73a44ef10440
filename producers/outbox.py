"""A SQLite transactional outbox: events are written in the caller's own transaction, relayed to Kafka later.

"Exactly once from the caller's point of view" means: every committed outbox row is delivered, rows are
sent in insertion order, and a row is marked sent only after Kafka acknowledged it. A crash between the
ack and the mark re-sends that row; the re-delivery carries the same event id (record key and header),
which is what downstream consumers deduplicate by. A rolled-back caller transaction leaves no row.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from producers.exceptions import OutboxError, ProducerError
from hybridbus.adapters.fieldcrypt import DEFAULT_VAULT_TIMEOUT, FieldSealer, TransitKeyService
from producers.publisher import DEFAULT_MAX_BYTES, Delivery, Envelope, EventEncoder, Publisher
from routing.catalog import Catalog

log = logging.getLogger("hybridbus.producers.outbox")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hbus_outbox (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT    NOT NULL UNIQUE,
    dept           TEXT    NOT NULL,
    event_type     TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    occurred_at_ms INTEGER NOT NULL,
    trace_id       TEXT    NOT NULL,
    topic          TEXT    NOT NULL,
    value          BLOB    NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    sent_at_ms     INTEGER,
    partition      INTEGER,
    "offset"       INTEGER
);
CREATE INDEX IF NOT EXISTS hbus_outbox_pending ON hbus_outbox (seq) WHERE sent_at_ms IS NULL;
"""

_COLUMNS = "seq, event_id, dept, event_type, version, occurred_at_ms, trace_id, topic, value"


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    envelope: Envelope


@dataclass(frozen=True)
class RelayResult:
    """What one `relay` call did: rows acknowledged and marked sent, rows still pending, the first error."""

    sent: int
    pending: int
    error: str | None = None


class Outbox:
    """The outbox table `hbus_outbox` inside the caller's SQLite database at `path`."""

    def __init__(self, path: str | Path, *, catalog: Catalog | None = None, encoder: EventEncoder | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES, sealer: FieldSealer | None = None) -> None:
        self.path = Path(path)
        self._catalog = catalog
        self._encoder = encoder
        self._sealer = sealer  # rows are stored sealed: an encrypted field is never in the database in plain text
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        with closing(self.connect()) as conn:
            conn.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"Outbox(path={str(self.path)!r})"

    @classmethod
    def for_department(cls, path: str | Path, dept: str, *, catalog: Catalog | None = None,
                       max_bytes: int = DEFAULT_MAX_BYTES) -> Outbox:
        """An outbox whose rows are sealed with the department's own data keys (the fields the catalog encrypts)."""
        from hybridbus.adapters.vault import VaultSession

        return cls(path, catalog=catalog, max_bytes=max_bytes,
                   sealer=FieldSealer(TransitKeyService(VaultSession(dept), timeout=DEFAULT_VAULT_TIMEOUT)))

    @property
    def encoder(self) -> EventEncoder:
        if self._encoder is None:
            from hybridbus.adapters.loaders import load_catalog

            self._encoder = EventEncoder(self._catalog or load_catalog(), max_bytes=self._max_bytes, sealer=self._sealer)
        return self._encoder

    def connect(self) -> sqlite3.Connection:
        # WAL lets the application keep writing while the relay reads and marks rows.
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    def add(self, conn: sqlite3.Connection | None, event_type: str, payload: Any, *, dept: str | None = None,
            event_id: str | None = None, occurred_at_ms: int | None = None, trace_id: str | None = None,
            version: int | None = None) -> str:
        """Validate, encode and insert one event; returns its event id.

        With `conn`, the row joins the caller's open transaction and is committed (or rolled back) with
        the caller's own writes. With `None`, the outbox commits the row itself.
        """
        owner = dept or self.encoder.event_type(event_type, version).dept
        envelope = self.encoder.encode(owner, event_type, payload, event_id=event_id, occurred_at_ms=occurred_at_ms,
                                       trace_id=trace_id, version=version)
        if conn is None:
            with closing(self.connect()) as own, own:
                self._insert(own, envelope)
        else:
            self._check_same_database(conn)
            self._insert(conn, envelope)
        return envelope.event_id

    def _insert(self, conn: sqlite3.Connection, e: Envelope) -> None:
        conn.execute(
            "INSERT INTO hbus_outbox (event_id, dept, event_type, version, occurred_at_ms, trace_id, topic, value,"
            " created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (e.event_id, e.dept, e.event_type, e.version, e.occurred_at_ms, e.trace_id, e.topic, e.value,
             int(time.time() * 1000)),
        )

    def _check_same_database(self, conn: sqlite3.Connection) -> None:
        # A row written through a connection to another file would silently never be relayed.
        files = [row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"]
        if not files or not files[0] or not os.path.samefile(files[0], self.path):
            raise OutboxError(f"the connection is not to the outbox database {self.path}")

    def pending(self, limit: int | None = None) -> list[OutboxRow]:
        sql = f"SELECT {_COLUMNS} FROM hbus_outbox WHERE sent_at_ms IS NULL ORDER BY seq"
        with closing(self.connect()) as conn:
            rows = conn.execute(sql + (" LIMIT ?" if limit else ""), (limit,) if limit else ()).fetchall()
        return [_row(r) for r in rows]

    def pending_count(self) -> int:
        with closing(self.connect()) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM hbus_outbox WHERE sent_at_ms IS NULL").fetchone()[0])

    def sent_count(self) -> int:
        with closing(self.connect()) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM hbus_outbox WHERE sent_at_ms IS NOT NULL").fetchone()[0])

    def relay(self, publisher: Publisher, batch: int = 500, timeout: float | None = None) -> RelayResult:
        """Send pending rows in insertion order, `batch` at a time, until none is left or one fails.

        Only the unbroken prefix of acknowledged rows is marked sent, so order holds across retries:
        a row after a failed one is sent again rather than overtaking it.
        """
        sent = 0
        error: str | None = None
        with self._lock:  # one relay per process; rows are never sent twice by two relays of ours
            while error is None:
                rows = self.pending(batch)
                if not rows:
                    break
                acked, error = self._send_batch(publisher, rows, timeout)
                if acked:
                    self._mark_sent(rows[:len(acked)], acked)
                    sent += len(acked)
                if len(acked) < len(rows) and error is None:
                    error = "not every event was acknowledged in time"
        pending = self.pending_count()
        if sent or error:
            log.info("outbox relay sent=%d pending=%d error=%s", sent, pending, error or "-")
        return RelayResult(sent, pending, error)

    def _send_batch(self, publisher: Publisher, rows: list[OutboxRow],
                    timeout: float | None) -> tuple[list[Delivery], str | None]:
        outcome: dict[int, Delivery | ProducerError] = {}

        def callback(seq: int):  # type: ignore[no-untyped-def]
            def on_delivery(delivery: Delivery | None, error: ProducerError | None) -> None:
                outcome[seq] = delivery if delivery is not None else error  # type: ignore[assignment]
            return on_delivery

        refused: str | None = None
        for row in rows:
            try:
                publisher.send_async(row.envelope, callback(row.seq))
            except ProducerError as exc:  # e.g. a row of another department: stop here, keep order
                refused = str(exc)
                break
        publisher.flush(timeout)
        acked: list[Delivery] = []
        for row in rows:
            result = outcome.get(row.seq)
            if isinstance(result, Delivery):
                acked.append(result)
                continue
            if isinstance(result, ProducerError):
                return acked, str(result)
            return acked, refused or f"event {row.envelope.event_id}: no acknowledgement in time"
        return acked, refused

    def _mark_sent(self, rows: list[OutboxRow], deliveries: list[Delivery]) -> None:
        now = int(time.time() * 1000)
        with closing(self.connect()) as conn, conn:
            conn.executemany(
                'UPDATE hbus_outbox SET sent_at_ms = ?, partition = ?, "offset" = ? WHERE seq = ?',
                [(now, d.partition, d.offset, row.seq) for row, d in zip(rows, deliveries)],
            )

    def follow(self, publisher: Publisher, batch: int = 500, interval: float = 1.0,
               stop: threading.Event | None = None) -> Iterator[RelayResult]:
        """Relay forever (until `stop` is set), yielding after each round that sent or failed."""
        stop = stop or threading.Event()
        while not stop.is_set():
            result = self.relay(publisher, batch)
            if result.sent or result.error:
                yield result
            if result.pending == 0 or result.error:
                stop.wait(interval)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A connection in a transaction on the outbox database, committed on success (for callers' writes)."""
        with closing(self.connect()) as conn, conn:
            yield conn


def _row(r: tuple[Any, ...]) -> OutboxRow:
    seq, event_id, dept, event_type, version, occurred_at_ms, trace_id, topic, value = r
    return OutboxRow(seq, Envelope(event_type=event_type, version=version, dept=dept, event_id=event_id,
                                   occurred_at_ms=occurred_at_ms, trace_id=trace_id, topic=topic, value=bytes(value)))
