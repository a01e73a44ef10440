"""Quarantine review on the real stack: a record the guard kept back is refused release before the catalog change
that makes it public; after it, released by two people (one alone cannot), it is on the public cluster and in
the bucket exactly once even when written back twice; a record still not public stays; every step is on the
audit chain with who did it, and `list`/`show` print no field value."""
from __future__ import annotations

import io
import json
import time
import uuid

import pytest
from fastavro import reader
from typer.testing import CliRunner

from hybridbus.adapters import kafka
from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.config import REPO_ROOT, Settings
from hybridbus.adapters.loaders import load_catalog
from hybridbus.adapters.topology import AUDIT_TOPIC, CATALOG_TOPIC, PRIVATE, PUBLIC, QUARANTINE_TOPIC
from hybridbus.cli.quarantine import app as quarantine_cli
from hybridbus.ops.catalogapply import catalog_in_force
from hybridbus.ops.people import NotAllowed, sample_login
from hybridbus.ops.quarantine import ReleaseRefused, approve_release, entries, find, propose_release, put_back
from hybridbus.ops.samples import SECRET_CANARY, sample_events
from hybridbus.ops.stack.bootstrap import s3_admin_client
from hybridbus.runtime.audit import rule_changes
from hybridbus.runtime.catalogstore import CATALOG_KEY, CatalogSnapshot, latest_snapshot, publish_snapshot
from routing import governance as G
from routing import headers as H
from tests.integration.kafkatools import TOPIC, assert_exactly_once, copies, end_offsets, read_after
from tests.integration.test_audit import chained_since
from tests.integration.test_catalog_follow import wait_for_digest
from tests.integration.test_governance import wait_for
from tests.unit.ops.test_quarantine import LICENCE_V2, licence_v2

GUARDS = ("egress", "archiver")
FEEDBACK_TOPIC = "public.govservice.citizen_feedback_stats"


def with_new_licence_version(in_force: CatalogSnapshot) -> tuple[CatalogSnapshot, int]:
    """The catalog in force plus the next version of licence_granted (all public): the catalog change that makes
    a licence of that version, quarantined as undecodable before, public."""
    version = 1 + max(int(name.rsplit(".v", 1)[1].removesuffix(".avsc")) for name in in_force.files
                      if name.startswith("market/licence_granted.v"))
    schema = {**LICENCE_V2, "hbus.version": version}
    return CatalogSnapshot({**in_force.files, f"market/licence_granted.v{version}.avsc": json.dumps(schema)}), version


def put_in_force(cfg: Settings, snapshot: CatalogSnapshot | None) -> None:
    """Publish `snapshot` (None: a tombstone, the schema files in force) and wait until every follower took it."""
    admin = kafka.admin_credentials(PRIVATE, cfg)
    if snapshot is None:
        producer = kafka.producer(PRIVATE, admin)
        producer.produce(CATALOG_TOPIC, None, key=CATALOG_KEY)
        assert producer.flush(20) == 0
        snapshot = CatalogSnapshot.from_dir(cfg.schemas_dir)
    else:
        publish_snapshot(snapshot, admin)
    wait_for_digest(cfg, snapshot.digest, timeout=60)


def archived_copies(cfg: Settings, event_id: str, version: int) -> int:
    s3 = s3_admin_client(cfg)
    found = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=cfg.open_data_bucket,
                                                            Prefix=f"market/licence_granted/v{version}/"):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith(".avro"):
                body = s3.get_object(Bucket=cfg.open_data_bucket, Key=obj["Key"])["Body"].read()
                found += json.loads(reader(io.BytesIO(body)).metadata["hbus.event_ids"]).count(event_id)
    return found


def test_a_quarantined_record_is_released_by_two_people_only_after_the_change_and_only_once(
        bus: Settings) -> None:
    tag = uuid.uuid4().hex[:6]
    before_change = latest_snapshot(kafka.admin_credentials(PRIVATE, bus))
    change, version = with_new_licence_version(catalog_in_force(bus))
    changed = bus
    operator, second_operator, approver = (sample_login(n, bus) for n in ("wang.fang", "zhao.lei", "zhang.min"))

    # A v2 licence (a version the catalog does not know yet) and a citizen's feedback (sensitive), both written
    # past the router onto the public topics egress and the archiver read.
    licence_id, feedback_id = f"q-licence-{tag}", f"q-feedback-{tag}"
    licence, licence_headers = licence_v2(change.catalog(), licence_id, version)
    catalog = load_catalog()
    feedback = next(s for s in sample_events(catalog, REPO_ROOT / "schemas" / "samples", 1, tag=tag)
                    if s.event_type.key == "govservice.citizen_feedback")
    quarantine_since, audit_since = end_offsets(PRIVATE, QUARANTINE_TOPIC), end_offsets(PRIVATE, AUDIT_TOPIC)[0]
    admin = kafka.producer(PRIVATE, kafka.admin_credentials(PRIVATE))
    admin.produce(TOPIC, licence, key=licence_id.encode(), headers=licence_headers)
    admin.produce(FEEDBACK_TOPIC, AvroCodec.for_catalog(catalog).encode(feedback.event_type, feedback.payload),
                  key=feedback_id.encode(), headers=[(H.EVENT_ID, feedback_id.encode()),
                                                     (H.DESTINATIONS, b"public_cloud,archive")])
    assert admin.flush(30) == 0
    ids = {licence_id.encode(), feedback_id.encode()}
    # Each guard holds an unknown version back for the hold bound first, and the archiver quarantines per batch.
    kept = read_after(PRIVATE, QUARANTINE_TOPIC, quarantine_since, lambda r: r.key in ids, min_records=4, timeout=150)
    assert sorted((r.key, r.headers["hbus-quarantined-by"]) for r in kept) == sorted(
        (i, g.encode()) for i in ids for g in GUARDS)

    # `list` and `show` name the records, never a field value (the feedback carries canaries in its fields).
    listed = CliRunner().invoke(quarantine_cli, ["list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert {licence_id, feedback_id} <= {r["event_id"] for r in json.loads(listed.stdout)}
    shown = CliRunner().invoke(quarantine_cli, ["show", feedback_id, "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["now"]["refusal"] == G.STILL_NOT_PUBLIC
    assert SECRET_CANARY not in listed.stdout + shown.stdout

    # Before the change: refused at once, the guard still refuses it.
    with pytest.raises(ReleaseRefused) as before:
        propose_release(licence_id, operator, bus)
    assert before.value.reason == G.STILL_NOT_PUBLIC

    public_since = end_offsets(PUBLIC, TOPIC)
    put_in_force(bus, change)  # the catalog change, applied: egress and the archiver now know the new version
    try:
        # A change alone releases nothing: the record stays where it is until two people release it.
        assert not read_after(PUBLIC, TOPIC, public_since, lambda r: r.key == licence_id.encode(), timeout=5)

        review, look = propose_release(licence_id, operator, changed)
        assert (look.public_now, look.grade_now, review.proposer) == (True, "public", "wang.fang")
        # One person alone cannot release it: the proposer, a second operator, an approver proposing.
        for person, act in ((operator, approve_release), (second_operator, approve_release),
                            (approver, propose_release)):
            with pytest.raises(NotAllowed):
                act(licence_id, person, changed)
        assert not read_after(PUBLIC, TOPIC, public_since, lambda r: r.key == licence_id.encode(), timeout=3)
        # A record still not public stays, whatever changed.
        with pytest.raises(ReleaseRefused) as still:
            propose_release(feedback_id, operator, changed)
        assert still.value.reason == G.STILL_NOT_PUBLIC

        released, _ = approve_release(licence_id, approver, changed)
        assert released.released and released.approval is not None and released.approval.signer == "zhang.min"
        assert_exactly_once(copies(PUBLIC, public_since, [licence_id]), [licence_id], "the public cluster")
        assert wait_for(lambda: archived_copies(bus, licence_id, version) == 1, 30)

        # Once only: a second approval is refused, and the record written back again (a retry) is dropped by
        # egress's and the archiver's event-id dedupe.
        with pytest.raises(ReleaseRefused) as again:
            approve_release(licence_id, approver, changed)
        assert again.value.reason == G.ALREADY_RELEASED
        put_back(find(entries(changed), licence_id), changed)
        time.sleep(5)
        assert copies(PUBLIC, public_since, [licence_id], timeout=10)[licence_id] == 1
        assert archived_copies(bus, licence_id, version) == 1
    finally:
        put_in_force(bus, before_change)

    # Every step is on the audit chain, with who took it.
    def acts() -> list[tuple[str, str]]:
        return [(e["verdict"], e["actor"]) for e in rule_changes(chained_since(audit_since))
                if e.get("event_id") == licence_id]
    expected = [("quarantine_release_refused", "wang.fang"), ("quarantine_release_proposed", "wang.fang"),
                ("quarantine_release_refused", "wang.fang"), ("quarantine_release_refused", "zhao.lei"),
                ("quarantine_release_refused", "zhang.min"), ("quarantine_release_approved", "zhang.min"),
                ("quarantine_released", "zhang.min"), ("quarantine_release_refused", "zhang.min")]
    assert wait_for(lambda: acts() == expected, 60), acts()
