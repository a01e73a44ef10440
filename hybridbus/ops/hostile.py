"""Hostile input for the bus: generated bad events for its three ways in, each with the outcome it must get.

- `raw_records`: bytes put straight onto a department's ingress topics with its own login, past every
  client-side check. Each names the reason class the router must give it in `_hbus.dlq` (`expect`), or
  `FORGED` for a well-formed event whose headers claim a lower grade (routed by its schema, never by its word).
- `client_inputs`: calls of the department client (`producers.Publisher`), each naming the `ProducerError`
  it must raise before anything is sent.
- `gateway_requests`: HTTP requests to the ingest gateway, each naming the 4xx status it must be answered.

Pure and seeded: the same arguments give the same inputs, so a failure can be replayed.
"""
from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from hybridbus.adapters.codec import MARKER, AvroCodec
from routing import headers as H
from routing.catalog import Catalog, EventType
from routing.grades import Grade

FORGED = "forged"  # not a DLQ reason: routed to the graded topic of the schema's grade, counted as forged
TOO_LARGE_FOR_KAFKA = "too_large"  # refused by the Kafka client before it is sent
UNKNOWN_DEPT = "nodept"  # no department of the catalog has this id
OVERSIZED_BYTES = 600 * 1024  # under Kafka's 1 MiB record limit, so it reaches the router
KAFKA_LIMIT_BYTES = 2 * 1024 * 1024  # over it


@dataclass(frozen=True)
class RawRecord:
    kind: str  # the hostile-input class
    expect: str  # DLQ reason class (empty, decode_error, unknown_schema, wrong_topic, wrong_department), or FORGED
    dept: str  # whose login sends it
    topic: str
    key: bytes
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass(frozen=True)
class ClientInput:
    kind: str
    expect: str  # name of the ProducerError subclass the publisher must raise
    dept: str
    event_type: str
    payload: Any
    version: int | None = None
    event_id: str | None = None


@dataclass(frozen=True)
class GatewayRequest:
    kind: str
    expect: int  # HTTP status
    path: str
    auth: str | None  # a department (its real token), "bogus" (a made-up token) or None (no header)
    body: bytes


def _cycle(count: int, makers: list[Callable[[int], Any]]) -> Iterator[Any]:
    for i in range(count):
        yield makers[i % len(makers)](i)


# --- raw records -------------------------------------------------------------------------------------

def raw_records(catalog: Catalog, codec: AvroCodec, samples: Mapping[EventType, dict[str, Any]], count: int,
                tag: str, seed: int = 11) -> list[RawRecord]:
    """`count` records, every class in turn; `samples` holds one valid payload per event type (latest)."""
    rng = random.Random(seed)
    types = sorted(samples, key=lambda et: et.key)
    # A claim of `public` is a forgery on the sample only when the type is above public whatever it carries.
    forgeable = [et for et in types if et.record_grade > Grade.PUBLIC]

    def record(i: int, kind: str, expect: str, et: EventType, value: bytes | None,
               headers: list[tuple[str, bytes]] | None = None, sent_as: EventType | None = None) -> RawRecord:
        """A record of `et`, sent by its department on its topic (or by `sent_as`'s, on that one)."""
        via = sent_as or et
        return RawRecord(kind, expect, via.dept, via.ingress_topic, f"hostile-{tag}-{i}".encode(), value, headers or [])

    def valid(et: EventType) -> bytes:
        return codec.encode(et, samples[et])

    def garbage(i: int) -> RawRecord:
        value = bytes([rng.randrange(0xC3)]) + rng.randbytes(rng.randrange(300))  # never the C3 01 marker
        return record(i, "garbage", "decode_error", rng.choice(types), value)

    def empty(i: int) -> RawRecord:
        return record(i, "empty", "empty", rng.choice(types), None)

    def unknown_fingerprint(i: int) -> RawRecord:
        et = rng.choice(types)
        return record(i, "unknown_fingerprint", "unknown_schema", et, MARKER + rng.randbytes(8) + valid(et)[10:])

    def truncated(i: int) -> RawRecord:
        et = rng.choice(types)
        wire = valid(et)
        return record(i, "truncated", "decode_error", et, wire[:rng.randrange(1, len(wire))])

    def trailing(i: int) -> RawRecord:
        et = rng.choice(types)
        return record(i, "trailing_bytes", "decode_error", et, valid(et) + rng.randbytes(rng.randint(1, 20)))

    def bad_utf8(i: int) -> RawRecord:
        et = rng.choice(types)
        text_field = next(f.name for f in et.fields if f.avro_type == "string")
        placeholder = "Q" * rng.randint(4, 40)
        wire = codec.encode(et, {**samples[et], text_field: placeholder})
        invalid = bytes(rng.randrange(0xF8, 0x100) for _ in placeholder)  # bytes UTF-8 never uses
        return record(i, "bad_utf8", "decode_error", et, wire.replace(placeholder.encode(), invalid, 1))

    def wrong_type(i: int) -> RawRecord:
        et = rng.choice(types)  # JSON text where the Avro body belongs, under a valid header
        return record(i, "wrong_type", "decode_error", et, valid(et)[:10] + json.dumps(samples[et]).encode())

    def huge_length(i: int) -> RawRecord:
        et = rng.choice(types)  # the first field's length claims far more than the record holds
        claimed = rng.choice([2**40, 2**62, -1, len(valid(et)) + rng.randint(1, 10**6)])
        return record(i, "huge_length", "decode_error", et, valid(et)[:10] + _zigzag(claimed) + valid(et)[11:])

    def nested(i: int) -> RawRecord:
        depth = rng.randint(1000, 50_000)
        return record(i, "deeply_nested", "decode_error", rng.choice(types), b"[" * depth + b"]" * depth)

    def oversized(i: int) -> RawRecord:
        et = rng.choice(types)
        return record(i, "oversized", "decode_error", et, valid(et)[:10] + rng.randbytes(OVERSIZED_BYTES))

    def too_large_for_kafka(i: int) -> RawRecord:
        et = rng.choice(types)
        return record(i, "over_kafka_limit", TOO_LARGE_FOR_KAFKA, et, valid(et)[:10] + bytes(KAFKA_LIMIT_BYTES))

    def other_department_type(i: int) -> RawRecord:
        et = rng.choice(types)  # another department's event, on one of this department's topics
        sender = rng.choice([t for t in types if t.dept != et.dept])
        return record(i, "other_department_type", "wrong_topic", et, valid(et), sent_as=sender)

    def department_header(i: int) -> RawRecord:
        et = rng.choice(types)
        claimed = rng.choice([d for d in catalog.departments if d != et.dept] + [UNKNOWN_DEPT])
        return record(i, "unknown_department" if claimed == UNKNOWN_DEPT else "other_department_header",
                      "wrong_department", et, valid(et), [(H.DEPT, claimed.encode())])

    def lower_grade(i: int) -> RawRecord:
        et = rng.choice(forgeable)
        return record(i, "claims_lower_grade", FORGED, et, valid(et),
                      [(H.CLAIMED_GRADE, b"public"), (H.GRADE, b"public"), (H.DESTINATIONS, b"public_cloud,archive"),
                       (H.EVENT_ID, f"hostile-{tag}-{i}".encode())])

    makers: list[Callable[[int], RawRecord]] = [
        garbage, empty, unknown_fingerprint, truncated, trailing, bad_utf8, wrong_type, huge_length, nested,
        other_department_type, department_header, lower_grade]
    records = list(_cycle(count, makers))
    # A few big ones only: they cost megabytes each.
    records += [oversized(count + j) for j in range(5)] + [too_large_for_kafka(count + 5 + j) for j in range(3)]
    return records


def _zigzag(n: int) -> bytes:
    """Avro's long encoding (zig-zag, then base-128 varint)."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# --- client calls ------------------------------------------------------------------------------------

def _bad_values(rng: random.Random) -> list[tuple[str, str, Any]]:
    """(kind, expected error, a value no catalog field accepts)."""
    depth = rng.randint(50, 500)
    nested: Any = "x"
    for _ in range(depth):
        nested = [nested]
    return [
        ("wrong_type", "InvalidEvent", rng.choice([True, 3.5, {"a": 1}, [1, 2]])),
        ("bytes_for_text", "InvalidEvent", b"\x00text"),
        ("bad_utf8", "InvalidEvent", rng.choice(["\udcff\udcfe", "ok\ud800", b"\xff\xfe\xfd"])),
        ("deeply_nested", "InvalidEvent", nested),
        ("huge_array", "InvalidEvent", list(range(rng.randint(1000, 20_000)))),
    ]


def client_inputs(catalog: Catalog, samples: Mapping[EventType, dict[str, Any]], count: int,
                  seed: int = 13) -> list[ClientInput]:
    rng = random.Random(seed)
    types = sorted(samples, key=lambda et: et.key)

    def bad_field(i: int) -> ClientInput:
        et = rng.choice(types)
        kind, expect, value = rng.choice(_bad_values(rng))
        name = rng.choice([f.name for f in et.fields])
        return ClientInput(kind, expect, et.dept, et.key, {**samples[et], name: value})

    def missing_field(i: int) -> ClientInput:
        et = rng.choice(types)
        payload = dict(samples[et])
        del payload[rng.choice([f.name for f in et.fields if not f.has_default])]
        return ClientInput("missing_field", "InvalidEvent", et.dept, et.key, payload)

    def unknown_field(i: int) -> ClientInput:
        et = rng.choice(types)
        return ClientInput("unknown_field", "InvalidEvent", et.dept, et.key, {**samples[et], f"x{i}": "y"})

    def not_an_object(i: int) -> ClientInput:
        et = rng.choice(types)
        return ClientInput("not_an_object", "InvalidEvent", et.dept, et.key,
                           rng.choice([None, "text", 42, [samples[et]], b"\xc3\x01"]))

    def unknown_type(i: int) -> ClientInput:
        et = rng.choice(types)
        return ClientInput("unknown_type", "UnknownEventType", et.dept, f"{et.dept}.no_such_{i % 7}", samples[et])

    def unknown_department(i: int) -> ClientInput:
        et = rng.choice(types)
        return ClientInput("unknown_department", "UnknownEventType", et.dept, f"{UNKNOWN_DEPT}.{et.event}",
                           samples[et])

    def other_department(i: int) -> ClientInput:
        et = rng.choice(types)
        sender = rng.choice([d for d in catalog.departments if d != et.dept])
        return ClientInput("other_department_type", "NotOwner", sender, et.key, samples[et])

    def unknown_version(i: int) -> ClientInput:
        et = rng.choice(types)
        return ClientInput("unknown_version", "UnknownEventType", et.dept, et.key, samples[et],
                           version=rng.choice([0, 99, -1]))

    def bad_event_id(i: int) -> ClientInput:
        et = rng.choice(types)
        return ClientInput("bad_event_id", "InvalidEvent", et.dept, et.key, samples[et],
                           event_id=rng.choice(["", "has space", "证件", "x" * 200, "tab\there"]))

    def oversized(i: int) -> ClientInput:
        et = rng.choice(types)
        name = next(f.name for f in et.fields if f.avro_type == "string")
        return ClientInput("oversized", "EventTooLarge", et.dept, et.key, {**samples[et], name: "大" * 400_000})

    makers = [bad_field] * 4 + [missing_field, unknown_field, not_an_object, unknown_type, unknown_department,
                                other_department, unknown_version, bad_event_id]
    return list(_cycle(count, makers)) + [oversized(count + j) for j in range(5)]


# --- gateway requests --------------------------------------------------------------------------------

def gateway_requests(catalog: Catalog, samples: Mapping[EventType, dict[str, Any]], count: int,
                     seed: int = 17) -> list[GatewayRequest]:
    rng = random.Random(seed)
    types = sorted(samples, key=lambda et: et.key)

    def body(payload: Any, ascii_only: bool = False, **extra: Any) -> bytes:
        return json.dumps({"payload": payload, **extra}, ensure_ascii=ascii_only or rng.random() < 0.5).encode()

    def own(kind: str, expect: int, et: EventType, raw: bytes) -> GatewayRequest:
        return GatewayRequest(kind, expect, f"/v1/events/{et.key}", et.dept, raw)

    def no_token(i: int) -> GatewayRequest:
        et = rng.choice(types)
        return GatewayRequest("no_token", 401, f"/v1/events/{et.key}", rng.choice([None, "bogus"]), body(samples[et]))

    def unknown_type(i: int) -> GatewayRequest:
        et = rng.choice(types)
        path = rng.choice([f"/v1/events/{et.dept}.no_such", f"/v1/events/{UNKNOWN_DEPT}.{et.event}"])
        return GatewayRequest(rng.choice(["unknown_type", "unknown_department"]), 404, path, et.dept, body(samples[et]))

    def other_department(i: int) -> GatewayRequest:
        et = rng.choice(types)
        sender = rng.choice([d for d in catalog.departments if d != et.dept])
        return GatewayRequest("other_department_type", 403, f"/v1/events/{et.key}", sender, body(samples[et]))

    def garbage(i: int) -> GatewayRequest:
        et = rng.choice(types)
        raw = rng.choice([rng.randbytes(rng.randrange(1, 300)), b'{"payload": ', b"[" * 100_000,
                          b'{"payload": {"a": ' * 3000, MARKER + rng.randbytes(40)])
        return own("garbage", 400, et, raw)

    def bad_utf8(i: int) -> GatewayRequest:
        et = rng.choice(types)
        name = next(f.name for f in et.fields if f.avro_type == "string")
        raw = rng.choice([body(samples[et]).replace(b'"payload"', b'"pay\xffload"'),
                          body({**samples[et], name: "\udcff"}, ascii_only=True)])  # or a lone surrogate escape
        return own("bad_utf8", 400, et, raw)

    def bad_field(i: int) -> GatewayRequest:
        et = rng.choice(types)
        kind, _, value = rng.choice([v for v in _bad_values(rng) if v[0] not in ("bad_utf8", "bytes_for_text")])
        name = rng.choice([f.name for f in et.fields])
        return own(kind, 400, et, body({**samples[et], name: value}))

    def bad_envelope(i: int) -> GatewayRequest:
        et = rng.choice(types)
        extra = rng.choice([{"version": 99}, {"version": "1"}, {"occurred_at": -5}, {"event_id": "has space"},
                            {"grade": "public"}, {"occurred_at": False}])
        return own("bad_envelope", 400, et, body(samples[et], **extra))

    def oversized(i: int) -> GatewayRequest:
        et = rng.choice(types)
        name = next(f.name for f in et.fields if f.avro_type == "string")
        return own("oversized", 413, et, body({**samples[et], name: "x" * (1024 * 1024 + 70_000)}))

    makers = [no_token, unknown_type, other_department, garbage, bad_utf8, bad_field, bad_field, bad_envelope]
    return list(_cycle(count, makers)) + [oversized(count + j) for j in range(5)]
