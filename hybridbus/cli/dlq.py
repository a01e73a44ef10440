"""`hbus dlq list|show|redrive`: inspect the dead-letter queue and re-send records after a fix.

Records keep their original bytes and headers on `_hbus.dlq`; a redrive puts them back on the ingress topic
they came from, so the router judges them again (and sends them back here if they are still bad).
"""
from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import typer
from confluent_kafka import Message

from hybridbus.adapters import kafka
from hybridbus.adapters.topology import DECISIONS_TOPIC, DLQ_TOPIC, PRIVATE
from hybridbus.cli.output import FAILED, emit_json, fail, table
from hybridbus.runtime.decisions import DecisionRecord
from routing import headers as H

app = typer.Typer(help="Inspect and re-send dead-letter records.\n\nExample: hbus dlq list && hbus dlq redrive "
                  "--reason 'unknown schema' --yes", no_args_is_help=True)

# Headers the DLQ adds; a redriven record goes back without them.
DLQ_HEADERS = {H.DLQ_REASON, H.SOURCE_TOPIC, "hbus-source-partition"}


def _records(max_records: int | None = None) -> Iterator[Message]:
    return kafka.read_all(PRIVATE, kafka.admin_credentials(PRIVATE), DLQ_TOPIC, "hbus-dlq-cli", max_records=max_records)


def _header(msg: Message, name: str) -> str:
    for key, value in msg.headers() or []:
        if key == name and value is not None:
            return value.decode("utf-8", "replace")
    return ""


def _summary(msg: Message) -> dict[str, Any]:
    return {"partition": msg.partition(), "offset": msg.offset(), "event_id": _header(msg, H.EVENT_ID),
            "source_topic": _header(msg, H.SOURCE_TOPIC), "reason": _header(msg, H.DLQ_REASON),
            "bytes": len(msg.value() or b""), "timestamp_ms": msg.timestamp()[1]}


@app.command("list")
def list_cmd(limit: int = typer.Option(50, "--limit", help="Records to show (newest last)."),
             as_json: bool = typer.Option(False, "--json")) -> None:
    """Counts per reason, then the records (never their payloads).

    Example: hbus dlq list --limit 20
    """
    records = sorted((_summary(m) for m in _records()), key=lambda r: (r["timestamp_ms"], r["partition"], r["offset"]))
    reasons = Counter(r["reason"] for r in records)
    if as_json:
        emit_json({"total": len(records), "by_reason": dict(reasons), "records": records[-limit:]})
        return
    typer.echo(table(["reason", "records"], reasons.most_common()))
    typer.echo(table(["partition", "offset", "event_id", "source_topic", "reason"],
                     [[r["partition"], r["offset"], r["event_id"], r["source_topic"], r["reason"]] for r in records[-limit:]]))


@app.command()
def show(partition: int = typer.Argument(...), offset: int = typer.Argument(...),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """One record: its reason, headers and size (the bytes are not printed: they may hold personal data).

    Example: hbus dlq show 0 42
    """
    for msg in _records():
        if msg.partition() == partition and msg.offset() == offset:
            data = _summary(msg) | {"headers": {k: (v or b"").decode("utf-8", "replace") for k, v in msg.headers() or []}}
            emit_json(data) if as_json else typer.echo("\n".join(f"{k}: {v}" for k, v in data.items()))
            return
    raise fail(f"no DLQ record at partition {partition} offset {offset}")


@app.command()
def redrive(reason: str | None = typer.Option(None, "--reason", help="Only records whose reason contains this."),
            source_topic: str | None = typer.Option(None, "--topic", help="Only records from this ingress topic."),
            yes: bool = typer.Option(False, "--yes", help="Really re-send (otherwise: say what would be sent)."),
            by: str = typer.Option("operator", "--by", help="Who redrives, for the audit trail.")) -> None:
    """Re-send matching records to the ingress topic they came from, with their original bytes and headers.

    Example: hbus dlq redrive --reason 'unknown schema fingerprint' --yes
    """
    chosen = [m for m in _records() if (reason is None or reason in _header(m, H.DLQ_REASON))
              and (source_topic is None or _header(m, H.SOURCE_TOPIC) == source_topic)
              and _header(m, H.SOURCE_TOPIC).startswith("ingress.")]
    if not yes:
        typer.echo(f"would re-send {len(chosen)} records (add --yes)")
        return
    producer = kafka.producer(PRIVATE, kafka.admin_credentials(PRIVATE))
    failures: list[Any] = []
    now = int(time.time() * 1000)
    decisions = []
    for msg in chosen:
        headers = [(k, v) for k, v in msg.headers() or [] if k not in DLQ_HEADERS]
        producer.produce(_header(msg, H.SOURCE_TOPIC), msg.value(), key=msg.key(), headers=headers,
                         on_delivery=lambda err, _m: failures.append(err) if err else None)
        decisions.append(DecisionRecord("dlq", _header(msg, H.EVENT_ID), _header(msg, H.SOURCE_TOPIC).removeprefix("ingress."),
                                        "", "", "", "redrive", _header(msg, H.SOURCE_TOPIC), "dlq_redrive",
                                        f"redriven by {by}", now).__dict__)
    if decisions:
        producer.produce(DECISIONS_TOPIC, json.dumps(decisions, ensure_ascii=False).encode(), key=b"dlq")
    producer.flush(60)
    if failures:
        raise fail(f"{len(failures)} records were not re-sent: {failures[0]}", FAILED)
    typer.echo(f"re-sent {len(chosen)} records")
