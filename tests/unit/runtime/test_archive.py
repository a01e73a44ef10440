"""The open-data archive's logic without an S3 server: names, replay recognition, byte-identical retries, manifest.

The bucket is a dict behind the four calls the archive makes; the integration tests run the same code on SeaweedFS.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import avro.datafile
import avro.io
import avro.schema
from fastavro import reader

from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.loaders import load_catalog_dir
from hybridbus.runtime.archive import Archive, ArchivedRecord, container_bytes, day_of, object_name, schema_key

ROOT = Path(__file__).resolve().parents[3]
CATALOG = load_catalog_dir(ROOT / "schemas" / "avro")
LICENCE = CATALOG.get("market.licence_granted")
DAY = "2026-11-30"


class _NoSuchKey(Exception):
    pass


class Bucket:
    """The part of an S3 client the archive uses, over a dict."""

    class exceptions:  # noqa: N801 - boto3's spelling
        NoSuchKey = _NoSuchKey

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.puts: list[str] = []

    def list_objects_v2(self, Bucket: str, Prefix: str) -> dict[str, Any]:  # noqa: N803
        return {"Contents": [{"Key": k} for k in sorted(self.objects) if k.startswith(Prefix)]}

    def put_object(self, Bucket: str, Key: str, Body: bytes, ContentType: str) -> None:  # noqa: N803
        self.objects[Key] = Body
        self.puts.append(Key)

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        if Key not in self.objects:
            raise _NoSuchKey(Key)
        return {"Body": io.BytesIO(self.objects[Key])}


def _records(first: int, last: int) -> list[ArchivedRecord]:
    sample = json.loads((ROOT / "schemas" / "samples" / "market.licence_granted.v1.json").read_text(encoding="utf-8"))
    payload = sample[0] if isinstance(sample, list) else sample
    return [ArchivedRecord(offset, f"ev-{offset}", payload) for offset in range(first, last + 1)]


def test_object_names_say_partition_and_offsets_so_a_retry_rewrites_the_same_object() -> None:
    assert object_name(LICENCE, DAY, 3, 7, 42) == "market/licence_granted/v1/dt=2026-11-30/3-000000000007-000000000042.avro"
    assert day_of(1_764_460_800_000) == "2025-11-30"
    records = _records(0, 9)
    assert container_bytes(LICENCE, records) == container_bytes(LICENCE, records)


def test_a_replayed_batch_skips_every_object_the_crashed_run_wrote() -> None:
    bucket = Bucket()
    archive = Archive(bucket, "open")
    archive.put_batch(LICENCE, DAY, 0, _records(0, 49))
    archive.put_batch(LICENCE, DAY, 0, _records(50, 79))
    todo = archive.unarchived(LICENCE, DAY, 0, _records(0, 99))
    assert [r.offset for r in todo] == list(range(80, 100))
    assert archive.unarchived(LICENCE, DAY, 0, _records(0, 79)) == []
    assert archive.unarchived(LICENCE, DAY, 1, _records(0, 9)) == _records(0, 9)  # another partition: nothing known


def test_the_object_is_an_avro_file_any_reader_opens_with_the_event_ids_in_its_metadata() -> None:
    bucket = Bucket()
    key, size = Archive(bucket, "open").put_batch(LICENCE, DAY, 2, _records(5, 7))
    body = bucket.objects[key]
    assert size == len(body)
    avro = reader(io.BytesIO(body))
    assert len(list(avro)) == 3
    assert json.loads(avro.metadata["hbus.event_ids"]) == ["ev-5", "ev-6", "ev-7"]
    assert (avro.metadata["hbus.first_offset"], avro.metadata["hbus.last_offset"]) == ("5", "7")


def test_the_daily_manifest_counts_every_object_once_even_when_one_is_rewritten() -> None:
    bucket = Bucket()
    archive = Archive(bucket, "open")
    archive.put_batch(LICENCE, DAY, 0, _records(0, 9))
    archive.put_batch(LICENCE, DAY, 1, _records(0, 4))
    archive.put_batch(LICENCE, DAY, 0, _records(0, 9))  # a retry after a crash between object and manifest
    manifest = json.loads(bucket.objects["market/licence_granted/v1/dt=2026-11-30/_manifest.json"])
    assert manifest["records"] == 15 and len(manifest["objects"]) == 2


class CountingBucket(Bucket):
    def __init__(self) -> None:
        super().__init__()
        self.lists = 0

    def list_objects_v2(self, Bucket: str, Prefix: str) -> dict[str, Any]:  # noqa: N803
        self.lists += 1
        return super().list_objects_v2(Bucket, Prefix)


def test_the_schema_of_a_type_is_in_the_bucket_before_its_first_object_and_decodes_it_with_apache_avro() -> None:
    bucket = CountingBucket()
    key, _ = Archive(bucket, "open").put_batch(LICENCE, DAY, 0, _records(0, 2))
    schema_at = schema_key(LICENCE)
    assert bucket.puts.index(schema_at) < bucket.puts.index(key)
    # What a public consumer does: the 8 fingerprint bytes of a record's header, as hex, name the schema file.
    fingerprint = AvroCodec.for_catalog(CATALOG).encode(LICENCE, _records(0, 0)[0].payload)[2:10]
    assert schema_at == f"_schemas/{fingerprint.hex()}.avsc"
    parsed = avro.schema.parse(bucket.objects[schema_at].decode("utf-8"))
    assert parsed.fingerprint()[::-1] == fingerprint  # Apache Avro's own CRC-64-AVRO, the wire's byte order
    with avro.datafile.DataFileReader(io.BytesIO(bucket.objects[key]), avro.io.DatumReader(None, parsed)) as records:
        assert list(records) == [r.payload for r in _records(0, 2)]


def test_schemas_are_listed_once_written_once_and_a_known_one_costs_no_request() -> None:
    bucket = CountingBucket()
    types = [t for t in CATALOG if t.record_grade.id == "public"]
    bucket.objects[schema_key(types[0])] = b"already there"
    archive = Archive(bucket, "open")
    written = archive.ensure_schemas(types)
    assert written == [schema_key(t) for t in types[1:]] and bucket.objects[schema_key(types[0])] == b"already there"
    assert bucket.lists == 1
    assert archive.ensure_schemas(types) == [] and bucket.lists == 1 and len(bucket.puts) == len(types) - 1
    assert all(json.loads(bucket.objects[schema_key(t)]) == t.schema for t in types[1:])
