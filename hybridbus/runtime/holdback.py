"""Holding back records whose schema fingerprint a processor's catalog does not know yet: a producer already on a
new version before `_hbus.catalog` reached this processor. Pure bookkeeping; the data plane pauses and seeks.

From the first such record of a partition on, nothing of that partition is handled (so per-partition order holds
and no offset is committed past it); the partition is tried again every `retry_s` and at once after a catalog
switch. A fingerprint still unknown `bound_s` after it was first seen is given up: its records go to the handler,
which sends them to the DLQ (or quarantine) as unknown, as before. Records that carry no well-formed single-object
header (garbage, the wrong marker, too short) are never held: they go to the handler at once, as before.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from hybridbus.adapters.codec import header_fingerprint

TopicPartitionKey = tuple[str, int]
RETRY_EVERY = 0.5  # seconds between tries of a held partition (a catalog switch retries at once)
FINGERPRINTS_KEPT = 10_000  # unknown fingerprints remembered; past that the ones already given up are forgotten


class ConsumedRecord(Protocol):
    def topic(self) -> str: ...
    def partition(self) -> int: ...
    def offset(self) -> int: ...
    def value(self) -> bytes | None: ...


class HoldBack:
    """Per partition: the offset it is held at, or is being rewound to. `known(fingerprint)` asks the catalog in
    force (it changes with it); `clock` is monotonic seconds."""

    def __init__(self, known: Callable[[bytes], bool], bound_s: float, retry_s: float = RETRY_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.known = known
        self.bound_s = bound_s
        self.retry_s = retry_s
        self.clock = clock
        self.held: dict[TopicPartitionKey, int] = {}  # paused at this offset
        self._retry_at: dict[TopicPartitionKey, float] = {}
        self._rewinding: dict[TopicPartitionKey, int] = {}  # resumed and sought: records before this offset are stale
        self._first_seen: dict[bytes, float] = {}  # unknown fingerprint -> when first seen
        self._counted: dict[TopicPartitionKey, int] = {}  # the held record already counted per partition

    def split(self, messages: Sequence[Any]
              ) -> tuple[list[Any], list[tuple[TopicPartitionKey, int]], list[tuple[TopicPartitionKey, int]]]:
        """(the records to handle now, the partitions to pause with their offsets, those held there the first time).

        Records of a partition that is held, or not yet back at the offset it was rewound to, are left out: the
        consumer returns them again once the partition is resumed at that offset.
        """
        now = self.clock()
        if not self.held and not self._rewinding:
            # Nothing held: only a fingerprint the catalog does not know stops a record. Each fingerprint is asked
            # once a batch (the catalog changes only between batches).
            known: set[bytes | None] = {None}
            for index, msg in enumerate(messages):
                fingerprint = header_fingerprint(msg.value())
                if fingerprint in known:
                    continue
                if self._waits(fingerprint, now):  # type: ignore[arg-type]
                    kept, newly, first = self._split(messages[index:], now)
                    return list(messages[:index]) + kept, newly, first
                known.add(fingerprint)
            return list(messages), [], []
        return self._split(messages, now)

    def _split(self, messages: Sequence[Any], now: float
               ) -> tuple[list[Any], list[tuple[TopicPartitionKey, int]], list[tuple[TopicPartitionKey, int]]]:
        kept: list[Any] = []
        newly: list[tuple[TopicPartitionKey, int]] = []
        first: list[tuple[TopicPartitionKey, int]] = []
        for msg in messages:
            tp = (msg.topic(), msg.partition())
            offset = msg.offset()
            if tp in self.held:
                self._note(msg.value(), now)  # its clock starts now, so a run of them is given up together
                continue
            target = self._rewinding.get(tp)
            if target is not None:
                if offset != target:  # fetched before the seek took effect: not this record's turn
                    if offset > target:  # the seek did not take: hold again, the plane seeks once more
                        self._hold(tp, target, now)
                        newly.append((tp, target))
                    continue
                del self._rewinding[tp]
            fingerprint = header_fingerprint(msg.value())
            if fingerprint is not None and self._waits(fingerprint, now):
                self._hold(tp, offset, now)
                newly.append((tp, offset))
                if self._counted.get(tp) != offset:
                    self._counted[tp] = offset
                    first.append((tp, offset))
                continue
            kept.append(msg)
        return kept, newly, first

    def due(self) -> list[tuple[TopicPartitionKey, int]]:
        """The held partitions to try again now: the plane resumes each and seeks it to its offset."""
        now = self.clock()
        ready = [(tp, offset) for tp, offset in self.held.items() if self._retry_at.get(tp, 0.0) <= now]
        for tp, offset in ready:
            del self.held[tp]
            self._retry_at.pop(tp, None)
            self._rewinding[tp] = offset
        return ready

    def retry_now(self) -> None:
        """A new catalog is in force: every held partition is tried at the next `due()`."""
        for tp in self.held:
            self._retry_at[tp] = 0.0

    def forget(self, partitions: Sequence[TopicPartitionKey] | None = None) -> None:
        """Partitions no longer owned (all, by default): their next owner starts at the committed offset."""
        for tp in list(self.held) + list(self._rewinding) if partitions is None else partitions:
            self.held.pop(tp, None)
            self._retry_at.pop(tp, None)
            self._rewinding.pop(tp, None)
            self._counted.pop(tp, None)

    def waited_s(self, value: bytes | None) -> float | None:
        """How long the record's unknown fingerprint has been waited for (None: not one that was held)."""
        fingerprint = header_fingerprint(value)
        first = self._first_seen.get(fingerprint) if fingerprint is not None else None
        return None if first is None else self.clock() - first

    def _waits(self, fingerprint: bytes, now: float) -> bool:
        if self.known(fingerprint):
            self._first_seen.pop(fingerprint, None)
            return False
        return now - self._note_fingerprint(fingerprint, now) < self.bound_s

    def _note(self, value: bytes | None, now: float) -> None:
        fingerprint = header_fingerprint(value)
        if fingerprint is not None and not self.known(fingerprint):
            self._note_fingerprint(fingerprint, now)

    def _note_fingerprint(self, fingerprint: bytes, now: float) -> float:
        first = self._first_seen.get(fingerprint)
        if first is None:
            if len(self._first_seen) >= FINGERPRINTS_KEPT:
                # Forget those given up (garbage with random fingerprints); one seen again waits its bound again.
                self._first_seen = {f: t for f, t in self._first_seen.items() if now - t < self.bound_s}
            first = self._first_seen[fingerprint] = now
        return first

    def _hold(self, tp: TopicPartitionKey, offset: int, now: float) -> None:
        self.held[tp] = offset
        self._retry_at[tp] = now + self.retry_s
        self._rewinding.pop(tp, None)
