"""What the audit writer keeps for the archive and how the archive files it, without a broker or a bucket."""
from __future__ import annotations

import hashlib
import io
import json

from hybridbus.runtime import audit
from hybridbus.runtime.audit import Chain
from hybridbus.runtime.auditstore import AuditArchive, RecentEntries


def stored(count: int, every: int = 4, first_offset: int = 0) -> list[tuple[int, bytes]]:
    """`(offset, raw)` of a chain of `count` decisions with a checkpoint after every `every`."""
    chain, raws = Chain(), []
    for i in range(count):
        raws.append(chain.append(0, (i, 0), {"component": "router", "event_id": f"ev-{i}", "at_ms": 1_000 + i}))
        if chain.since_checkpoint == every:
            raws.append(chain.checkpoint("test:sig", 86_400_000 + i))
    return [(first_offset + i, raw) for i, raw in enumerate(raws)]


def raws(entries: list[tuple[int, bytes]]) -> list[bytes]:
    return [raw for _, raw in entries]


def test_recent_entries_read_like_the_topic_from_where_the_archive_is() -> None:
    entries = stored(12)  # checkpoints at offsets 4, 9, 14
    recent = RecentEntries(limit=100)
    recent.add(0, raws(entries[:7]))
    recent.add(7, raws(entries[7:]))
    assert recent.read(0) == entries
    assert recent.read(3) == entries[3:]
    assert recent.read(5, stop_after=3) == entries[5:10]  # up to the first checkpoint once 3 are in hand
    assert recent.read(5, stop_after=100) == entries[5:]  # no checkpoint after that many: all there is
    assert recent.read(4) is None  # forgotten once read from further on: the topic has them
    assert recent.read(len(entries)) == []  # nothing new
    assert recent.read(len(entries) + 1) is None


def test_recent_entries_hold_at_most_their_limit_and_only_an_unbroken_run() -> None:
    entries = stored(12)
    recent = RecentEntries(limit=5)
    recent.add(0, raws(entries))
    assert recent.read(len(entries) - 6) is None and recent.read(len(entries) - 5) == entries[-5:]
    recent = RecentEntries(limit=100)
    recent.add(0, raws(entries[:3]))
    recent.add(4, raws(entries[4:8]))  # offset 3 is not held: start over from 4
    assert recent.read(0) is None and recent.read(4) == entries[4:8]
    recent.forget()
    assert recent.read(8) is None


def test_only_a_checkpoint_closes_a_segment() -> None:
    entries = stored(4)
    assert [audit.closes_segment(raw) for _, raw in entries] == [False] * 4 + [True]
    said = Chain().append(0, (0, 0), {"reason": 'the "kind":"checkpoint" rule', "verdict": "checkpoint"})
    assert not audit.closes_segment(said)
    escaped = json.dumps({"seq": 1, "kind": "checkpoint"}, ensure_ascii=True).replace("c", "\\u0063", 1).encode()
    assert audit.closes_segment(escaped) and not audit.closes_segment(b"not json")


class Bucket:
    """The few S3 calls the archive makes, in memory."""

    class exceptions:  # noqa: N801 - boto3's spelling
        class NoSuchKey(Exception):
            pass

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_object(self, Bucket: str, Key: str, Body: bytes, **_: object) -> None:  # noqa: N803
        self.objects[Key] = Body

    def get_object(self, Bucket: str, Key: str) -> dict[str, io.BytesIO]:  # noqa: N803
        if Key not in self.objects:
            raise self.exceptions.NoSuchKey(Key)
        return {"Body": io.BytesIO(self.objects[Key])}

    def get_paginator(self, _name: str) -> Bucket:
        return self

    def paginate(self, Bucket: str, Prefix: str, Delimiter: str) -> list[dict[str, list[dict[str, str]]]]:  # noqa: N803
        days = sorted({key[len(Prefix):].split(Delimiter)[0] + Delimiter for key in self.objects})
        return [{"CommonPrefixes": [{"Prefix": Prefix + day} for day in days]}]


def test_the_archive_files_closed_segments_from_what_it_is_handed_in_bounded_pieces() -> None:
    entries = stored(30)  # seven closed segments and an open tail of two
    recent = RecentEntries(limit=1_000)
    recent.add(0, raws(entries))
    asked: list[int] = []

    def read(offset: int) -> list[tuple[int, bytes]]:
        asked.append(offset)
        piece = recent.read(offset, stop_after=10)
        assert piece is not None
        return piece

    archive = AuditArchive(Bucket(), "hbus-audit")
    assert archive.catch_up(read, max_entries=10) == 4
    segments = archive.segments()
    bodies = [archive.s3.objects[s["name"]] for s in segments]
    assert b"".join(bodies) == b"".join(raw + b"\n" for _, raw in entries[:35])
    assert [(s["first_seq"], s["last_seq"], s["entries"]) for s in segments] == [(0, 9, 10), (10, 19, 10),
                                                                                 (20, 29, 10), (30, 34, 5)]
    assert all(s["sha256"] == hashlib.sha256(body).hexdigest() for s, body in zip(segments, bodies))
    closing = json.loads(entries[34][1])
    assert (segments[-1]["head"], segments[-1]["signature"], segments[-1]["last_at_ms"]) == (
        closing["head"], closing["signature"], closing["at_ms"])
    assert segments[0]["first_at_ms"] == 1_000 and archive.manifest("1970-01-02")["next_offset"] == 35
    assert asked == [0, 10, 20, 30]  # a piece of at least 10 entries up to a checkpoint at a time
    assert archive.catch_up(read, max_entries=10) == 0
