"""`hbus audit verify|query`: prove the audit chain unaltered, and answer an auditor's questions from it.

The chain is read from the `_hbus.audit` topic (or a copy of it) or from the segments archived in the audit bucket.
"""
from __future__ import annotations

import csv
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import typer

from hybridbus.adapters import kafka
from hybridbus.adapters.config import settings
from hybridbus.adapters.topology import AUDIT_TOPIC, PRIVATE
from hybridbus.cli.output import FAILED, UNAVAILABLE, emit_json, fail, table
from hybridbus.runtime import audit
from hybridbus.runtime.auditstore import AuditArchive, kafka_located, read_chain

app = typer.Typer(help="Verify the tamper-evident audit chain and query it.\n\n"
                  "Example: hbus audit verify && hbus audit query published --from 2026-11-01 --to 2026-12-01",
                  no_args_is_help=True)
query = typer.Typer(help="What left for the public cloud, one event's history, every rule-set change.\n\n"
                    "Example: hbus audit query event 4f1c0e9a --json", no_args_is_help=True)
app.add_typer(query, name="query")

KAFKA, ARCHIVE = "kafka", "archive"
SOURCE = typer.Option(KAFKA, "--source", help="kafka (the _hbus.audit topic) or archive (the audit bucket).")
TOPIC = typer.Option(AUDIT_TOPIC, "--topic", help="Read this topic instead of _hbus.audit (e.g. a copy).")
FROM = typer.Option(None, "--from", help="Start time: ISO 8601 (2026-11-25T08:00:00Z) or epoch milliseconds.")
TO = typer.Option(None, "--to", help="End time (exclusive), same forms as --from.")
AS_JSON = typer.Option(False, "--json", help="JSON for machines.")
AS_CSV = typer.Option(False, "--csv", help="CSV for spreadsheets.")


def _when(text: str | None) -> int | None:
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise fail(f"not a time: {text!r} (use ISO 8601 or epoch milliseconds)", 2) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def _located(source: str, topic: str, from_ms: int | None = None, to_ms: int | None = None,
             ) -> tuple[list[audit.Located], list[str]]:
    """The stored entries in chain order, and (archive only) segments whose bytes differ from the manifest.

    The archive is read only around the time window, if one is given; the topic is read whole.
    """
    cfg = settings()
    try:
        if source == KAFKA:
            return kafka_located(read_chain(kafka.admin_credentials(PRIVATE, cfg), topic), topic), []
        if source == ARCHIVE:
            from hybridbus.ops.stack.bootstrap import s3_admin_client

            return AuditArchive(s3_admin_client(cfg), cfg.audit_bucket).located(from_ms, to_ms)
    except (OSError, RuntimeError, TimeoutError) as exc:
        raise fail(f"could not read the audit chain from {source}: {type(exc).__name__}", UNAVAILABLE) from None
    raise fail(f"--source is {KAFKA} or {ARCHIVE}", 2)


def _whole_objects(located: Sequence[audit.Located], start: int, end: int) -> tuple[int, int]:
    """Widen `[start, end)` to the archived objects it touches: an object may hold several signed segments, and
    one read whole is checked whole, so an edit anywhere in it is named by its line. Every object ends with a
    checkpoint, so the entry before the widened start is still a checkpoint to anchor on."""
    def name(index: int) -> str:
        return located[index].where.rsplit(":", 1)[0]

    if start < end:
        while start > 0 and name(start - 1) == name(start):
            start -= 1
        while end < len(located) and name(end) == name(end - 1):
            end += 1
    return start, end


def _entries(source: str, topic: str) -> list[dict[str, Any]]:
    return [entry for entry in (item.parse() for item in _located(source, topic)[0]) if entry is not None]


@app.command()
def verify(from_: str | None = FROM, to: str | None = TO, source: str = SOURCE, topic: str = TOPIC,
           as_json: bool = AS_JSON) -> None:
    """Re-walk the chain: every hash, every link, every checkpoint signature (checked by Vault Transit).

    Exit 1 naming the first entry edited, deleted, inserted or reordered. With --from/--to only the signed
    segments covering that window are walked.

    Example: hbus audit verify --source archive --from 2026-11-25T00:00:00Z
    """
    from hybridbus.adapters.vault import VaultSession, VaultUnavailable

    from_ms, to_ms = _when(from_), _when(to)
    located, altered = _located(source, topic, from_ms, to_ms)
    start, end = audit.window([item.parse() or {} for item in located], from_ms, to_ms)
    if source == ARCHIVE:
        start, end = _whole_objects(located, start, end)
    anchor = located[start - 1].parse() if start else None
    try:
        vault = VaultSession("audit", settings())
        result = audit.verify(located[start:end], vault.signature_valid, anchor)
    except VaultUnavailable as exc:
        raise fail(str(exc), UNAVAILABLE) from None
    finding = result.finding
    if finding is None and altered:  # the chain holds, yet stored bytes changed: say so all the same
        finding = audit.Finding(audit.EDITED, None, altered[0], "segment differs from its manifest digest")
    summary = {"ok": finding is None, "source": source, "entries": result.entries, "checkpoints": result.checkpoints,
               "first_seq": result.first_seq, "last_seq": result.last_seq, "unsigned_tail": result.unsigned_tail,
               "finding": None if finding is None else {"kind": finding.kind, "seq": finding.seq,
                                                        "where": finding.where, "detail": finding.detail}}
    if as_json:
        emit_json(summary)
    elif finding is None:
        typer.echo(f"chain ok: {result.entries} entries, {result.checkpoints} signed checkpoints, "
                   f"seq {result.first_seq}..{result.last_seq}, {result.unsigned_tail} entries await the next checkpoint")
    if finding is not None:
        raise fail(f"chain broken: {finding}", FAILED)


def _emit(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], as_json: bool, as_csv: bool) -> None:
    if as_json:
        emit_json([dict(r) for r in rows])
    elif as_csv:
        out = csv.DictWriter(sys.stdout, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
        out.writeheader()
        out.writerows(rows)
    else:
        typer.echo(table(list(columns), [[_cell(r, c) for c in columns] for r in rows]))


def _cell(row: Mapping[str, Any], column: str) -> Any:
    if column == "time":
        return datetime.fromtimestamp(row["at_ms"] / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")
    return row.get(column, "")


def _with_time(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{**row, "time": _cell(row, "time")} for row in rows]


@query.command("published")
def published_cmd(from_: str | None = FROM, to: str | None = TO, ids: bool = typer.Option(
                      False, "--ids", help="List the events (id, type, rule version, destination) instead of counts."),
                  source: str = SOURCE, topic: str = TOPIC, as_json: bool = AS_JSON, as_csv: bool = AS_CSV) -> None:
    """What left for the public cloud (public cluster and open-data bucket) between two times.

    Example: hbus audit query published --from 2026-11-25T00:00:00Z --to 2026-11-26T00:00:00Z --csv
    """
    window = audit.decisions_between(_entries(source, topic), _when(from_), _when(to))
    if ids:
        _emit(_with_time(audit.published(window)),
              ["time", "event_id", "dept", "event_type", "rules_version", "destination", "seq"], as_json, as_csv)
    else:
        _emit(audit.published_counts(window), ["dept", "event_type", "rules_version", "destination", "events"],
              as_json, as_csv)


@query.command("event")
def event_cmd(event_id: str = typer.Argument(..., help="The event id (hbus-event-id header)."),
              source: str = SOURCE, topic: str = TOPIC, as_json: bool = AS_JSON, as_csv: bool = AS_CSV) -> None:
    """The history of one event through the bus: every decision about it, in order (exit 1 if none).

    Example: hbus audit query event 4f1c0e9a7d2b4c1e
    """
    rows = _with_time(audit.event_history(_entries(source, topic), event_id))
    _emit(rows, ["time", "component", "verdict", "grade", "rules_version", "destination", "topic", "reason", "actor",
                 "seq"], as_json, as_csv)
    if not rows:
        raise fail(f"no audit entry for event {event_id}", FAILED)


@query.command("rules")
def rules_cmd(source: str = SOURCE, topic: str = TOPIC, as_json: bool = AS_JSON, as_csv: bool = AS_CSV) -> None:
    """Every rule-set change: version, live or shadow, who applied it and when.

    Example: hbus audit query rules --csv
    """
    rows = [{**row, "role": row["destination"]} for row in _with_time(audit.rule_changes(_entries(source, topic)))]
    _emit(rows, ["time", "verdict", "rules_version", "role", "actor", "reason", "seq"], as_json, as_csv)


@query.command("access")
def access_cmd(who: str | None = typer.Option(None, "--who", help="One identity, e.g. health, market, gateway."),
               topic: str | None = typer.Option(None, "--topic", help="One graded topic, e.g. "
                                                "restricted.health.hospital_admission: its reads, and the decrypts "
                                                "of the Transit key sealing its fields."),
               key: str | None = typer.Option(None, "--key", help="One Transit key or KV path, e.g. "
                                              "fields-health-restricted (who decrypted ID numbers)."),
               what: str | None = typer.Option(None, "--what", help="Topic, Transit key or KV path containing this "
                                                                    "text, e.g. health."),
               action: str | None = typer.Option(None, "--action", help="read or describe (brokers); transit-decrypt, "
                                                 "transit-datakey, transit-hmac or kv-read (Vault)."),
               from_: str | None = FROM, to: str | None = TO, source: str = SOURCE, as_json: bool = AS_JSON,
               as_csv: bool = AS_CSV) -> None:
    """Who read which graded topic (the brokers' authorizer) and who decrypted under which field key or read which
    secret (OpenBao's audit device), per minute with counts: all from the chain, hashed and signed.

    Example: hbus audit query access --topic restricted.health.hospital_admission --from 2026-11-23 --to 2026-11-30
    """
    from hybridbus.ops.access import COLUMNS, trail

    rows = trail(_entries(source, AUDIT_TOPIC), who=who, topic=topic, key=key, what=what, action=action,
                 from_ms=_when(from_), to_ms=_when(to))
    _emit(rows, COLUMNS, as_json, as_csv)
