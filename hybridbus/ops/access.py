"""The access trail, from the chain only: who read which graded topic (the brokers' authorizer checks) and who
decrypted or made data keys under which field key or read which secret (OpenBao's audit device), per minute with counts.

Answers "who read the admissions topic last week" and "who decrypted ID numbers" without reading a single value; the
audit writer chains both halves, hashed and signed like its decisions (hybridbus.runtime.accesstrail, vaulttrail).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from hybridbus.adapters.fieldcrypt import field_key_name
from hybridbus.runtime.accesstrail import KAFKA, VAULT
from hybridbus.runtime.audit import accesses_between
from routing.grades import Grade

COLUMNS = ("minute", "source", "who", "action", "what", "outcome", "count")


def field_key_of(topic: str) -> str | None:
    """The Transit key that seals the encrypted fields on graded topic `topic` (`<grade>.<dept>.<event>`), if any."""
    parts = topic.split(".")
    if len(parts) != 3 or parts[0] not in {g.id for g in Grade}:
        return None
    return field_key_name(parts[1], parts[0])


def _what(entry: Mapping[str, object]) -> tuple[str, str]:
    """(source, what) of an access entry: a broker's topic, or the Transit key or KV path Vault was asked about.
    Entries chained before Vault's half joined name no source: they are the brokers'."""
    source = str(entry.get("source") or KAFKA)
    if source == KAFKA:
        return source, str(entry.get("topic", ""))
    return source, str(entry.get("key") or entry.get("path") or "")


def trail(entries: Iterable[Mapping[str, object]], *, who: str | None = None, topic: str | None = None,
          key: str | None = None, what: str | None = None, action: str | None = None, from_ms: int | None = None,
          to_ms: int | None = None) -> list[dict[str, object]]:
    """The chain's access entries in [from, to), filtered, as rows in time order; a group chained in two entries (a
    line written late for its minute) is one row, summed.

    `topic` keeps that topic's reads and the Vault rows of the Transit key sealing its encrypted fields (`key`, if
    given, instead); `key` alone keeps Vault's rows of one Transit key or KV path.
    """
    wanted: set[tuple[str, str]] | None = None
    if topic or key:
        wanted = {(KAFKA, topic)} if topic else set()
        sealing = key or (field_key_of(topic) if topic else None)
        if sealing:
            wanted.add((VAULT, sealing))
    counts: Counter[tuple[str, str, str, str, str, str]] = Counter()
    for e in accesses_between(entries, from_ms, to_ms):
        source, target = _what(e)
        row = (str(e["minute"]), source, str(e["who"]), str(e["operation"]), target, str(e["outcome"]))
        if (who and row[2] != who) or (action and row[3] != action) or (what and what not in target) \
                or (wanted is not None and (source, target) not in wanted):
            continue
        counts[row] += int(e["count"])  # type: ignore[call-overload]
    return [{"minute": m, "source": s, "who": w, "action": a, "what": t, "outcome": o, "count": n}
            for (m, s, w, a, t, o), n in sorted(counts.items())]
