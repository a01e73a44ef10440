"""The access trail: who read which graded topic (the brokers' authorizer checks, chained by the audit writer) and who
made or unwrapped data keys of which field key or read which secret (Vault's audit device), per minute with counts.

Answers "who read the admissions topic last week" and "who decrypted ID numbers" without reading a single value.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from hybridbus.adapters.fieldcrypt import field_key_name
from hybridbus.adapters.vault import KV_MOUNT, TRANSIT_MOUNT
from hybridbus.runtime.audit import accesses_between
from routing.grades import Grade

# Vault paths that touch data or secrets -> the action they are in the trail.
_ACTIONS = ((f"{TRANSIT_MOUNT}/decrypt/", "decrypt"), (f"{TRANSIT_MOUNT}/datakey/plaintext/", "datakey"),
            (f"{TRANSIT_MOUNT}/hmac/", "hmac"), (f"{KV_MOUNT}/data/", "kv-read"))


@dataclass(frozen=True, order=True)
class Access:
    """One Vault answer in the trail: when (to the minute), who, what they did to which key or secret, and whether
    Vault allowed it."""

    minute: str  # ISO 8601, UTC, to the minute
    who: str  # the AppRole identity (hbus-<name> without its prefix), or Vault's display name
    action: str  # decrypt | datakey | hmac | kv-read
    what: str  # the Transit key (fields-health-restricted) or the KV path
    outcome: str  # allowed | denied | failed


def accesses(lines: Iterable[str]) -> Iterator[Access]:
    """The trail's entries in an audit log: responses only (each request is logged twice by Vault)."""
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a torn last line while Vault writes
        if not isinstance(entry, dict) or entry.get("type") != "response":
            continue
        request = entry.get("request") or {}
        path = str(request.get("path", ""))
        action = next((name for prefix, name in _ACTIONS if path.startswith(prefix)), None)
        if action is None:
            continue
        prefix = next(prefix for prefix, name in _ACTIONS if name == action)
        auth = entry.get("auth") or {}
        role = str((auth.get("metadata") or {}).get("role_name", "") or auth.get("display_name", "") or "unknown")
        error = str(entry.get("error", "") or "")
        outcome = "allowed" if not error else "denied" if "permission denied" in error else "failed"
        yield Access(str(entry.get("time", ""))[:16], role.removeprefix("hbus-"), action, path[len(prefix):], outcome)


def _minute_ms(minute: str) -> int:
    try:
        moment = datetime.fromisoformat(minute)
    except ValueError:
        return 0
    return int((moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp() * 1000)


def query(log: Path, *, who: str | None = None, what: str | None = None, action: str | None = None,
          from_ms: int | None = None, to_ms: int | None = None) -> list[dict[str, object]]:
    """Counts per minute, identity, action, key and outcome in [from, to), filtered; one row per group, in time order."""
    if not log.exists():
        return []
    counts: Counter[Access] = Counter()
    with log.open(encoding="utf-8", errors="replace") as handle:
        for access in accesses(handle):
            at = _minute_ms(access.minute)
            if (who and access.who != who) or (what and what not in access.what) or (action and access.action != action):
                continue
            if (from_ms is not None and at < from_ms) or (to_ms is not None and at >= to_ms):
                continue
            counts[access] += 1
    return [{"minute": a.minute, "who": a.who, "action": a.action, "what": a.what, "outcome": a.outcome, "count": n}
            for a, n in sorted(counts.items())]


KAFKA_SOURCE, VAULT_SOURCE = "kafka", "vault"
COLUMNS = ("minute", "source", "who", "action", "what", "outcome", "count")


def field_key_of(topic: str) -> str | None:
    """The Transit key that seals the encrypted fields on graded topic `topic` (`<grade>.<dept>.<event>`), if any."""
    parts = topic.split(".")
    if len(parts) != 3 or parts[0] not in {g.id for g in Grade}:
        return None
    return field_key_name(parts[1], parts[0])


def broker_reads(entries: Iterable[Mapping[str, object]], *, who: str | None = None, topic: str | None = None,
                 what: str | None = None, action: str | None = None, from_ms: int | None = None,
                 to_ms: int | None = None) -> list[dict[str, object]]:
    """The chain's access entries in [from, to), filtered, as rows; a group chained in two entries (a line written
    late for its minute) is counted once, summed."""
    counts: Counter[tuple[str, str, str, str, str]] = Counter()
    for e in accesses_between(entries, from_ms, to_ms):
        row = (str(e["minute"]), str(e["who"]), str(e["operation"]), str(e["topic"]), str(e["outcome"]))
        if (who and row[1] != who) or (action and row[2] != action) or (topic and row[3] != topic) \
                or (what and what not in row[3]):
            continue
        counts[row] += int(e["count"])  # type: ignore[call-overload]
    return [{"minute": m, "source": KAFKA_SOURCE, "who": w, "action": a, "what": t, "outcome": o, "count": n}
            for (m, w, a, t, o), n in sorted(counts.items())]


def trail(entries: Iterable[Mapping[str, object]], vault_log: Path, *, who: str | None = None,
          topic: str | None = None, what: str | None = None, action: str | None = None,
          from_ms: int | None = None, to_ms: int | None = None) -> list[dict[str, object]]:
    """Both halves of the trail in time order: the brokers' reads from the chain, Vault's decrypts from its audit
    device. With `topic`, Vault's rows are those of the Transit key sealing that topic's encrypted fields."""
    rows = broker_reads(entries, who=who, topic=topic, what=what, action=action, from_ms=from_ms, to_ms=to_ms)
    key = field_key_of(topic) if topic else None
    if not topic or key:
        vault = query(vault_log, who=who, what=key or what, action=action, from_ms=from_ms, to_ms=to_ms)
        rows += [{"minute": row["minute"], "source": VAULT_SOURCE, **row} for row in vault if not key or row["what"] == key]
    return sorted(rows, key=lambda r: (str(r["minute"]), str(r["source"]), str(r["who"]), str(r["what"])))
