"""The archiver (Faust worker, confluent-kafka data plane): batches public events from the private `public.*` topics into the open-data bucket.

The same boundary guard as egress checks every record; a batch's offsets are acknowledged only after its
object and manifest are written, and a batch that was written before a crash is recognised by its name.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message

from hybridbus.adapters import metrics
from hybridbus.adapters.loaders import public_event_types
from hybridbus.adapters.producer import BatchProducer
from hybridbus.adapters.s3 import s3_client
from hybridbus.adapters.topology import DECISIONS_TOPIC, PRIVATE
from hybridbus.runtime.archive import Archive, ArchivedRecord, day_of
from hybridbus.runtime.dataplane import DataPlane
from hybridbus.runtime.emergency import BoundaryGate
from hybridbus.runtime.faustapp import kafka_login, login, make_app, serve
from hybridbus.runtime.following import follow
from hybridbus.runtime.guarded import PUBLIC_PATTERN, FollowedGuard
from hybridbus.runtime.holdback import HoldBack
from routing.boundary import ARCHIVE
from routing.grades import Grade

log = logging.getLogger("hbus.archiver")

BATCH_SIZE = 5000
BATCH_WITHIN = 2.0  # seconds: open data is read in files, so fewer, larger objects are better


def main() -> None:
    cfg, vault = login("archiver")
    creds = kafka_login(vault, "archiver", PRIVATE)
    archive = Archive(s3_client(cfg, vault.s3_credentials()), cfg.open_data_bucket)
    metrics.secret_read("archiver", "s3")
    catalogs, catalog, check, feed = follow(cfg, vault, creds, "archiver")
    followed = FollowedGuard(catalog, feed.load(), ARCHIVE)  # its own event-id window: a replay is archived once
    guard = followed.guard
    boundary = BoundaryGate(creds, vault, "archiver")

    app = make_app("archiver", creds, cfg)
    private = BatchProducer.connect(PRIVATE, creds, "archiver")
    # A record of a version or view the catalog in force does not know yet waits for it, within the bound.
    holdback = HoldBack(lambda fingerprint: guard.codec.knows(fingerprint), cfg.unknown_schema_hold_s)

    def refresh_credentials() -> None:
        """After a rotation the key in use is retired at the next one: take the current key from Vault."""
        try:
            archive.s3 = s3_client(cfg, vault.s3_credentials())
            metrics.secret_read("archiver", "s3")
        except Exception as exc:  # noqa: BLE001 - Vault away too: keep the key we have and retry later
            log.warning("event=vault_unavailable error=%s", type(exc).__name__)

    def with_s3(action: Callable[[], None]) -> None:
        """Run one S3 action, waiting out an outage: retried, never skipped."""
        delay = 0.5
        while True:
            try:
                action()
                metrics.PAUSED.labels("archiver", "s3").set(0)
                return
            except Exception as exc:  # noqa: BLE001 - S3 down or refusing: wait and retry, never skip
                metrics.PAUSED.labels("archiver", "s3").set(1)
                log.warning("event=s3_unavailable error=%s retry_in=%.1fs", type(exc).__name__, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
                refresh_credentials()

    def write(event_type, day, partition, records) -> None:  # type: ignore[no-untyped-def]
        """Write one batch (its type's schema first, if new); skip what an earlier attempt already wrote."""
        def attempt() -> None:
            todo = archive.unarchived(event_type, day, partition, records)
            if todo:
                key, size = archive.put_batch(event_type, day, partition, todo)
                metrics.ARCHIVE_OBJECTS.labels(event_type.dept, event_type.key).inc()
                metrics.ARCHIVE_BYTES.labels(event_type.dept, event_type.key).inc(size)
                metrics.EVENTS_OUT.labels("archiver", event_type.dept, event_type.key, Grade.PUBLIC.id, "archive").inc(len(todo))
                metrics.LAST_ARCHIVE.set(time.time())
        with_s3(attempt)

    def shelve_schemas() -> None:
        """Public consumers decode by fingerprint: the schema of every type that can reach the public side, views
        included, goes under `_schemas/` of the bucket at start and whenever the guard learns new views."""
        def attempt() -> None:
            written = archive.ensure_schemas(public_event_types(followed.catalog, guard.derived_types()))
            if written:
                log.warning("event=schemas_published count=%d", len(written))  # rare, and the logs run at WARNING
        with_s3(attempt)

    def archive_public(messages: list[Message]) -> None:
        boundary.hold()  # emergency stop: while closed this batch waits here, unsent and uncommitted
        now_ms = int(time.time() * 1000)
        batch = guard.begin(now_ms)
        groups: dict[tuple, list[ArchivedRecord]] = defaultdict(list)  # type: ignore[type-arg]
        for msg in messages:
            passed = guard.check_into(batch, msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                                      msg.headers())
            if passed is not None:
                kind, timestamp_ms = msg.timestamp()
                day = day_of(timestamp_ms if kind != TIMESTAMP_NOT_AVAILABLE else now_ms)
                groups[(passed.event_type, day, passed.partition)].append(
                    ArchivedRecord(passed.offset, passed.event_id, passed.payload))
        private.send_all(batch.quarantined)
        for (event_type, day, partition), records in groups.items():
            write(event_type, day, partition, records)
        archived_ms = time.time() * 1000
        for chunk in batch.decision_records():
            private.send(DECISIONS_TOPIC, b"archiver", chunk)
        private.confirm()
        batch.publish_metrics(archived_ms)

    plane = DataPlane(app, "archiver", creds, [PUBLIC_PATTERN], archive_public, batch_size=BATCH_SIZE,
                      within=BATCH_WITHIN, holdback=holdback)
    plane.between_batches(shelve_schemas)  # in the data-plane thread, before its first batch
    follow_views, follow_catalog = followed.on_rules(plane), followed.on_catalog(plane, check)

    def use_rules(updates: dict[str, Any]) -> None:
        follow_views(updates)
        plane.between_batches(shelve_schemas)  # queued after the guard learns the views, before the next batch

    def switch(in_force: Any) -> None:
        follow_catalog(in_force)
        plane.between_batches(shelve_schemas)  # the new catalog's types too, before a record of them is archived

    serve(app, "archiver", vault, feed, use_rules, creds, [PUBLIC_PATTERN], cfg.ports.archiver_metrics, cfg.host,
          catalogs, switch)


if __name__ == "__main__":
    main()
