"""Kafka records as the processors' steps see them: header lists in, records ready for `producer.produce` out.

Headers are confluent-kafka's: a list of (str, bytes) pairs, or None; a name may repeat and a value may be None.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hybridbus.adapters.topology import DLQ_TOPIC
from routing import headers as H

Headers = Sequence[tuple[str, bytes]]
# (topic, key, value, partition, headers): what `producer.produce(topic, value, key=, partition=, headers=)` takes;
# partition None lets the producer choose.
Record = tuple[str, "bytes | None", "bytes | None", "int | None", list[tuple[str, bytes]]]

SOURCE_PARTITION = "hbus-source-partition"
# Stamped on a quarantined copy by the guard that kept it, for its review (`hbus quarantine`): which guard, the
# grade it found and the digest of the catalog it judged under (a release needs a change since).
QUARANTINED_BY = "hbus-quarantined-by"
QUARANTINE_GRADE = "hbus-quarantine-grade"
CATALOG_DIGEST = "hbus-catalog-digest"
QUARANTINE_HEADERS = frozenset({H.DLQ_REASON, H.SOURCE_TOPIC, SOURCE_PARTITION, QUARANTINED_BY, QUARANTINE_GRADE,
                                CATALOG_DIGEST})


@dataclass(frozen=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    partition: int | None = None


def header_map(headers: Headers | Mapping[str, bytes] | None) -> dict[str, bytes]:
    """The headers by name (the last of a repeated name wins), without the None values."""
    if not headers:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {k: (v if isinstance(v, bytes) else str(v).encode()) for k, v in items if v is not None}


def header(headers: Headers | None, name: str) -> str:
    """The text of one header of a record's header list: its first value ("" when absent or not UTF-8)."""
    for key, value in headers or ():
        if key == name and value is not None:
            try:
                return value.decode("utf-8") if isinstance(value, bytes) else str(value)
            except UnicodeDecodeError:
                return ""
    return ""


def text(value: bytes | str | None) -> str:
    """A header value as text: "" when absent, empty or not UTF-8."""
    if not value:
        return ""
    if type(value) is not bytes:
        value = value if isinstance(value, bytes) else str(value).encode()
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return ""


def event_id_of(hdrs: Mapping[str, bytes | None], key: bytes | None) -> str:
    """The event id: its header, else the record key."""
    value = hdrs.get(H.EVENT_ID)
    if value and type(value) is bytes:  # the usual case, without a second call
        try:
            event_id = value.decode("utf-8")
        except UnicodeDecodeError:
            event_id = ""
    else:
        event_id = text(value)
    return event_id or (key.decode("utf-8", "replace") if key else "")


def dlq_record(topic: str, partition: int, key: bytes | None, value: bytes | None, hdrs: Mapping[str, bytes],
               reason: str) -> Record:
    """The `_hbus.dlq` copy of a refused ingress record: its bytes, its own headers and where it came from."""
    out_headers = [(k, v) for k, v in hdrs.items() if k not in H.ROUTER_HEADERS]
    out_headers += [(H.DLQ_REASON, reason.encode()), (H.SOURCE_TOPIC, topic.encode()),
                    (SOURCE_PARTITION, str(partition).encode())]
    return (DLQ_TOPIC, key, value or b"", None, out_headers)


def quarantine_headers(headers: Headers | None, reason: str, source_topic: str,
                       stamp: Sequence[tuple[str, bytes]] = ()) -> list[tuple[str, bytes]]:
    """The headers of a record the boundary guard keeps on the private side: its own, why and whence, and the
    guard's `stamp` (see QUARANTINED_BY)."""
    return list(headers or []) + [(H.DLQ_REASON, reason.encode()), (H.SOURCE_TOPIC, source_topic.encode()), *stamp]
