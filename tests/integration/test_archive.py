"""The open-data archive on the real S3: what a batch replayed after a crash finds already written."""
from __future__ import annotations

import uuid

from hybridbus.adapters.config import REPO_ROOT, Settings
from hybridbus.adapters.loaders import load_catalog
from hybridbus.ops.samples import load_sample
from hybridbus.ops.stack.bootstrap import s3_admin_client
from hybridbus.runtime.archive import Archive, ArchivedRecord

SAMPLES = REPO_ROOT / "schemas" / "samples"


def test_a_replay_skips_every_object_the_crashed_run_wrote(bus: Settings) -> None:
    """The crashed run cut its batches at 10 and 14; the replay's batch runs from 0 to 24 and writes 15..24 only."""
    event_type = load_catalog(bus).get("market.licence_granted")
    payload = load_sample(SAMPLES, event_type)
    records = [ArchivedRecord(offset, f"ev-{offset}", payload) for offset in range(25)]
    s3, bucket = s3_admin_client(bus), f"hbus-archive-test-{uuid.uuid4().hex[:6]}"
    s3.create_bucket(Bucket=bucket)
    try:
        archive = Archive(s3, bucket)
        archive.put_batch(event_type, "2026-11-29", 3, records[:11])
        archive.put_batch(event_type, "2026-11-29", 3, records[11:15])
        assert archive.unarchived(event_type, "2026-11-29", 3, records) == records[15:]
        assert archive.unarchived(event_type, "2026-11-29", 3, records[11:]) == records[15:]
        assert archive.unarchived(event_type, "2026-11-29", 4, records) == records  # another partition
        assert archive.unarchived(event_type, "2026-11-29", 3, records[:11]) == []
    finally:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=item["Key"])
        s3.delete_bucket(Bucket=bucket)
