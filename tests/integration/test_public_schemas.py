"""The public side can read what it receives: with the public reader's logins only, the Apache `avro` library finds
the schema of every record on the public cluster and in the open-data bucket under `_schemas/<fingerprint>.avsc`
and decodes it, derived views included."""
from __future__ import annotations

import io
import json
import time
import uuid
from typing import Any

import avro.datafile
import avro.io
import avro.schema
from confluent_kafka import TopicPartition

from hybridbus.adapters import kafka
from hybridbus.adapters.codec import schema_fingerprint
from hybridbus.adapters.config import REPO_ROOT, Settings
from hybridbus.adapters.loaders import derived_event_types, load_catalog, load_rules, public_event_types
from hybridbus.adapters.s3 import s3_client
from hybridbus.adapters.topology import PUBLIC
from hybridbus.adapters.vault import VaultSession
from hybridbus.ops.arrivals import expectation
from hybridbus.ops.samples import sample_events
from producers.publisher import Publisher
from routing import headers as H

PER_TYPE = 3
WITHIN = 180.0  # seconds for every record to reach both public places on a shared, busy machine


class PublicSchemas:
    """`_schemas/<fp>.avsc` of the open-data bucket, fetched and parsed by Apache Avro as a consumer would."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket
        self.parsed: dict[str, avro.schema.Schema] = {}

    def get(self, fingerprint: str) -> avro.schema.Schema:
        if fingerprint not in self.parsed:
            body = self.s3.get_object(Bucket=self.bucket, Key=f"_schemas/{fingerprint}.avsc")["Body"].read()
            self.parsed[fingerprint] = avro.schema.parse(body.decode("utf-8"))
        return self.parsed[fingerprint]


def decode_single_object(value: bytes, schemas: PublicSchemas) -> tuple[str, dict[str, Any]]:
    """Avro single-object encoding read by the book: C3 01, 8 fingerprint bytes, the binary body."""
    assert value[:2] == b"\xc3\x01"
    fingerprint = value[2:10].hex()
    schema = schemas.get(fingerprint)
    body = io.BytesIO(value[10:])
    record = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(body))
    assert body.tell() == len(value) - 10, "trailing bytes after the record"
    return fingerprint, record


def test_a_public_consumer_decodes_every_public_record_and_archived_record_with_the_buckets_schemas(
        bus: Settings) -> None:
    catalog, ruleset = load_catalog(bus), load_rules(bus)
    reaching = public_event_types(catalog, derived_event_types(catalog, ruleset))
    fields_of = {schema_fingerprint(t.schema).hex(): [f.name for f in t.fields] for t in reaching}
    prefix = f"pubschemas-{uuid.uuid4().hex[:8]}-"
    samples = list(sample_events(catalog, REPO_ROOT / "schemas" / "samples", PER_TYPE, tag=prefix))
    expected = {f"{prefix}{n}": expectation(s.event_type, s.payload, ruleset) for n, s in enumerate(samples)}
    public_copies = {(t, i) for i, e in expected.items() for t in e.public}
    archived_copies = {(folder, i) for i, e in expected.items() for folder in e.archive}
    topics = sorted({t for e in expected.values() for t in e.public})
    assert any(".".join(t.split(".")[1:]) in {f"{v.dept}.{v.event}" for v in derived_event_types(catalog, ruleset)}
               for t in topics), "the sample traffic reaches no derived view"

    # Nothing but what a public-cloud consumer is given: the public reader's Kafka login and bucket key.
    reader = VaultSession("public-reader", bus)
    consumer = kafka.consumer(PUBLIC, reader.kafka_credentials(PUBLIC), group=f"pub-public-reader.test-{prefix}")
    s3 = s3_client(bus, reader.s3_credentials())
    schemas = PublicSchemas(s3, bus.open_data_bucket)
    starts = []
    for topic in topics:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        starts += [TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
                   for p in partitions]
    keys_before = bucket_keys(s3, bus.open_data_bucket)

    publishers: dict[str, Publisher] = {}
    for n, sample in enumerate(samples):
        dept = sample.event_type.dept
        publisher = publishers.setdefault(dept, Publisher.for_department(dept, catalog=catalog))
        publisher.publish_async(sample.event_type.key, sample.payload, event_id=f"{prefix}{n}",
                                version=sample.event_type.version)
    for publisher in publishers.values():
        assert publisher.flush(60) == 0

    # The public cluster: every record after the start decodes by its fingerprint alone.
    consumer.assign(starts)
    seen: set[tuple[str, str]] = set()
    decoded_views = 0
    deadline = time.monotonic() + WITHIN
    try:
        while not public_copies <= seen and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=1.0):
                if msg.error():
                    continue
                fingerprint, record = decode_single_object(msg.value(), schemas)
                assert list(record) == fields_of[fingerprint], msg.topic()
                decoded_views += "hbus.derived_from" in schemas.get(fingerprint).props
                seen.add((msg.topic(), dict(msg.headers() or []).get(H.EVENT_ID, b"").decode()))
    finally:
        consumer.close()
    missing = public_copies - seen
    assert not missing, f"{len(missing)} of {len(public_copies)} public records not on the public cluster"
    assert decoded_views, "no derived view record was decoded"

    # The bucket: every new archived object's records decode with the schema `_schemas/` holds for its fingerprint.
    found: set[tuple[str, str]] = set()
    decoded_archived = 0
    done: set[str] = set()
    deadline = time.monotonic() + WITHIN
    while not archived_copies <= found and time.monotonic() < deadline:
        for key in sorted(bucket_keys(s3, bus.open_data_bucket) - keys_before - done):
            if not key.endswith(".avro"):
                continue
            body = s3.get_object(Bucket=bus.open_data_bucket, Key=key)["Body"].read()
            with avro.datafile.DataFileReader(io.BytesIO(body), avro.io.DatumReader()) as container:
                fingerprint = container.datum_reader.writers_schema.fingerprint()[::-1].hex()
                ids = json.loads(container.meta["hbus.event_ids"].decode())
            published = schemas.get(fingerprint)
            with avro.datafile.DataFileReader(io.BytesIO(body), avro.io.DatumReader(None, published)) as container:
                records = list(container)
            assert len(records) == len(ids) and all(list(r) == fields_of[fingerprint] for r in records), key
            decoded_archived += len(records)
            found.update(("/".join(key.split("/")[:2]) + "/", i) for i in ids)
            done.add(key)
        time.sleep(1.0)
    missing = archived_copies - found
    assert not missing, f"{len(missing)} of {len(archived_copies)} records not archived"
    assert decoded_archived >= len(archived_copies)
    # Every type that can reach the public side has its schema there, the views' included, under its own
    # fingerprint as Apache Avro computes it (the same 8 bytes, in the order the wire carries them).
    for event_type in reaching:
        fingerprint = schema_fingerprint(event_type.schema).hex()
        assert schemas.get(fingerprint).fingerprint()[::-1].hex() == fingerprint
        assert [f.name for f in schemas.get(fingerprint).fields] == fields_of[fingerprint]


def bucket_keys(s3: Any, bucket: str) -> set[str]:
    return {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])}
