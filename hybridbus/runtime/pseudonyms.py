"""Keyed pseudonyms for the router, a batch at a time: the distinct values a batch needs go to Vault Transit in one
request, through a small bounded cache; while Vault cannot answer, the batch waits (it never goes out without them).

Why a cache is safe: a Transit HMAC is a function of the key version and the input, so a pseudonym remembered is the
one Vault would give again until the key rotates. The cache forgets everything when a fresh answer carries another
key version, when the rules switch, and after `max_age` seconds (so a rotation is followed within that bound even
on a stream answered from the cache alone); its keys are digests under a per-process random key, not the values.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Collection, Sequence

from hybridbus.adapters.exceptions import VaultError

log = logging.getLogger("hbus.pseudonyms")

BatchHmac = Callable[[Sequence[bytes]], list[str]]  # `VaultSession.hmac_batch`: one pseudonym per input, in order

MAX_ENTRIES = 50_000  # about 10 MB of cached pseudonyms at most
MAX_AGE = 300.0  # seconds: a rotated Transit key is followed within this bound
RETRY_FIRST, RETRY_MAX = 0.5, 10.0  # seconds between attempts while Vault does not answer (doubling up to the max)


def key_version(pseudonym: str) -> str:
    """The Transit key version a pseudonym was made with (`vault:v3:…` → `v3`); "" when it names none."""
    parts = pseudonym.split(":", 2)
    return parts[1] if len(parts) == 3 and parts[0] == "vault" else ""


class PseudonymCache:
    """Pseudonyms of a batch's values: `resolve(inputs)` answers every input, calling `compute` at most twice."""

    def __init__(self, compute: BatchHmac, *, max_entries: int = MAX_ENTRIES, max_age: float = MAX_AGE,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        self._compute, self._max_entries, self._max_age = compute, max_entries, max_age
        self._sleep, self._clock = sleep, clock
        self._salt = os.urandom(16)
        self._cached: dict[bytes, str] = {}
        self._version = ""
        self._since = clock()
        self.calls = 0  # requests made to Vault (answered or not)
        self.computed = 0  # pseudonyms Vault computed

    def clear(self) -> None:
        self._cached.clear()
        self._since = self._clock()

    def resolve(self, inputs: Collection[bytes]) -> dict[bytes, str]:
        """A pseudonym for every one of `inputs` (distinct), all of one key version; blocks while Vault is out."""
        if self._clock() - self._since > self._max_age:
            self.clear()
        digests = {data: hashlib.blake2b(data, key=self._salt, digest_size=16).digest() for data in inputs}
        found = {data: self._cached[d] for data, d in digests.items() if d in self._cached}
        missing = [data for data in digests if data not in found]
        if not missing:
            return found
        fresh = self._compute_all(missing)
        version = key_version(fresh[0])
        if version != self._version:
            # The key rotated: what the cache holds is of the old version. Start over, and compute the whole batch
            # anew so that one batch never mixes two versions.
            if self._version:  # not at the first answer: only a rotation is news
                log.warning("event=pseudonym_key_version_changed version=%s", version or "none")
            self._version = version
            self.clear()
            if found:
                missing = list(digests)
                fresh = self._compute_all(missing)
                found = {}
        if len(self._cached) + len(missing) > self._max_entries:
            self.clear()  # bounded: start over rather than track an order of use per value
        for data, pseudonym in zip(missing, fresh):
            found[data] = pseudonym
            if len(missing) <= self._max_entries:
                self._cached[digests[data]] = pseudonym
        return found

    def _compute_all(self, inputs: list[bytes]) -> list[str]:
        """One Transit request for `inputs`, repeated until it is answered: fail closed, never a partial answer."""
        wait, attempt = RETRY_FIRST, 0
        while True:
            attempt += 1
            self.calls += 1
            try:
                result = self._compute(inputs)
                error = "incomplete" if len(result) != len(inputs) else None
            except VaultError as exc:  # VaultUnavailable, a refusal, an incomplete answer: wait and ask again
                error = type(exc).__name__
            if error is None:
                if attempt > 1:
                    log.warning("event=pseudonyms_resumed attempts=%d values=%d", attempt, len(inputs))
                self.computed += len(inputs)
                return result
            log.warning("event=pseudonyms_paused attempt=%d values=%d error=%s retry_in=%.1f", attempt,
                        len(inputs), error, wait)
            self._sleep(wait)
            wait = min(wait * 2, RETRY_MAX)
