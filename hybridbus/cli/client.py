"""`hbus publish|tail|outbox relay|gateway`: the department client and the ingest gateway, for people.

Quiet on success except for what was asked for; `--json` for machines; exit 1 bad input, 3 unreachable.
"""
from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import typer

from hybridbus.adapters.topology import PRIVATE, PUBLIC
from hybridbus.cli.output import FAILED, UNAVAILABLE, USAGE, fail

outbox_app = typer.Typer(help="Relay a SQLite outbox to Kafka.\n\n"
                         "Example: hbus outbox relay --db app.db --dept market --follow", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the client commands to the `hbus` app."""
    app.command("publish")(publish)
    app.command("tail")(tail)
    app.add_typer(outbox_app, name="outbox")
    app.command("gateway")(gateway)


def _read_json(source: str) -> Any:
    try:
        raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {source}: {exc.strerror}", USAGE) from None
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise fail(f"{source} is not valid UTF-8 (byte {exc.start})") from None
    except ValueError as exc:
        raise fail(f"{source} is not JSON: {exc}") from None


def publish(
    event_type: str = typer.Argument(..., help="<dept>.<event> of the catalog, e.g. market.licence_granted"),
    json_file: str = typer.Option(..., "--json", "-j", help="File with the payload as a JSON object; - for stdin."),
    dept: str | None = typer.Option(None, "--dept", help="Publish as this department (default: the type's owner)."),
    version: int | None = typer.Option(None, "--version", help="Schema version (default: the latest)."),
    event_id: str | None = typer.Option(None, "--event-id", help="Idempotency key (default: a new uuid4)."),
    trace_id: str | None = typer.Option(None, "--trace-id"),
    json_out: bool = typer.Option(False, "--json-out", help="Print the delivery as JSON."),
) -> None:
    """Publish one event and wait for Kafka's acknowledgement; prints event id, topic, partition, offset.

    Example: hbus publish market.licence_granted --json schemas/samples/market.licence_granted.v1.json
    """
    from hybridbus.adapters.loaders import load_catalog
    from hybridbus.adapters.vault import VaultUnavailable
    from producers.exceptions import DeliveryFailed, ProducerError, UnknownEventType
    from producers.publisher import EventEncoder, Publisher

    payload = _read_json(json_file)
    catalog = load_catalog()
    try:
        owner = EventEncoder(catalog).event_type(event_type, version).dept
    except UnknownEventType as exc:
        raise fail(str(exc)) from None
    try:
        publisher = Publisher.for_department(dept or owner, catalog=catalog, ack_timeout=30.0)
        delivery = publisher.publish(event_type, payload, event_id=event_id, trace_id=trace_id, version=version)
    except (VaultUnavailable, FileNotFoundError) as exc:
        raise fail(f"cannot log in as {dept or owner}: {exc}", UNAVAILABLE) from None
    except DeliveryFailed as exc:
        raise fail(str(exc), UNAVAILABLE) from None
    except ProducerError as exc:
        raise fail(str(exc)) from None
    if json_out:
        typer.echo(json.dumps({"event_id": delivery.event_id, "topic": delivery.topic,
                               "partition": delivery.partition, "offset": delivery.offset}))
    else:
        typer.echo(f"{delivery.event_id} {delivery.topic} {delivery.partition} {delivery.offset}")


def tail(
    topic: str = typer.Argument(..., help="Topic to read, e.g. ingress.market.licence_granted"),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Start at the oldest record, not the end."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per record (JSON lines)."),
    max_records: int | None = typer.Option(None, "--max", min=1, help="Stop after N records."),
    cluster: str = typer.Option(PRIVATE, "--cluster", help="private or public."),
    idle: float | None = typer.Option(None, "--idle", help="Stop after this many seconds without a record."),
) -> None:
    """Print records of a topic, decoded, with their headers (operator tool: uses the stack's admin login).

    Example: hbus tail ingress.market.licence_granted --from-beginning --max 5 --json
    """
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaError, TopicPartition

    from hybridbus.adapters import kafka
    from hybridbus.adapters.codec import AvroCodec
    from hybridbus.adapters.exceptions import CodecError
    from hybridbus.adapters.loaders import load_catalog

    if cluster not in (PRIVATE, PUBLIC):
        raise fail(f"--cluster must be {PRIVATE} or {PUBLIC}", USAGE)
    codec = AvroCodec.for_catalog(load_catalog())
    try:
        creds = kafka.admin_credentials(cluster)
    except FileNotFoundError:
        raise fail("no admin login of the local stack; run hbus stack up", UNAVAILABLE) from None
    consumer = kafka.consumer(cluster, creds, f"hbus-tail-{uuid.uuid4().hex[:8]}")
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        info = metadata.topics.get(topic)
        if info is None or info.error is not None:
            raise fail(f"topic {topic} not found on the {cluster} cluster", FAILED)
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        consumer.assign([TopicPartition(topic, p, start) for p in sorted(info.partitions)])
        seen = 0
        last = time.monotonic()
        while max_records is None or seen < max_records:
            msg = consumer.poll(0.5)
            if msg is None:
                if idle is not None and time.monotonic() - last >= idle:
                    break
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise fail(f"consuming {topic} failed: {msg.error().name()}", UNAVAILABLE)
            last = time.monotonic()
            seen += 1
            record: dict[str, Any] = {
                "topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(),
                "key": (msg.key() or b"").decode("utf-8", "replace"),
                "headers": {k: (v or b"").decode("utf-8", "replace") for k, v in (msg.headers() or [])},
            }
            try:
                event_type, payload = codec.decode(msg.value())
                record.update(event_type=event_type.key, version=event_type.version, payload=payload)
            except CodecError as exc:
                record.update(event_type=None, error=exc.reason, size=len(msg.value() or b""))
            _print_record(record, as_json)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


def _print_record(record: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(record, ensure_ascii=False, default=str))
        return
    where = f"{record['topic']}[{record['partition']}]@{record['offset']}"
    if record.get("event_type") is None:
        typer.echo(f"{where} undecodable ({record['error']}), {record['size']} bytes")
        return
    headers = " ".join(f"{k}={v}" for k, v in record["headers"].items())
    typer.echo(f"{where} {record['event_type']} v{record['version']} {headers}")
    typer.echo("  " + json.dumps(record["payload"], ensure_ascii=False, default=str))


@outbox_app.command("relay")
def relay(
    db: Path = typer.Option(..., "--db", help="The SQLite database holding the outbox table."),
    dept: str = typer.Option(..., "--dept", help="Department whose Kafka identity sends the events."),
    follow: bool = typer.Option(False, "--follow", help="Keep relaying new rows until interrupted."),
    batch: int = typer.Option(500, "--batch", min=1),
    interval: float = typer.Option(1.0, "--interval", help="Seconds between rounds with --follow."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Send the outbox's pending rows in order, marking each sent only after Kafka acknowledged it.

    Exit 0 when nothing is left pending, 3 when Kafka did not take every row (they stay for the next run).

    Example: hbus outbox relay --db app.db --dept market --follow
    """
    from hybridbus.adapters.vault import VaultUnavailable
    from producers.outbox import Outbox, RelayResult
    from producers.publisher import Publisher

    if not db.exists():
        raise fail(f"no database at {db}", USAGE)
    box = Outbox(db)
    try:
        publisher = Publisher.for_department(dept, catalog=box.encoder.catalog, ack_timeout=30.0)
    except (VaultUnavailable, FileNotFoundError) as exc:
        raise fail(f"cannot log in as {dept}: {exc}", UNAVAILABLE) from None

    def report(result: RelayResult) -> None:
        if as_json:
            typer.echo(json.dumps({"sent": result.sent, "pending": result.pending, "error": result.error}))
        elif follow or result.error:
            typer.echo(f"sent {result.sent}, pending {result.pending}" + (f": {result.error}" if result.error else ""),
                       err=bool(result.error))

    if follow:
        try:
            for result in box.follow(publisher, batch, interval):
                report(result)
        except KeyboardInterrupt:
            return
        return
    result = box.relay(publisher, batch)
    report(result)
    if result.error or result.pending:
        raise typer.Exit(UNAVAILABLE)


def gateway(
    port: int | None = typer.Option(None, "--port", help="Port on 127.0.0.1 (default: settings().ports.gateway)."),
    ack_timeout: float = typer.Option(10.0, "--ack-timeout", help="Seconds to wait for Kafka before a 503."),
) -> None:
    """Run the HTTP ingest gateway on 127.0.0.1 (tokens and Kafka login from Vault).

    Example: hbus gateway --port 19180 &
      curl -H "Authorization: Bearer $TOKEN" -d '{"payload": {...}}' \\
           http://127.0.0.1:19180/v1/events/market.licence_granted
    """
    from hybridbus.adapters.vault import VaultUnavailable
    from hybridbus.ops.asyncapi import asyncapi_for
    from producers.gateway import serve

    try:
        serve(port, ack_timeout=ack_timeout, asyncapi=lambda dept: asyncapi_for(dept=dept))
    except (VaultUnavailable, FileNotFoundError) as exc:
        raise fail(f"cannot start the gateway: {exc}", UNAVAILABLE) from None
