"""How the router, egress and the archiver follow the catalog in force: the newest snapshot on `_hbus.catalog` that
decodes and passes the catalog checks, else (an empty topic, or a tombstone last) the schema files, as before the
topic existed.

A refused snapshot changes nothing: the catalog in force stays, `hbus_catalog_refused_total` counts it, the log says
why (never the files' text). The processors switch to a new catalog between two data-plane batches.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hybridbus.adapters import metrics
from hybridbus.adapters.config import Settings
from hybridbus.adapters.loaders import load_catalog
from hybridbus.adapters.secrets import KafkaCredentials
from hybridbus.adapters.topology import CATALOG_TOPIC
from hybridbus.runtime.catalogstore import CATALOG_KEY, CatalogSnapshot, SnapshotError
from hybridbus.runtime.compacted import CompactedReader
from routing.catalog import Catalog
from routing.exceptions import SchemaError

log = logging.getLogger("hbus.catalog")

TOPIC, FILES = "topic", "files"  # where the catalog in force came from
UNDECODABLE, INVALID = "undecodable", "invalid"  # refusal reasons (metric label)


@dataclass(frozen=True)
class CatalogInForce:
    catalog: Catalog
    digest: str
    source: str  # TOPIC or FILES


def from_files(cfg: Settings) -> CatalogInForce:
    """The catalog of the schema files (an empty `_hbus.catalog`); a catalog that fails its checks stops the start."""
    return CatalogInForce(load_catalog(cfg), CatalogSnapshot.from_dir(cfg.schemas_dir).digest, FILES)


class CatalogFollower:
    """Which snapshot records a processor follows: of those given, the newest that decodes and checks (a tombstone:
    the schema files, from `files`), unless it is the catalog already in force. Refusals newer than what is
    followed are counted; older ones were superseded."""

    def __init__(self, component: str, files: Callable[[], CatalogInForce] | None = None) -> None:
        self.component = component
        self.files = files
        self.in_force: CatalogInForce | None = None
        for reason in (UNDECODABLE, INVALID):  # every series exists from the start, so an alert sees the first
            metrics.CATALOG_REFUSED.labels(component, reason)

    def follow(self, values: Sequence[bytes | None]) -> CatalogInForce | None:
        """The catalog to switch to now, or None (nothing new that passes)."""
        for value in reversed(values):
            if value is None:  # the published catalog withdrawn: the files are in force again
                if self.files is None:
                    continue
                try:
                    files = self.files()
                except SchemaError as exc:  # the files broken meanwhile: the catalog in force stays
                    self._refused(INVALID, "files", str(exc))
                    return None
                return None if self.in_force is not None and files.digest == self.in_force.digest \
                    and files.source == self.in_force.source else self.take(files)
            try:
                snapshot = CatalogSnapshot.decode(value)
            except SnapshotError as exc:
                self._refused(UNDECODABLE, "", exc.args[0] if exc.args else type(exc).__name__)
                continue
            if self.in_force is not None and snapshot.digest == self.in_force.digest:
                return None  # the newest passing record is the catalog in force
            catalog, errors, _ = snapshot.check()
            if errors or catalog is None:
                self._refused(INVALID, snapshot.digest, str(errors[0]) if errors else "no catalog")
                continue
            return self.take(CatalogInForce(catalog, snapshot.digest, TOPIC))
        return None

    def take(self, in_force: CatalogInForce) -> CatalogInForce:
        self.in_force = in_force
        metrics.CATALOG_INFO.clear()
        metrics.CATALOG_INFO.labels(self.component, in_force.digest, in_force.source).set(1)
        log.warning("event=catalog_in_force component=%s digest=%s source=%s types=%d", self.component,
                    in_force.digest, in_force.source, len(list(in_force.catalog)))
        return in_force

    def _refused(self, reason: str, digest: str, detail: str) -> None:
        metrics.CATALOG_REFUSED.labels(self.component, reason).inc()
        # The detail is a checker's reason (file and rule broken), never a schema's or an event's content.
        log.warning("event=catalog_refused component=%s reason=%s digest=%s detail=%r in_force=%s", self.component,
                    reason, digest or "-", detail[:300], self.in_force.digest if self.in_force else "-")


class CatalogFeed:
    """Follows `_hbus.catalog`: `load()` once at start (the catalog to start with), then `poll()` for switches."""

    def __init__(self, creds: KafkaCredentials, component: str, files: Callable[[], CatalogInForce]) -> None:
        self._files = files
        self._reader = CompactedReader.connect(creds, CATALOG_TOPIC, "hbus-catalogfeed")
        self._follower = CatalogFollower(component, files)

    def load(self, timeout: float = 60.0) -> CatalogInForce:
        found = self._follower.follow(_snapshots(self._reader.load(timeout)))
        return found if found is not None else self._follower.take(self._files())

    def poll(self) -> CatalogInForce | None:
        return self._follower.follow(_snapshots(self._reader.poll()))

    def close(self) -> None:
        self._reader.close()


def _snapshots(messages: Sequence) -> list[bytes | None]:  # type: ignore[type-arg]
    return [msg.value() for msg in messages if msg.key() == CATALOG_KEY]
