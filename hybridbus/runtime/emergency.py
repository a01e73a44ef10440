"""The emergency stop: the boundary's state on the compacted `_hbus.control` topic, and the gate egress and the
archiver hold their batch at while it is closed (nothing sent, nothing committed, so nothing lost or skipped).

Why a topic of its own rather than `_hbus.rules`: the stop must not wait for, or be refused with, a rule set's
signature checks; only the two processors that send outward read it; and its history (who closed, who opened,
why) stays apart from the rule sets'. Every instance follows it with its own reader, so all stop together.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from hybridbus.adapters import metrics
from hybridbus.adapters.secrets import KafkaCredentials
from hybridbus.adapters.topology import CONTROL_TOPIC
from hybridbus.adapters.vault import BOUNDARY_KEY, VaultUnavailable
from hybridbus.runtime.compacted import CompactedReader, write_record
from hybridbus.runtime.rulesigning import Signer, Verifier
from routing import governance as G

log = logging.getLogger("hbus.boundary")

KEY = b"boundary"
FOLLOW_EVERY = 0.2  # seconds between reads of the control topic: a close is seen well within a second


@dataclass(frozen=True)
class BoundaryState:
    state: str  # open | closed
    reason: str
    by: str  # the person, as their Vault token names them
    at_ms: int
    signature: str = ""

    @property
    def closed(self) -> bool:
        return self.state != G.OPEN  # anything but a clear "open" is closed

    def statement(self) -> bytes:
        return G.boundary_statement(self.state, self.reason, self.at_ms, self.by)


def signed_state(signer: Signer, state: str, reason: str, by: str) -> BoundaryState:
    at_ms = int(time.time() * 1000)
    unsigned = BoundaryState(state, reason, by, at_ms)
    return BoundaryState(state, reason, by, at_ms, signer.sign(unsigned.statement(), BOUNDARY_KEY))


def write_state(state: BoundaryState, creds: KafkaCredentials) -> None:
    write_record(creds, CONTROL_TOPIC, KEY, json.dumps(asdict(state)).encode(), "control")


def decode(value: bytes) -> BoundaryState:
    body = json.loads(value)
    return BoundaryState(str(body["state"]), str(body.get("reason", "")), str(body.get("by", "")),
                         int(body.get("at_ms", 0)), str(body.get("signature", "")))


class BoundaryGate:
    """Follows the boundary's state in a thread of its own; `hold()` blocks the data-plane thread while closed.

    Closed until the control topic was read up to its end at start: a worker never sends before it knows.
    """

    def __init__(self, creds: KafkaCredentials, verifier: Verifier, component: str) -> None:
        self.component = component
        self._verifier = verifier
        self._open = threading.Event()
        self._closed_at: int | None = None
        self._closed_by = ""
        self._pending: BoundaryState | None = None  # a reopening Vault could not verify yet
        self.state: BoundaryState | None = None
        metrics.BOUNDARY_CLOSED.labels(component).set(1)
        self._reader = CompactedReader.connect(creds, CONTROL_TOPIC, "hbus-control")
        self._thread = threading.Thread(target=self._follow, name=f"{component}-boundary", daemon=True)
        self._thread.start()

    def hold(self) -> None:
        """Return at once while open; while closed, wait (the batch in hand stays unsent and uncommitted)."""
        if self._open.is_set():
            return
        log.warning("event=boundary_hold component=%s", self.component)
        while not self._open.wait(1.0):
            pass
        log.warning("event=boundary_release component=%s", self.component)

    def _follow(self) -> None:
        try:
            self._read()
        except Exception:  # noqa: BLE001 - a gate that can no longer see a close must not stay open
            log.exception("event=boundary_follow_failed component=%s action=close", self.component)
            self._set(BoundaryState(G.CLOSED, "control topic unreadable", "?", int(time.time() * 1000)))

    def _read(self) -> None:
        for msg in self._reader.load(timeout=60, to_end=True):  # closed until the end is reached
            self._take(msg)
        if self._pending is None:
            self._set(None)  # never closed
        while True:
            if self._pending is not None:
                self._apply(self._pending)
            for msg in self._reader.poll(FOLLOW_EVERY):
                self._take(msg)

    def _take(self, msg: Any) -> None:
        """The newest state record read becomes the one to apply (an undecodable one closes)."""
        if msg.value() is None or msg.key() != KEY:
            return
        try:
            self._pending = decode(msg.value())
        except (ValueError, KeyError, TypeError):
            self._pending = BoundaryState(G.CLOSED, "undecodable control record", "?", 0)

    def _apply(self, state: BoundaryState) -> None:
        try:
            valid = state.closed or self._verifier.signature_valid(state.statement(), state.signature, BOUNDARY_KEY)
        except VaultUnavailable:
            return  # stays as it is (closed, when this is a reopening) and is asked again at the next read
        self._pending = None
        if G.boundary_follows(self._closed_at, self._closed_by, G.CLOSED if state.closed else G.OPEN, state.at_ms,
                              state.by, valid):
            self._set(state)
        else:
            why = "bad_signature" if not valid else "same_person" if state.by == self._closed_by else "stale"
            log.warning("event=boundary_open_refused component=%s by=%s reason=%s", self.component, state.by, why)

    def _set(self, state: BoundaryState | None) -> None:
        self.state = state
        closed = state is not None and state.closed
        self._closed_at = state.at_ms if closed and state is not None else None
        self._closed_by = state.by if closed and state is not None else ""
        metrics.BOUNDARY_CLOSED.labels(self.component).set(1 if closed else 0)
        if closed:
            self._open.clear()
        else:
            self._open.set()
        if state is not None:
            log.warning("event=boundary_%s component=%s by=%s", "closed" if closed else "opened", self.component,
                        state.by)
