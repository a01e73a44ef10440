"""The access trail's logs read onto the chain: who read or described which graded topic (the private brokers'
authorizer logs), per minute with counts, from a saved position, so a restart or a rotation counts nothing twice.

Kafka's StandardAuthorizer logs to `kafka.authorizer.logger` every allowed operation at DEBUG and every denied one
at INFO. `infra/local/log4j2.properties` sends those on graded topics (and the DLQ and quarantine, which hold graded
data) to `<broker>/logs/kafka-authorizer.log`, and nothing else there; the audit writer collects that file onto the
chain, one entry per (minute, principal, topic, operation, outcome) with the count of the broker's checks.

Other logs join the same passes as further `Source`s with their own line parser (OpenBao's audit device: see
`hybridbus.runtime.vaulttrail`): positions, rotation, grouping and chaining are the same for every source.
"""
from __future__ import annotations

import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hybridbus.runtime.audit import Appended, Appender

AUTHORIZER_LOG = "kafka-authorizer.log"  # the file name infra/local/log4j2.properties gives the authorizer appender
# A minute is counted once it is over and this long has passed: a line stamped 10:01:59.999 may be written a little
# after 10:02 began.
CLOSE_AFTER_MS = 5_000
ROTATED_KEEP = 5  # rotated files log4j keeps (kafka-authorizer.log.1 … .5), as in infra/local/log4j2.properties

# "2026-11-30T10:02:07.123Z DEBUG Principal = User:dept-health is Allowed operation = READ from host = 127.0.0.1
#  on resource = Topic:LITERAL:restricted.health.hospital_admission for request = Fetch with resourceRefCount = 1
#  based on rule MatchingAcl(...)": the layout of infra/local/log4j2.properties, then StandardAuthorizer's message.
_LINE = re.compile(
    r"^(?P<minute>\d{4}-\d\d-\d\dT\d\d:\d\d):\d\d(?:\.\d+)?Z \w+ Principal = (?P<principal>\S+) is "
    r"(?P<result>Allowed|Denied) operation = (?P<operation>\w+) from host = (?P<host>\S+) on resource = "
    r"(?P<rtype>\w+):(?P<ptype>\w+):(?P<name>\S+) for request = (?P<request>\w+)")
# Logins of the bus as the topology names them (dept-health, svc-router, pub-public-reader): the trail names the
# identity, as Vault's audit device does (its AppRoles are hbus-<name>), so one --who finds both.
_PRINCIPAL_PREFIXES = ("dept-", "svc-", "pub-")
KAFKA, VAULT = "kafka", "vault"  # where a check was made: the brokers' authorizer, or OpenBao


@dataclass(frozen=True, order=True)
class Check:
    """One access decision the trail keeps: to the minute, who, which operation on what, and the answer."""

    minute: str  # ISO 8601 UTC to the minute, "2026-11-30T10:02"
    who: str  # the identity: "health" for User:dept-health (Kafka) and for AppRole hbus-health (Vault)
    topic: str  # the topic; for Vault, the Transit key or the KV path
    operation: str  # read | describe (Kafka); transit-decrypt | transit-datakey | transit-hmac | kv-read (Vault)
    outcome: str  # allowed | denied (| failed: Vault allowed it, and the operation failed)
    principal: str  # as the checker names it: "User:dept-health", "approle:hbus-health"
    host: str = field(default="", compare=False)
    request: str = field(default="", compare=False)  # Fetch, OffsetCommit, … (Kafka's ApiKeys); Vault's operation
    source: str = KAFKA


def who_of(principal: str) -> str:
    name = principal.split(":", 1)[-1]
    return next((name[len(p):] for p in _PRINCIPAL_PREFIXES if name.startswith(p)), name)


def parse_line(line: str) -> Check | None:
    """The check a log line records, or None for anything else (a torn line, a check not on a topic)."""
    found = _LINE.match(line)
    if found is None or found["rtype"] != "Topic":
        return None
    return Check(found["minute"], who_of(found["principal"]), found["name"], found["operation"].lower(),
                 found["result"].lower(), found["principal"], found["host"], found["request"])


@dataclass(frozen=True)
class Group:
    """One entry of the trail: the checks of one (source, minute, principal, topic, operation, outcome), counted."""

    source: str
    minute: str
    who: str
    principal: str
    topic: str
    operation: str
    outcome: str
    count: int
    hosts: tuple[str, ...]
    requests: tuple[str, ...]

    def fields(self) -> dict[str, Any]:
        """The entry's fields. A broker's group names its topic (and, as before Vault joined, no source); Vault's
        names its source and the Transit key (`key`) or the KV path (`path`) it touched."""
        where = {"topic": self.topic} if self.source == KAFKA else {
            "source": self.source, ("path" if self.operation.startswith("kv-") else "key"): self.topic}
        return {"minute": self.minute, "who": self.who, "principal": self.principal, **where,
                "operation": self.operation, "outcome": self.outcome, "count": self.count,
                "hosts": list(self.hosts), "requests": list(self.requests)}


def grouped(checks: Iterable[Check]) -> list[Group]:
    """One group per (source, minute, principal, topic, operation, outcome), in that order: a consumer polling every
    few hundred milliseconds makes one group a minute, not one entry per fetch."""
    counts: dict[tuple[str, str, str, str, str, str, str], tuple[int, set[str], set[str]]] = {}
    for c in checks:
        key = (c.source, c.minute, c.who, c.principal, c.topic, c.operation, c.outcome)
        count, hosts, requests = counts.get(key, (0, set(), set()))
        hosts.add(c.host)
        requests.add(c.request)
        counts[key] = (count + 1, hosts, requests)
    return [Group(*key, count, tuple(sorted(hosts)), tuple(sorted(requests)))
            for key, (count, hosts, requests) in sorted(counts.items())]


# --- reading the log files from a saved position ---------------------------------------------------------------

# source name (the broker's directory name, "openbao") -> [inode, CRC of the file's first bytes, byte offset read up
# to]. The CRC tells a new file that took a deleted one's inode from the file the position was saved in.
Positions = dict[str, list[int]]
HEAD_BYTES = 64  # a line's timestamp, to the millisecond, and the start of its message


@dataclass(frozen=True)
class Source:
    """A log the trail reads: its path (rotated files beside it as <name>.1 … .5) and how one of its lines reads."""

    path: Path
    parse: Callable[[str], Check | None] = parse_line


def authorizer_logs(state_dir: Path, cluster: str = "private") -> dict[str, Source]:
    """Each broker of `cluster` in the local stack and its authorizer log (kafka-private, kafka-private-2, …)."""
    return {path.parent.parent.name: Source(path)
            for path in sorted(state_dir.glob(f"kafka-{cluster}*/logs/{AUTHORIZER_LOG}"))}


def _identity(path: Path) -> tuple[int, int] | None:
    """(inode, CRC of the first bytes) of a file, None if it is not there (or still empty)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(HEAD_BYTES)
            inode = os.fstat(handle.fileno()).st_ino
    except OSError:
        return None
    return (inode, zlib.crc32(head)) if head else None


def _rotated(path: Path) -> Iterator[Path]:
    for n in range(1, ROTATED_KEEP + 1):
        yield path.with_name(f"{path.name}.{n}")


def _file_of(path: Path, identity: tuple[int, int]) -> Path | None:
    """`path` or a rotated file of it that is the file `identity` names (log4j renames on rotation: the inode and
    the first bytes stay)."""
    for candidate in (path, *_rotated(path)):
        if _identity(candidate) == identity:
            return candidate
    return None


@dataclass(frozen=True)
class Collected:
    """What one pass read: the checks of closed minutes, and the positions to go on from."""

    checks: list[Check]
    positions: Positions
    gaps: list[str]  # sources whose saved position was rotated away before it was read (checks lost there)


def _lines_until_open_minute(handle: Any, parse: Callable[[str], Check | None], open_from: str, checks: list[Check]
                             ) -> tuple[int, bool]:
    """Read whole lines from `handle`; return (offset after the last line taken, whether it stopped at an open
    minute). A line of a minute not yet over, and a line still being written, are left for the next pass."""
    taken = handle.tell()
    for raw in iter(handle.readline, b""):
        if not raw.endswith(b"\n"):
            break
        line = raw.decode("utf-8", "replace")
        check = parse(line)
        if check is not None and check.minute >= open_from:
            return taken, True
        if check is not None:
            checks.append(check)
        taken = handle.tell()
    return taken, False


def collect(sources: Mapping[str, Source], positions: Mapping[str, list[int]], open_from: str) -> Collected:
    """Read every source from its saved position up to the first line of a minute at or after `open_from` (the
    minute now, which is not over): those minutes are counted whole in a later pass, so each group is one entry.

    A file rotated since the last pass is read to its end first (found by its inode), then the new one from its
    start. A source without a saved position is read from its start.
    """
    checks: list[Check] = []
    after: Positions = {name: list(pos) for name, pos in positions.items()}
    gaps: list[str] = []
    for name, source in sources.items():
        path = source.path
        current = _identity(path)
        if current is None:
            continue
        inode, head, offset = positions.get(name, [*current, 0])
        if (inode, head) != current:
            old = _file_of(path, (inode, head))
            if old is None:
                gaps.append(name)
            else:
                with old.open("rb") as handle:
                    handle.seek(offset)
                    taken, stopped = _lines_until_open_minute(handle, source.parse, open_from, checks)
                if stopped:  # rotated within the minute now: the rest of it waits in the old file
                    after[name] = [inode, head, taken]
                    continue
            offset = 0
        if offset > path.stat().st_size:  # truncated in place (not log4j's way): start again
            offset = 0
        with path.open("rb") as handle:
            handle.seek(offset)
            taken, _ = _lines_until_open_minute(handle, source.parse, open_from, checks)
        after[name] = [*current, taken]
    return Collected(checks, after, gaps)


def read_range(sources: Mapping[str, Source], start: Mapping[str, list[int]], end: Mapping[str, list[int]]
               ) -> list[Check]:
    """The checks between two saved positions (a pass the writer did not finish storing), read again exactly."""
    checks: list[Check] = []
    for name, source in sources.items():
        if name not in end:
            continue
        end_inode, end_head, end_offset = end[name]
        begin_inode, begin_head, begin_offset = start.get(name, [end_inode, end_head, 0])
        same = (begin_inode, begin_head) == (end_inode, end_head)
        pieces = [((begin_inode, begin_head), begin_offset, end_offset if same else None)]
        if not same:
            pieces.append(((end_inode, end_head), 0, end_offset))
        for identity, offset, stop in pieces:
            found = _file_of(source.path, identity)
            if found is None:
                continue
            with found.open("rb") as handle:
                handle.seek(offset)
                for raw in iter(handle.readline, b""):
                    if stop is not None and handle.tell() > stop or not raw.endswith(b"\n"):
                        break
                    check = source.parse(raw.decode("utf-8", "replace"))
                    if check is not None:
                        checks.append(check)
    return checks


def open_minute(now_ms: int) -> str:
    """The first minute not yet counted at `now_ms`: the one now, or the one before it for CLOSE_AFTER_MS."""
    moment = datetime.fromtimestamp((now_ms - CLOSE_AFTER_MS) / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M")


def trail_pass(appender: Appender, sources: Mapping[str, Source], now_ms: int) -> tuple[Appended, list[str]]:
    """One pass of the audit writer over the trail's logs (the authorizer logs, OpenBao's audit device): the groups
    of the minutes closed since the last pass, chained; and the sources whose unread lines were rotated away (named
    in a log line, never guessed at).

    If the last pass was stored only in part (the writer died between its entries), it is read again between the
    same positions and only the groups not stored yet are chained: nothing counted twice, nothing skipped.
    """
    trail = appender.chain.trail
    if trail and trail["part"][0] < trail["part"][1] - 1:
        groups = grouped(read_range(sources, trail["from"], trail["to"]))
        return appender.append_access([g.fields() for g in groups], trail["from"], trail["to"],
                                      skip=trail["part"][0] + 1), []
    start = trail.get("to", {})
    collected = collect(sources, start, open_minute(now_ms))
    return appender.append_access([g.fields() for g in grouped(collected.checks)], start,
                                  collected.positions), collected.gaps
