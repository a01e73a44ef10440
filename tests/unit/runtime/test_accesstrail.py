"""The brokers' access trail without a broker: authorizer log lines parsed, grouped per minute, read from a saved
position through rotations and restarts, and chained so that nothing is counted twice or skipped."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

from hybridbus.runtime import audit
from hybridbus.runtime.accesstrail import (
    AUTHORIZER_LOG,
    authorizer_logs,
    collect,
    grouped,
    open_minute,
    parse_line,
    trail_pass,
)
from hybridbus.runtime.audit import Appender, Chain, Located

FIXTURE = Path(__file__).with_name("kafka-authorizer.sample.log")
KEY = b"unit-test signing key (not a secret)"


def line(second: str, principal: str = "User:dept-health", result: str = "Allowed", operation: str = "READ",
         topic: str = "restricted.health.hospital_admission", request: str = "Fetch") -> str:
    """A line as the broker writes it with infra/local/log4j2.properties (the layout, then StandardAuthorizer's text)."""
    level = "DEBUG" if result == "Allowed" else "INFO"
    return (f"2026-11-30T{second}Z {level} Principal = {principal} is {result} operation = {operation} from host = "
            f"127.0.0.1 on resource = Topic:LITERAL:{topic} for request = {request} with resourceRefCount = 1 based "
            f"on rule MatchingAcl(acl=StandardAcl(resourceType=TOPIC, resourceName=restricted.health., "
            f"patternType=PREFIXED, principal={principal}, host=*, operation={operation}, permissionType=ALLOW))\n")


def test_a_line_says_who_did_what_on_which_topic_and_the_answer() -> None:
    check = parse_line(line("10:01:07.123"))
    assert check is not None
    assert (check.minute, check.who, check.principal, check.topic, check.operation, check.outcome, check.request) == (
        "2026-11-30T10:01", "health", "User:dept-health", "restricted.health.hospital_admission", "read", "allowed",
        "Fetch")
    denied = parse_line(line("10:01:08.000", principal="User:dept-market", result="Denied"))
    assert denied is not None and (denied.who, denied.outcome) == ("market", "denied")
    assert parse_line(line("10:01:09.000", principal="User:svc-router", operation="DESCRIBE")).who == "router"  # type: ignore[union-attr]
    assert parse_line("2026-11-30T10:01:07.123Z DEBUG Principal = User:dept-health is Allowed operation = READ from "
                      "host = 127.0.0.1 on resource = Group:LITERAL:dept-health.default for request = JOIN_GROUP "
                      "with resourceRefCount = 1") is None
    assert parse_line("2026-11-30T10:01:07.123Z DEBUG Principal = User:dept-he") is None
    assert parse_line("") is None


def test_real_broker_lines_parse() -> None:
    """Lines captured from the local stack's private broker (Kafka 4.1.1) while health's subscriber read its
    admissions topic and market asked for it: allowed at DEBUG, denied at INFO."""
    lines = FIXTURE.read_text(encoding="utf-8").splitlines()
    checks = [c for c in (parse_line(raw) for raw in lines) if c is not None]
    assert len(checks) == len(lines)
    assert {(c.who, c.operation, c.outcome, c.request) for c in checks if c.who == "health"} == {
        ("health", "describe", "allowed", "Metadata"), ("health", "describe", "allowed", "OffsetFetch"),
        ("health", "describe", "allowed", "ListOffsets"), ("health", "read", "allowed", "Fetch"),
        ("health", "read", "allowed", "OffsetCommit")}
    assert {(c.who, c.outcome) for c in checks if c.outcome == "denied"} == {("market", "denied")}
    assert {c.who for c in checks} == {"health", "market", "router", "admin"}
    groups = grouped(checks)
    assert sum(g.count for g in groups) == len(lines)
    assert {g.topic for g in groups} == {"restricted.health.hospital_admission", "internal.transport.road_closure",
                                         "_hbus.dlq"}


def test_a_polling_consumer_makes_one_group_a_minute() -> None:
    checks = [parse_line(line(f"10:01:{s:02d}.000")) for s in range(0, 60, 2)]
    checks += [parse_line(line("10:01:30.000", request="OffsetCommit")), parse_line(line("10:02:00.500"))]
    groups = grouped(c for c in checks if c is not None)
    assert [(g.minute, g.who, g.topic, g.operation, g.count) for g in groups] == [
        ("2026-11-30T10:01", "health", "restricted.health.hospital_admission", "read", 31),
        ("2026-11-30T10:02", "health", "restricted.health.hospital_admission", "read", 1)]
    assert groups[0].requests == ("Fetch", "OffsetCommit") and groups[0].hosts == ("127.0.0.1",)


def _broker_log(state: Path, broker: str = "kafka-private") -> Path:
    path = state / broker / "logs" / AUTHORIZER_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_only_closed_minutes_are_read_and_never_twice(tmp_path: Path) -> None:
    log = _broker_log(tmp_path)
    log.write_text(line("10:01:01.000") + line("10:01:59.999") + line("10:02:00.100"))
    sources = authorizer_logs(tmp_path)
    assert list(sources) == ["kafka-private"]
    first = collect(sources, {}, "2026-11-30T10:02")
    assert [c.minute for c in first.checks] == ["2026-11-30T10:01"] * 2
    again = collect(sources, first.positions, "2026-11-30T10:02")
    assert again.checks == [] and again.positions == first.positions
    with log.open("a") as out:
        out.write(line("10:02:30.000") + line("10:03:00.000")[:40])  # the last one still being written
    later = collect(sources, first.positions, "2026-11-30T10:04")
    assert [c.minute for c in later.checks] == ["2026-11-30T10:02"] * 2
    with log.open("a") as out:
        out.write(line("10:03:00.000")[40:])
    assert [c.minute for c in collect(sources, later.positions, "2026-11-30T10:04").checks] == ["2026-11-30T10:03"]


def test_a_rotated_file_is_read_to_its_end_then_the_new_one(tmp_path: Path) -> None:
    log = _broker_log(tmp_path)
    log.write_text(line("10:01:01.000"))
    sources = authorizer_logs(tmp_path)
    first = collect(sources, {}, "2026-11-30T10:05")
    with log.open("a") as out:
        out.write(line("10:02:01.000"))
    os.rename(log, log.with_name(AUTHORIZER_LOG + ".1"))  # log4j's rollover: renamed, a new file begun
    log.write_text(line("10:03:01.000"))
    second = collect(sources, first.positions, "2026-11-30T10:05")
    assert [c.minute for c in second.checks] == ["2026-11-30T10:02", "2026-11-30T10:03"]
    assert second.positions["kafka-private"][0] == os.stat(log).st_ino and second.gaps == []
    assert second.positions["kafka-private"][2] == log.stat().st_size
    assert collect(sources, second.positions, "2026-11-30T10:05").checks == []


def test_a_position_rotated_away_is_named_as_a_gap(tmp_path: Path) -> None:
    log = _broker_log(tmp_path)
    log.write_text(line("10:01:01.000"))
    sources = authorizer_logs(tmp_path)
    first = collect(sources, {}, "2026-11-30T10:05")
    log.unlink()
    log.write_text(line("10:03:01.000"))  # may well reuse the inode: its first bytes differ
    second = collect(sources, first.positions, "2026-11-30T10:05")
    assert second.gaps == ["kafka-private"] and [c.minute for c in second.checks] == ["2026-11-30T10:03"]


def test_open_minute_waits_a_few_seconds_past_the_minute() -> None:
    assert open_minute(1_796_032_922_000) == "2026-11-30T10:01"  # 10:02:02: 10:01 may still get a late line
    assert open_minute(1_796_032_926_000) == "2026-11-30T10:02"  # 10:02:06


def _sign(message: bytes) -> str:
    return "test:" + hmac.new(KEY, message, hashlib.sha256).hexdigest()


def _ok(message: bytes, signature: str) -> bool:
    return hmac.compare_digest(_sign(message), signature)


def _written(tmp_path: Path) -> dict[str, Path]:
    two = _broker_log(tmp_path, "kafka-private-2")
    _broker_log(tmp_path).write_text(line("10:01:01.000") + line("10:01:02.000", topic="sensitive.health.x"))
    two.write_text(line("10:01:03.000") + line("10:01:04.000", principal="User:dept-market", result="Denied")
                   + line("10:02:04.000", principal="User:dept-traffic", topic="internal.traffic.y"))
    return authorizer_logs(tmp_path)


def test_groups_are_chained_hashed_and_signed_like_decisions(tmp_path: Path) -> None:
    sources = _written(tmp_path)
    appender = Appender(Chain(), _sign, 3, lambda: 1_796_033_000_000)  # 10:03:20: minutes up to 10:02 are over
    appended, gaps = trail_pass(appender, sources, 1_796_033_000_000)
    assert gaps == [] and appended.accesses == 4 and len(appended.checkpoints_at_ms) == 1
    entries = [json.loads(raw) for raw in appended.entries]
    groups = [e for e in entries if e["kind"] == audit.ACCESS]
    # The reads of both brokers in one minute are one group: a partition's fetches go to its leader.
    assert [(e["minute"], e["who"], e["topic"], e["outcome"], e["count"]) for e in groups] == [
        ("2026-11-30T10:01", "health", "restricted.health.hospital_admission", "allowed", 2),
        ("2026-11-30T10:01", "health", "sensitive.health.x", "allowed", 1),
        ("2026-11-30T10:01", "market", "restricted.health.hospital_admission", "denied", 1),
        ("2026-11-30T10:02", "traffic", "internal.traffic.y", "allowed", 1)]
    assert audit.verify([Located(str(i), raw) for i, raw in enumerate(appended.entries)], _ok).ok
    assert trail_pass(appender, sources, 1_796_033_000_000)[0].entries == []  # nothing new: nothing chained
    # A writer resuming from the checkpoint alone goes on from where the trail was read.
    checkpoint = next(e for e in entries if e["kind"] == audit.CHECKPOINT)
    assert Chain.resume([checkpoint, *entries[entries.index(checkpoint) + 1:]]).trail == appender.chain.trail


def test_a_pass_stored_in_part_is_finished_without_counting_twice(tmp_path: Path) -> None:
    sources = _written(tmp_path)
    whole = Appender(Chain(), _sign, 1_000, lambda: 0)
    entries = [json.loads(raw) for raw in trail_pass(whole, sources, 1_796_033_000_000)[0].entries]
    # The writer died with two of the pass's four groups stored; it resumes from the stored tail.
    resumed = Appender(Chain.resume(entries[:2]), _sign, 1_000, lambda: 0)
    with _broker_log(tmp_path).open("a") as out:
        out.write(line("10:02:30.000"))  # more reads meanwhile: counted by the next pass, not this one
    finished = [json.loads(raw) for raw in trail_pass(resumed, sources, 1_796_033_000_000)[0].entries]
    assert [(e["who"], e["topic"], e["count"]) for e in entries[:2] + finished] == \
        [(e["who"], e["topic"], e["count"]) for e in entries]
    following = [json.loads(raw) for raw in trail_pass(resumed, sources, 1_796_033_000_000)[0].entries]
    assert [(e["minute"], e["who"], e["count"]) for e in following] == [("2026-11-30T10:02", "health", 1)]
