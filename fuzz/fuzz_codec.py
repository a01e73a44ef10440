#!/usr/bin/env python3
"""Coverage-guided fuzz target for the Avro codec (`hybridbus/adapters/codec.py`).

The codec is the first code that touches bytes a department put on an ingress topic, and the last check
before a payload is encoded. Its contract, checked here on arbitrary input:

- `decode` returns an event or raises a `CodecError`; nothing else escapes;
- what decodes validates, encodes again and decodes back to the same event (no record the router accepts
  that the publisher would refuse);
- `validate` never raises, and `encode` raises only a `CodecError`, exactly on what `validate` refuses.

Run on demand (see fuzz/README.md): `python fuzz/fuzz_codec.py fuzz/corpus/codec -max_total_time=300`.
"""
from __future__ import annotations

import json
from functools import cache
from types import SimpleNamespace

# The first byte of an input chooses what the rest is, so the fuzzer need not rediscover the header.
RAW, BODY, JSON_PAYLOAD = range(3)
INSTRUMENTED = ["hybridbus", "routing", "fastavro"]


@cache
def target() -> SimpleNamespace:
    """The codec of the shipped catalog; imported here, so that the fuzzer can instrument what it imports."""
    from hybridbus.adapters.codec import MARKER, AvroCodec
    from hybridbus.adapters.exceptions import CodecError
    from hybridbus.adapters.loaders import load_catalog

    catalog = load_catalog()
    return SimpleNamespace(codec=AvroCodec.for_catalog(catalog), marker=MARKER, error=CodecError,
                           event_types=sorted(catalog, key=lambda et: (et.key, et.version)))


def test_one_input(data: bytes) -> None:
    """One fuzz input; raises (a crash) only when the codec breaks its contract."""
    if not data:
        return
    t = target()
    mode, rest = data[0] % 3, data[1:]
    event_type = t.event_types[(data[0] // 3) % len(t.event_types)]
    if mode == RAW:
        _decode_round_trip(t, rest)
    elif mode == BODY:
        _decode_round_trip(t, t.marker + t.codec.fingerprint(event_type) + rest)
    else:
        try:
            payload = json.loads(rest)
        except (ValueError, RecursionError):
            return
        _encode_round_trip(t, event_type, payload)


def _decode_round_trip(t: SimpleNamespace, wire: bytes) -> None:
    try:
        event_type, record = t.codec.decode(wire)
    except t.error:
        return
    problems = t.codec.validate(event_type, record)
    assert not problems, f"{event_type.key} decodes but does not validate: {problems}"
    again_type, again = t.codec.decode(t.codec.encode(event_type, record))
    assert again_type == event_type and again == record, f"{event_type.key} does not round-trip"


def _encode_round_trip(t: SimpleNamespace, event_type: object, payload: object) -> None:
    problems = t.codec.validate(event_type, payload)
    try:
        wire = t.codec.encode(event_type, payload)
    except t.error:
        assert problems, "encode refused a payload that validate() accepted"
        return
    assert not problems, f"encode took a payload validate() refused: {problems}"
    assert t.codec.decode(wire)[0] == event_type


if __name__ == "__main__":
    from fuzz.harness import run

    run(target, test_one_input, INSTRUMENTED)
