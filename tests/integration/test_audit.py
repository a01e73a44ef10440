"""The audit trail on the real stack: one chained entry per decision, counted against the topics; `hbus audit
verify` passes untouched and names the entry of each tampering, on a copied topic and on an archived segment;
the writer killed with SIGKILL mid-stream leaves one continuous chain with every decision exactly once."""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable

from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic
from typer.testing import CliRunner

from hybridbus.adapters import kafka
from hybridbus.adapters.config import REPO_ROOT, Settings
from hybridbus.adapters.loaders import load_catalog
from hybridbus.adapters.topology import AUDIT_TOPIC, DECISIONS_TOPIC, PRIVATE, PUBLIC
from hybridbus.adapters.vault import VaultSession
from hybridbus.cli.audit import app as audit_cli
from hybridbus.ops.samples import SECRET_CANARY, sample_events
from hybridbus.ops.stack import workers
from hybridbus.ops.stack.bootstrap import s3_admin_client
from hybridbus.runtime import audit
from hybridbus.runtime.auditstore import AuditArchive, kafka_located, read_chain
from hybridbus.runtime.decisions import decode_record
from producers.publisher import Publisher
from routing import headers as H
from tests.integration.kafkatools import Record, end_offsets, list_topics, publish_burst

SAMPLES = REPO_ROOT / "schemas" / "samples"
Lines = list[bytes]


def read_since(cluster: str, since: dict[tuple[str, int], int]) -> list[Record]:
    """Every record written after the `since` offsets, up to the end of each partition as it is now."""
    consumer = kafka.consumer(cluster, kafka.admin_credentials(cluster), group=f"hbus-test-{uuid.uuid4().hex[:8]}")
    try:
        ends = {tp: consumer.get_watermark_offsets(TopicPartition(*tp), timeout=10)[1] for tp in since}
        todo = {tp: end for tp, end in ends.items() if end > since[tp]}
        consumer.assign([TopicPartition(t, p, since[(t, p)]) for t, p in todo])
        found, deadline = [], time.monotonic() + 60
        while todo and time.monotonic() < deadline:
            for msg in consumer.consume(2000, timeout=1.0):
                tp = (msg.topic(), msg.partition())
                if msg.error() or tp not in todo or msg.offset() >= todo[tp]:
                    continue
                found.append(Record(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                                    dict(msg.headers() or [])))
                if msg.offset() + 1 >= todo[tp]:
                    todo.pop(tp)
        assert not todo, f"could not read {sorted(todo)} to the end"
        return found
    finally:
        consumer.close()


def event_id(record: Record) -> str:
    return (record.headers.get(H.EVENT_ID) or record.key or b"").decode()


def offsets_now(cluster: str, topics: list[str]) -> dict[tuple[str, int], int]:
    return {(t, p): o for t in topics for p, o in end_offsets(cluster, t).items()}


def chained_since(since: int) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(raw) for _, raw in read_chain(kafka.admin_credentials(PRIVATE), AUDIT_TOPIC, since)]


def decisions_since(since: dict[tuple[str, int], int], wanted: Callable[[dict], bool]) -> dict[tuple[int, int, int], dict]:  # type: ignore[type-arg]
    """The decisions (by partition, offset, index on `_hbus.decisions`) written after `since` that `wanted` keeps."""
    return {(r.partition, r.offset, i): d for r in read_since(PRIVATE, since)
            for i, d in enumerate(decode_record(r.key, r.value)) if wanted(d)}  # compact or array: the same facts


def wait_until_chained(audit_since: int, decisions_since_: dict[tuple[str, int], int], wanted: Callable[[dict], bool],  # type: ignore[type-arg]
                       settled: Callable[[dict], bool], timeout: float = 90.0) -> tuple[dict, list[dict]]:  # type: ignore[type-arg]
    """Wait until the decisions `wanted` keeps are all `settled` and the chain holds as many entries for them."""
    deadline = time.monotonic() + timeout
    while True:
        decisions = decisions_since(decisions_since_, wanted)
        entries = [e for e in chained_since(audit_since) if e["kind"] == audit.DECISION and wanted(e)]
        if settled(decisions) and len(entries) >= len(decisions) or time.monotonic() > deadline:
            return decisions, entries
        time.sleep(1)


def verify_cli(*args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = CliRunner().invoke(audit_cli, ["verify", "--json", *args])
    assert result.stdout.strip(), result.output
    return result.exit_code, json.loads(result.stdout)


def test_every_routed_and_exported_event_has_one_audit_entry_per_decision(bus: Settings) -> None:
    catalog = load_catalog()
    tag = uuid.uuid4().hex[:8]
    private_topics = [t for t in list_topics(PRIVATE) if not t.startswith(("ingress.", "_hbus.", "hbus-"))]
    public_topics = list_topics(PUBLIC)
    private_since, public_since = offsets_now(PRIVATE, private_topics), offsets_now(PUBLIC, public_topics)
    dlq_since, decisions_at = offsets_now(PRIVATE, ["_hbus.dlq"]), offsets_now(PRIVATE, [DECISIONS_TOPIC])
    audit_since = end_offsets(PRIVATE, AUDIT_TOPIC)[0]

    # Honest events of every type (canaries in the non-public fields), and records that go to the DLQ.
    publishers: dict[str, Publisher] = {}
    for i, sample in enumerate(sample_events(catalog, SAMPLES, per_type=8, tag=tag)):
        dept = sample.event_type.dept
        publishers.setdefault(dept, Publisher.for_department(dept, catalog=catalog))
        publishers[dept].publish_async(sample.event_type.key, sample.payload, version=sample.event_type.version,
                                       event_id=f"{tag}-{i}")
    for publisher in publishers.values():
        assert publisher.flush(60) == 0
    admin = kafka.producer(PRIVATE, kafka.admin_credentials(PRIVATE))
    for i in range(10):
        admin.produce("ingress.market.licence_granted", f"not avro {SECRET_CANARY}".encode(), key=f"{tag}-junk-{i}".encode())
    assert admin.flush(30) == 0

    def ours(d: dict) -> bool:  # type: ignore[type-arg]
        return str(d.get("event_id", "")).startswith(f"{tag}-")

    def settled(decisions: dict) -> bool:  # type: ignore[type-arg]
        """Everything routed to the public side has been exported and archived too."""
        count = Counter(d["destination"] if d["component"] == "router" else d["verdict"] for d in decisions.values())
        return count["graded"] > 0 and count["public_cloud"] == count["exported"] and count["archive"] == count["archived"]

    decisions, entries = wait_until_chained(audit_since, decisions_at, ours, settled)
    assert settled(decisions), "egress and archiver did not catch up"

    # Each decision of the run is chained exactly once (by its position on `_hbus.decisions`).
    chained = Counter(tuple(e["src"]) for e in entries)
    assert not [src for src, n in chained.items() if n > 1], "a decision was chained twice"
    assert set(chained) == set(decisions)

    # Against the topics: every routed, dead-lettered and exported record of the run has exactly one entry.
    def one_entry_each(records: list[Record], verdict: str, destination: str) -> None:
        keyed = Counter((e["event_id"], e["topic"]) for e in entries
                        if e["verdict"] == verdict and e["destination"] == destination)
        ids = [(event_id(r), r.topic) for r in records if event_id(r).startswith(f"{tag}-")]
        assert ids and all(keyed[i] == 1 for i in ids), f"{verdict}: {[i for i in ids if keyed[i] != 1][:3]}"
        assert sum(keyed.values()) == len(ids), f"{verdict}: entries without a record"

    one_entry_each(read_since(PRIVATE, private_since), "routed", "graded")
    one_entry_each(read_since(PUBLIC, public_since), "exported", "public_cloud")
    dead = read_since(PRIVATE, dlq_since)
    assert len([r for r in dead if event_id(r).startswith(f"{tag}-junk-")]) == 10
    one_entry_each(dead, "dlq", "dlq")

    # No entry carries a payload value above public.
    assert not [e for e in chained_since(audit_since) if SECRET_CANARY in json.dumps(e, ensure_ascii=False)]

    # The auditor's queries answer from the chain.
    result = CliRunner().invoke(audit_cli, ["query", "event", f"{tag}-0", "--json"])
    assert result.exit_code == 0 and {r["component"] for r in json.loads(result.stdout)} >= {"router"}
    result = CliRunner().invoke(audit_cli, ["query", "published", "--ids", "--csv"])
    assert result.exit_code == 0 and sum(f"{tag}-" in line for line in result.stdout.splitlines()) == len(
        [e for e in entries if e["verdict"] in audit.PUBLISHED])


def test_rules_apply_is_on_the_audit_trail(bus: Settings) -> None:
    from hybridbus.cli.rules import app as rules_cli
    from hybridbus.ops.people import TOKEN_ENV, sample_login

    audit_since = end_offsets(PRIVATE, AUDIT_TOPIC)[0]
    engineer = sample_login("li.wei", bus)  # the actor comes from the login, never from a flag
    for args in (["apply", "--shadow"], ["apply", "--withdraw-shadow"]):
        result = CliRunner().invoke(rules_cli, args, env={TOKEN_ENV: engineer.token})
        assert result.exit_code == 0, result.output
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        changes = [e for e in audit.rule_changes(chained_since(audit_since)) if e["actor"] == engineer.name]
        if len(changes) == 2:
            break
        time.sleep(1)
    assert [c["verdict"] for c in changes] == ["shadow_applied", "shadow_withdrawn"]
    result = CliRunner().invoke(audit_cli, ["query", "rules", "--json"])
    assert engineer.name in result.stdout


def tamperings(lines: Lines, at: int) -> dict[str, tuple[Lines, int]]:
    """The four tamperings of stored entries at index `at`, each with the sequence number verify must name.

    In each, the entry verify stops at ends up at index `at`.
    """
    edited = json.loads(lines[at])
    edited["dept"] = "tampered"

    def seq(index: int) -> int:
        return int(json.loads(lines[index])["seq"])

    return {
        audit.EDITED: (lines[:at] + [json.dumps(edited).encode()] + lines[at + 1:], seq(at)),
        audit.DELETED: (lines[:at] + lines[at + 1:], seq(at)),
        audit.INSERTED: (lines[:at] + [lines[at - 2]] + lines[at:], seq(at - 2)),
        audit.REORDERED: (lines[:at] + [lines[at + 1], lines[at]] + lines[at + 2:], seq(at)),
    }


def decision_index(lines: Lines, low: int) -> int:
    """An index from `low` on with decision entries before and after it (tamperings then stay inside one kind)."""
    at = decision_run(lines, low)
    assert at is not None, "no run of four decisions in the chain copy"
    return at


def decision_run(lines: Lines, low: int) -> int | None:
    """The first index from `low` on (else from the start) amid a run of four decisions."""
    kinds = [json.loads(raw)["kind"] for raw in lines]
    runs = (i for start in (max(low, 2), 2) for i in range(start, len(lines) - 2)
            if kinds[i - 2:i + 2] == [audit.DECISION] * 4)
    return next(runs, None)


def tamperable_segment(archive: AuditArchive) -> tuple[dict, bytes, int] | None:  # type: ignore[type-arg]
    """A recent archived segment with a run of four decisions (access entries of the brokers' reads interleave),
    its bytes, and the index to tamper with."""
    for segment in sorted(archive.segments()[-5:], key=lambda s: -s["entries"]):
        original = archive.s3.get_object(Bucket=archive.bucket, Key=segment["name"])["Body"].read()
        lines = original.splitlines()
        at = decision_run(lines, len(lines) // 2)
        if at is not None:
            return segment, original, at
    return None


def test_verify_names_each_tampering_of_a_copied_topic(bus: Settings) -> None:
    # Decisions of its own at the chain's end: the brokers' and OpenBao's access entries interleave elsewhere.
    audit_since, decisions_at = end_offsets(PRIVATE, AUDIT_TOPIC)[0], offsets_now(PRIVATE, [DECISIONS_TOPIC])
    ids = set(publish_burst(20))
    wait_until_chained(audit_since, decisions_at, lambda d: d.get("event_id") in ids,
                       lambda decisions: len(decisions) >= len(ids))
    code, summary = verify_cli()
    assert code == 0 and summary["ok"] and summary["entries"] > 0, summary
    lines = [raw for _, raw in read_chain(kafka.admin_credentials(PRIVATE))][-1500:]
    at = decision_index(lines, len(lines) // 2)
    admin = kafka.admin(PRIVATE, kafka.admin_credentials(PRIVATE))
    producer = kafka.producer(PRIVATE, kafka.admin_credentials(PRIVATE))
    for kind, (tampered, seq) in tamperings(lines, at).items():
        topic = f"_hbus.audit-copy-{kind}-{uuid.uuid4().hex[:6]}"
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
        try:
            for raw in tampered:
                producer.produce(topic, raw, partition=0)
            assert producer.flush(30) == 0
            code, summary = verify_cli("--topic", topic)
            assert code == 1, summary
            assert summary["finding"] | {"detail": ""} == {"kind": kind, "seq": seq, "where": f"{topic}@{at}", "detail": ""}
        finally:
            admin.delete_topics([topic])


def test_verify_names_each_tampering_of_an_archived_segment(bus: Settings) -> None:
    archive = AuditArchive(s3_admin_client(bus), bus.audit_bucket)
    deadline = time.monotonic() + 90  # a quiet chain is checkpointed and archived within a minute
    found = tamperable_segment(archive)
    while found is None and time.monotonic() < deadline:
        time.sleep(3)
        found = tamperable_segment(archive)
    assert found is not None, "no archived segment with a run of four decisions"
    code, summary = verify_cli("--source", "archive")
    assert code == 0 and summary["ok"] and summary["checkpoints"] > 0, summary
    segment, original, at = found
    lines = original.splitlines()
    try:
        for kind, (tampered, seq) in tamperings(lines, at).items():
            archive.s3.put_object(Bucket=bus.audit_bucket, Key=segment["name"], Body=b"\n".join(tampered) + b"\n")
            code, summary = verify_cli("--source", "archive", "--from", str(segment["last_at_ms"]),
                                       "--to", str(segment["last_at_ms"]))
            assert code == 1, summary
            where = f"{segment['name']}:{at + 1}"
            assert summary["finding"] | {"detail": ""} == {"kind": kind, "seq": seq, "where": where, "detail": ""}
    finally:
        archive.s3.put_object(Bucket=bus.audit_bucket, Key=segment["name"], Body=original)
    assert verify_cli("--source", "archive")[0] == 0


def test_audit_writer_killed_mid_stream_leaves_a_continuous_chain(bus: Settings) -> None:
    audit_since = end_offsets(PRIVATE, AUDIT_TOPIC)[0]
    decisions_at = offsets_now(PRIVATE, [DECISIONS_TOPIC])
    ids: list[str] = []
    thread = threading.Thread(target=lambda: ids.extend(publish_burst(2000)))
    thread.start()
    deadline = time.monotonic() + 30
    while end_offsets(PRIVATE, AUDIT_TOPIC)[0] < audit_since + 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workers.process(bus, "audit").kill(), "the audit writer was not running"
    killed_at = end_offsets(PRIVATE, AUDIT_TOPIC)[0]
    time.sleep(1.0)
    workers.start(bus, ("audit",))
    thread.join(120)
    wanted = set(ids)

    decisions, entries = wait_until_chained(
        audit_since, decisions_at, lambda d: d.get("event_id") in wanted,
        lambda ds: sum(d["verdict"] in ("exported", "archived") for d in ds.values()) == 2 * len(wanted))
    assert killed_at > audit_since + 200, "the writer was not killed mid-stream"
    chained = Counter(tuple(e["src"]) for e in entries)
    assert not [src for src, n in chained.items() if n > 1], "a decision was chained twice after the restart"
    assert set(chained) == set(decisions), f"{len(set(decisions) - set(chained))} decisions missing from the chain"

    # One continuous chain across the kill: from the entry before the burst to the end, every link holds.
    part = read_chain(kafka.admin_credentials(PRIVATE), AUDIT_TOPIC, max(0, audit_since - 1))
    anchor = json.loads(part[0][1]) if audit_since else None
    located = kafka_located(part[1:] if audit_since else part, AUDIT_TOPIC)
    result = audit.verify(located, VaultSession("audit", bus).signature_valid, anchor)
    assert result.ok, str(result.finding)
    assert result.checkpoints >= 1


def test_a_backlog_is_archived_in_bounded_pieces_of_joined_segments(bus: Settings) -> None:
    """A chain on a scratch topic archived into a scratch bucket, read a piece at a time: every closed entry lands
    once, in order, byte for byte, in objects that each end with a checkpoint and hold several segments."""
    lines = chain_lines(3_800, every=250)
    closing = max(i for i, raw in enumerate(lines) if json.loads(raw)["kind"] == audit.CHECKPOINT)
    topic, bucket = f"_hbus.audit-copy-{uuid.uuid4().hex[:6]}", f"hbus-audit-test-{uuid.uuid4().hex[:6]}"
    admin = kafka.admin(PRIVATE, kafka.admin_credentials(PRIVATE))
    producer = kafka.producer(PRIVATE, kafka.admin_credentials(PRIVATE))
    s3 = s3_admin_client(bus)
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    s3.create_bucket(Bucket=bucket)
    pieces: list[int] = []

    def read(offset: int) -> list[tuple[int, bytes]]:
        piece = read_chain(kafka.admin_credentials(PRIVATE), topic, offset, stop_after=len(lines) // 4)
        pieces.append(len(piece))
        return piece

    try:
        for raw in lines:
            producer.produce(topic, raw, partition=0)
        assert producer.flush(30) == 0
        archive = AuditArchive(s3, bucket)
        written = archive.catch_up(read, max_entries=len(lines) // 3)
        segments = archive.segments()
        bodies = [s3.get_object(Bucket=bucket, Key=s["name"])["Body"].read().splitlines() for s in segments]
        assert [raw for body in bodies for raw in body] == lines[:closing + 1]
        assert all(json.loads(body[-1])["kind"] == audit.CHECKPOINT for body in bodies)
        assert written == len(segments) > 1 and any(s["entries"] > longest_segment(lines) for s in segments)
        assert len(pieces) >= 3 and max(pieces[:-1]) < len(lines)  # bounded pieces, then the open tail
        assert archive.manifest(archive.days()[-1])["next_offset"] == closing + 1
        assert archive.catch_up(read) == 0  # nothing closed since: nothing written twice
    finally:
        admin.delete_topics([topic])
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=item["Key"])
        s3.delete_bucket(Bucket=bucket)


def longest_segment(lines: Lines) -> int:
    """The entries of the longest single closed segment (decisions up to and including one checkpoint)."""
    return max(len(items) for _, items in audit.closed_segments(list(enumerate(lines))))


def chain_lines(decisions: int, every: int) -> Lines:
    """A chain as the writer stores it, with a checkpoint after every `every` decisions and an open tail. The
    archive copies bytes and never checks a signature, so a stand-in one does."""
    chain, lines, now_ms = audit.Chain(), [], int(time.time() * 1000)
    for i in range(decisions):
        lines.append(chain.append(0, (i, 0), {"component": "router", "event_id": f"archive-test-{i}", "at_ms": now_ms}))
        if chain.since_checkpoint == every:
            lines.append(chain.checkpoint("vault:v1:stand-in", now_ms))
    return lines
