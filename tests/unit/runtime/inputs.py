"""What the runtime's step tests feed in: the shipped catalog and rules, every sample as an ingress record with a
publisher's headers, and the hostile corpus the router must put in its DLQ."""
from __future__ import annotations

from pathlib import Path

from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.loaders import load_catalog_dir, load_ruleset_dir
from hybridbus.ops.hostile import RawRecord, raw_records
from hybridbus.ops.samples import load_sample, sample_events
from routing import headers as H
from routing.catalog import Catalog, EventType
from routing.rules import RuleSet

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "schemas" / "samples"
NOW_MS = 1_795_600_000_000

# (topic, partition, key, value, headers): a record as confluent-kafka hands it to the router.
IngressRecord = tuple[str, int, bytes | None, bytes | None, list[tuple[str, bytes]] | None]


CATALOG: Catalog = load_catalog_dir(ROOT / "schemas" / "avro")
SHIPPED: RuleSet = load_ruleset_dir(ROOT / "routing" / "rules")


def fresh_codec() -> AvroCodec:
    """A codec of the catalog alone (steps add the derived views they learn to theirs)."""
    return AvroCodec.for_catalog(CATALOG)


def publisher_headers(event_type: EventType, event_id: str,
                      occurred_ms: int = NOW_MS - 1500) -> list[tuple[str, bytes]]:
    return [(H.EVENT_ID, event_id.encode()), (H.DEPT, event_type.dept.encode()),
            (H.EVENT_TYPE, event_type.key.encode()), (H.SCHEMA_VERSION, str(event_type.version).encode()),
            (H.OCCURRED_AT, str(occurred_ms).encode()), (H.TRACE_ID, event_id.encode())]


def sample_records(catalog: Catalog, codec: AvroCodec, per_type: int = 6, tag: str = "s") -> list[IngressRecord]:
    """Every event type and version of the catalog, varied, as its department's publisher sends it."""
    records: list[IngressRecord] = []
    for i, sample in enumerate(sample_events(catalog, SAMPLES, per_type=per_type, tag=tag)):
        et = sample.event_type
        records.append((et.ingress_topic, i % 3, f"{tag}-{i}".encode(), codec.encode(et, sample.payload),
                        publisher_headers(et, f"{tag}-{i}")))
    return records


def hostile(catalog: Catalog, codec: AvroCodec, count: int = 96) -> list[RawRecord]:
    samples = {et: load_sample(SAMPLES, et) for et in catalog.latest()}
    return raw_records(catalog, codec, samples, count, "unit")


def hostile_records(catalog: Catalog, codec: AvroCodec, count: int = 96) -> list[IngressRecord]:
    return [(r.topic, 1, r.key, r.value, r.headers) for r in hostile(catalog, codec, count)]
