"""Fault drills: a steady stream of sample events, one fault injected mid-stream, then every copy counted.

A drill proves on the running stack what the design promises: nothing lost, nothing duplicated across the
cloud boundary, nothing non-public leaked, and the bus back at work by itself. It publishes `events` sample
events (every event type, with canaries) at a steady rate, injects its fault once a third of them are out,
waits for the fault to end, publishes a probe event, and then counts, event id by event id:

- on the private graded topics (and derived-view topics): every copy the rules require (replays may repeat
  a copy here: the private side is allowed to hold an event twice);
- on the public cluster and in the open-data bucket: exactly one copy of every event the rules export;
- with the leak scan, every record and object written to the public side during the drill, for non-public
  canaries (and for public ones: a scan that finds none cannot see, and fails the drill).

The production-shape drills (`brokers=3`) run on a three-broker private cluster (RF 3, min ISR 2): a broker
killed, a rolling restart, a broker down while another restarts (below min ISR), and a worker killed in the
middle of its consumer group's rebalance.

`lost` counts events with at least one required copy missing; `duplicated` the extra copies outside;
`recovery_s` the seconds from the end of the fault until the probe is everywhere it must be, which
includes working off the backlog the fault left. Processors that die during a drill are restarted, as a
supervisor would, and named in `restarted`.
"""
from __future__ import annotations

import json
import platform
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from itertools import islice
from math import ceil
from pathlib import Path
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException
from confluent_kafka.admin import AdminClient

from hybridbus.adapters import kafka
from hybridbus.adapters.config import REPO_ROOT, Settings
from hybridbus.adapters.fieldcrypt import FieldOpener, TransitKeyService, field_key_name, key_version, parse_envelope
from hybridbus.adapters.loaders import load_catalog, load_rules
from hybridbus.adapters.topology import PRIVATE, PUBLIC
from hybridbus.adapters.vault import VaultSession
from hybridbus.ops.arrivals import Expectation, Tally, expectation
from hybridbus.ops.catalogapply import catalog_in_force, execute, prepare, write_catalog_dir
from hybridbus.ops.people import sample_login
from hybridbus.ops.samples import SampleEvent, load_sample, sample_events
from hybridbus.ops.stack import health, manager, workers
from hybridbus.ops.stack.components import brokers
from hybridbus.ops.governance import SAMPLE_ENGINEER, apply_rules
from hybridbus.runtime.catalogstore import DEPARTMENTS_FILE, CatalogSnapshot
from hybridbus.runtime.rulestore import LIVE, RuleFeed
from producers.publisher import Publisher
from producers.subscriber import ReceivedEvent, Subscriber, cleared_topics
from routing.catalog import Catalog, EventType
from routing.exceptions import HybridbusError
from routing.rules import RuleSet

SAMPLES = REPO_ROOT / "schemas" / "samples"
ACK_TIMEOUT = 180.0  # the drill's publishers wait out a private broker restart rather than give up
FAULT_AT = 1 / 3  # share of the stream published before the fault is injected
# Settling ends when copies are still missing, nothing new arrived and no copying processor committed anything
# for this long (a bus working off a backlog older than the drill delivers the drill's copies late, not never).
QUIET_LIMIT = 90.0
COPYING = ("router", "egress", "archiver")  # the processors whose work makes the copies a drill counts
PROBE_TYPE = "market.licence_granted"  # public and exported: its probe must reach every place
READBACK_QUIET = 30.0  # the read-back of encrypted fields ends when records are still missing and none came this long


@dataclass(frozen=True)
class DrillOptions:
    events: int = 100_000
    rate: float = 2000.0  # events per second; about what the router keeps up with on a 2-core machine
    outage: float = 60.0  # seconds a stopped component stays down
    recovery_timeout: float = 600.0


@dataclass
class DrillResult:
    name: str
    published: int = 0
    unacknowledged: int = 0  # events the drill's publishers could not get acknowledged
    lost: int = 0
    unreadable: int = 0  # records with an encrypted field a cleared subscriber could not open (drills that read back)
    duplicated: int = 0
    leaked: int = 0
    unexpected_outside: int = 0  # copies outside of events the rules keep private
    recovery_s: float | None = None  # None: the probe never arrived within the recovery timeout
    restarted: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)  # type: ignore[type-arg]

    @property
    def ok(self) -> bool:
        return (self.published > 0 and self.recovery_s is not None and self.details.get("public_canaries_found", 0) > 0
                and not (self.unacknowledged or self.lost or self.unreadable or self.duplicated or self.leaked
                         or self.unexpected_outside or self.details.get("pids_changed")))

    def as_dict(self) -> dict:  # type: ignore[type-arg]
        return {"drill": self.name, "ok": self.ok, "published": self.published, "unacknowledged": self.unacknowledged,
                "lost": self.lost, "unreadable": self.unreadable, "duplicated_outside": self.duplicated, "leaked": self.leaked,
                "unexpected_outside": self.unexpected_outside, "recovery_s": self.recovery_s,
                "restarted": self.restarted, **self.details}


class Traffic:
    """The drill's stream: sample events with canaries, published at a steady rate by each department.

    Publishers log in before the fault (a running system holds its login while Vault is away).
    """

    def __init__(self, catalog: Catalog, ruleset: RuleSet, options: DrillOptions, tag: str) -> None:
        self.catalog, self.ruleset, self.options, self.tag = catalog, ruleset, options, tag
        self.events = list(islice(sample_events(catalog, SAMPLES, ceil(options.events / len(catalog)), tag=tag),
                                  options.events))
        self.publishers = {dept: Publisher.for_department(dept, catalog=catalog, ack_timeout=ACK_TIMEOUT)
                           for dept in sorted({s.event_type.dept for s in self.events} | {PROBE_TYPE.split(".")[0]})}
        self.expected: dict[str, Expectation] = {}
        self.acked: set[str] = set()
        self.failed: set[str] = set()
        self.sent = 0
        self._thread = threading.Thread(target=self._run, name="drill-traffic", daemon=True)

    @property
    def id_prefix(self) -> str:
        return f"drill-{self.tag}-"

    def start(self) -> None:
        self._thread.start()

    def wait_sent(self, share: float) -> None:
        while self._thread.is_alive() and self.sent < share * len(self.events):
            time.sleep(0.05)

    def join(self) -> None:
        self._thread.join()
        for publisher in self.publishers.values():
            publisher.flush(ACK_TIMEOUT)

    def probe(self) -> str:
        """Publish one exported public event now and wait for its acknowledgement; returns its id."""
        event_type = self.catalog.get(PROBE_TYPE)
        sample = next(s for s in self.events if s.event_type == event_type)
        event_id = f"{self.id_prefix}probe"
        self.expected[event_id] = self._expectation(sample)
        self.publishers[event_type.dept].publish(PROBE_TYPE, sample.payload, event_id=event_id,
                                                 version=event_type.version, timeout=ACK_TIMEOUT)
        self.acked.add(event_id)
        return event_id

    def _run(self) -> None:
        started = time.monotonic()
        for i, sample in enumerate(self.events):
            event_id = f"{self.id_prefix}{i:07d}"
            self.expected[event_id] = self._expectation(sample)
            self.publishers[sample.event_type.dept].publish_async(
                sample.event_type.key, sample.payload, event_id=event_id, version=sample.event_type.version,
                on_delivery=lambda delivery, error, event_id=event_id: (self.failed if error else self.acked).add(event_id))
            self.sent = i + 1
            if i % 200 == 0:
                for publisher in self.publishers.values():
                    publisher.poll(0)
                ahead = started + (i + 1) / self.options.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)

    def _expectation(self, sample: SampleEvent) -> Expectation:
        return expectation(sample.event_type, sample.payload, self.ruleset)


@dataclass
class DrillContext:
    """What a fault can act on, and the record of what it did."""

    cfg: Settings
    options: DrillOptions
    traffic: Traffic
    workers: tuple[str, ...] = workers.PROCESSORS  # every worker that should be running (a supervisor's list)
    restarted: list[str] = field(default_factory=list)
    notes: dict = field(default_factory=dict)  # type: ignore[type-arg]
    tally: Tally | None = None  # the count, for a fault that makes topics the count must read too


Fault = Callable[[DrillContext], None]


@dataclass(frozen=True)
class Drill:
    name: str
    proves: str
    inject: Fault  # returns when the fault has ended (process restarted, component back, change applied)
    brokers: int = 1  # the private cluster the drill is made for: 3 is production's shape, and it needs three
    workers: tuple[tuple[str, int], ...] = ()  # (processor, workers) running before the fault, beyond one each
    same_processes: bool = False  # the drill fails when any worker's pid changed (a change without restarts)

    def worker_names(self) -> tuple[str, ...]:
        """Every worker the drill starts with: one of each processor, more where the drill asks."""
        counts = dict(self.workers)
        return tuple(name for p in workers.PROCESSORS for name in workers.worker_names(p, counts.get(p, 1)))


def _kill(name: str) -> Fault:
    def inject(ctx: DrillContext) -> None:
        if not workers.process(ctx.cfg, name).kill():
            raise RuntimeError(f"{name} was not running")
        time.sleep(1.0)
        workers.start(ctx.cfg, (name,))
    return inject


def _down(component: str, seconds: Callable[[DrillOptions], float]) -> Fault:
    def inject(ctx: DrillContext) -> None:
        manager.component(ctx.cfg, component).process.stop()
        time.sleep(seconds(ctx.options))
        manager.up(ctx.cfg, echo=lambda *_: None)
    return inject


def _rotate_kafka_logins(ctx: DrillContext) -> None:
    """The Transit keys of the encrypted fields rotated, then new SCRAM secrets for every processor login, then a
    rolling restart so each logs in with its new one."""
    from hybridbus.ops.rotation import rotate_kafka

    _rotate_field_keys(ctx)
    logins = [("router", PRIVATE), ("egress", PRIVATE), ("egress", PUBLIC), ("archiver", PRIVATE)]
    for identity, cluster in logins:
        rotate_kafka(identity, cluster)
    for name in workers.PROCESSORS:
        workers.stop(ctx.cfg, (name,))
        workers.start(ctx.cfg, (name,))
    ctx.notes["rotated"] = [f"{identity}@{cluster}" for identity, cluster in logins]


def _rotate_field_keys(ctx: DrillContext) -> None:
    """A new version of every Transit key sealing the stream's encrypted fields; the publishers drop their data keys
    (as when those expire), so the rest of the stream is sealed under the new versions, the start under the old."""
    from hybridbus.ops.rotation import rotate_transit

    keys = sorted({field_key_name(s.event_type.dept, spec.grade.id)
                   for s in ctx.traffic.events for spec in s.event_type.encrypted_fields})
    ctx.notes["transit_rotated"] = {key: rotate_transit(key) for key in keys}
    for publisher in ctx.traffic.publishers.values():
        if publisher.encoder.sealer is not None:
            publisher.encoder.sealer.forget()


class _VersionsOpened(FieldOpener):
    """A subscriber's opener that also remembers the Transit key versions of what it opened for the record in hand."""

    def __init__(self, keys: TransitKeyService) -> None:
        super().__init__(keys)
        self.opened: list[tuple[str, int]] = []

    def open(self, envelope: str | bytes, event_type_key: str, field_name: str) -> bytes:
        plain = super().open(envelope, event_type_key, field_name)
        key_name, wrapped, _ = parse_envelope(envelope)
        self.opened.append((key_name, key_version(wrapped)))
        return plain

    def take(self) -> list[tuple[str, int]]:
        opened, self.opened = self.opened, []
        return opened


class _AllRead(HybridbusError):
    """Ends a read-back once every record looked for is in: the topics also hold other drills' records."""


def _read_back(ctx: DrillContext, catalog: Catalog) -> dict:  # type: ignore[type-arg]
    """Every acknowledged event of the stream that carried encrypted fields, read by a cleared subscriber of its
    department (its own Kafka login and Vault identity): each field must open to the value sent, whichever Transit
    key version sealed it."""
    sent: dict[str, dict[str, dict]] = {}  # type: ignore[type-arg]  # dept -> event id -> encrypted values sent
    topics: dict[str, set[str]] = {}
    for i, sample in enumerate(ctx.traffic.events):
        event_id, event_type = f"{ctx.traffic.id_prefix}{i:07d}", sample.event_type
        values = {spec.name: sample.payload[spec.name] for spec in event_type.encrypted_fields
                  if isinstance(sample.payload.get(spec.name), (str, bytes))}
        readable = ctx.traffic.expected[event_id].private & set(cleared_topics(catalog, event_type.dept))
        if values and readable and event_id in ctx.traffic.acked:
            sent.setdefault(event_type.dept, {})[event_id] = values
            topics.setdefault(event_type.dept, set()).update(readable)
    opened: set[str] = set()
    versions: dict[str, set[int]] = {}
    for dept, events in sorted(sent.items()):
        session = VaultSession(dept, ctx.cfg)
        opener = _VersionsOpened(TransitKeyService(session))

        def keep(event: ReceivedEvent, events: dict = events, opener: _VersionsOpened = opener) -> None:  # type: ignore[type-arg]
            seen, values = opener.take(), events.get(event.event_id or "")
            if values is not None and all(event.payload.get(name) == value for name, value in values.items()):
                opened.add(str(event.event_id))
                for key, version in seen:
                    versions.setdefault(key, set()).add(version)
                if set(events) <= opened:
                    raise _AllRead(dept)

        with Subscriber.with_credentials(dept, session.kafka_credentials(PRIVATE), name=f"drill-{ctx.traffic.tag}",
                                         topics=sorted(topics[dept]), catalog=catalog, opener=opener) as subscriber:
            try:
                subscriber.run(keep, timeout=READBACK_QUIET, skip_undecodable=True)
            except _AllRead:
                pass
    expected = sum(len(events) for events in sent.values())
    return {"records": expected, "opened": len(opened), "unreadable": expected - len(opened),
            "key_versions": {key: sorted(v) for key, v in sorted(versions.items())}}


def _swap_rules(ctx: DrillContext) -> None:
    """Apply an equivalent rule set under a new version mid-stream, then the shipped one again mid-stream.

    Equivalent sets route every event alike, so an event is lost when any copy its rules require is
    missing, whichever of the two versions routed it; the counts of both versions show the swap happened.
    """
    shipped = load_rules(ctx.cfg)
    candidate = replace(shipped, version=f"{shipped.version}+drill-{ctx.traffic.tag}")
    apply_rules(candidate, LIVE, ctx.cfg)
    ctx.traffic.wait_sent(2 * FAULT_AT)
    apply_rules(shipped, LIVE, ctx.cfg)
    ctx.notes["swapped"] = [candidate.version, shipped.version]


# --- onboarding: a catalog change mid-stream -----------------------------------------------------------

ONBOARDED_EVENT = "air_quality"  # the new department's event type
NEXT_VERSION_OF = PROBE_TYPE  # the existing type that gets a new version: public and exported, so it crosses


def onboarding_files(in_force: Mapping[str, str], dept: str, existing: str = NEXT_VERSION_OF) -> dict[str, str]:
    """The catalog in force (a snapshot's files) plus a department `dept` with one new public event type, and the
    next version of `existing` with one more optional public field: what an onboarding brings."""
    files = dict(in_force)
    files[DEPARTMENTS_FILE] = files[DEPARTMENTS_FILE].rstrip("\n") + (
        f"\n  - id: {dept}\n    name_zh: 新部门{dept}\n    name_en: Onboarded {dept}\n    clearance: internal\n")
    files[f"{dept}/{ONBOARDED_EVENT}.v1.avsc"] = json.dumps({
        "type": "record", "namespace": f"hybridbus.{dept}", "name": "AirQuality", "hbus.dept": dept,
        "hbus.event": ONBOARDED_EVENT, "hbus.version": 1, "grade": "public",
        "doc": "An air-quality reading of a monitoring station (空气质量监测). Open data.",
        "fields": [{"name": "station", "type": "string", "grade": "public"},
                   {"name": "pm25", "type": "int", "grade": "public"},
                   {"name": "measured_at", "type": "long", "grade": "public"}]}, ensure_ascii=False, indent=2)
    dept_of, event = existing.split(".")
    latest = max(int(name.rsplit(".v", 1)[1].removesuffix(".avsc")) for name in files
                 if name.startswith(f"{dept_of}/{event}.v"))
    schema = json.loads(files[f"{dept_of}/{event}.v{latest}.avsc"])
    version = latest + 1
    schema["hbus.version"] = version
    schema["fields"].append({"name": f"note_v{version}", "type": ["null", "string"], "default": None,
                             "grade": "public", "doc": "A remark, added in this version."})
    files[f"{dept_of}/{event}.v{version}.avsc"] = json.dumps(schema, ensure_ascii=False, indent=2)
    return files


def onboarded_payload(event_type: EventType, base: Mapping[str, Any], i: int) -> dict[str, Any]:
    """A payload of a type the onboarding made: the new type's reading, or the new version's sample plus its field."""
    if event_type.event == ONBOARDED_EVENT:
        return {"station": f"station-{i % 17}", "pm25": 10 + i % 90, "measured_at": 1_764_460_800_000 + i * 1000}
    return {**base, f"note_v{event_type.version}": f"remark {i}"}


def _change_catalog(ctx: DrillContext) -> None:
    """`hbus catalog apply` mid-stream, as the sample engineer: a new department with a new event type and a new
    version of an exported type; then events of both, published at the stream's rate beside it, and counted."""
    cfg, traffic = ctx.cfg, ctx.traffic
    dept = f"drill_{traffic.tag}"
    files = onboarding_files(catalog_in_force(cfg).files, dept)
    engineer = sample_login(SAMPLE_ENGINEER, cfg)
    with tempfile.TemporaryDirectory(prefix="hbus-catalog-") as tmp:
        plan = prepare(write_catalog_dir(files, Path(tmp)), engineer, cfg)
        applied = execute(plan, engineer, cfg)
    # The topics the change made where routed copies land (ingress topics hold what departments sent, not copies).
    made = {cluster: [s.name for s in applied if s.kind == "topic" and s.system == f"kafka-{cluster}"
                      and not s.name.startswith("ingress.")] for cluster in (PRIVATE, PUBLIC)}
    if ctx.tally is not None:
        ctx.tally.watch(made[PRIVATE], made[PUBLIC])
    catalog = CatalogSnapshot(files).catalog()
    new_types = [catalog.get(key, version) for key, version in plan.change.new_versions]
    ctx.notes["catalog_change"] = {"department": dept, "new_versions": [f"{t.key} v{t.version}" for t in new_types],
                                   "made": len(applied), "digest": plan.snapshot.digest[:19]}
    base = load_sample(SAMPLES, catalog.get(NEXT_VERSION_OF, 1))
    publishers = {d: Publisher.for_department(d, catalog=catalog, ack_timeout=ACK_TIMEOUT)
                  for d in sorted({t.dept for t in new_types})}
    per_type = max(20, traffic.options.events // 20)
    started = time.monotonic()
    for i in range(per_type * len(new_types)):
        event_type = new_types[i % len(new_types)]
        payload = onboarded_payload(event_type, base, i)
        event_id = f"{traffic.id_prefix}new-{i:07d}"
        traffic.expected[event_id] = expectation(event_type, payload, traffic.ruleset)
        publishers[event_type.dept].publish_async(
            event_type.key, payload, event_id=event_id, version=event_type.version,
            on_delivery=lambda _d, error, event_id=event_id: (traffic.failed if error else traffic.acked).add(event_id))
        if i % 200 == 0:
            for publisher in publishers.values():
                publisher.poll(0)
            ahead = started + (i + 1) / traffic.options.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    for publisher in publishers.values():
        publisher.flush(ACK_TIMEOUT)
    ctx.notes["catalog_change"]["published"] = per_type * len(new_types)


# --- the production shape: three brokers, several workers --------------------------------------------

def _await(condition: Callable[[], bool], timeout: float, interval: float = 0.5) -> float | None:
    """Seconds until `condition` holds, or None when it did not within `timeout`."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if condition():
            return round(time.monotonic() - began, 1)
        time.sleep(interval)
    return None


def _ingress_leaders(cfg: Settings) -> dict[int, int]:
    """Node id -> ingress partitions it leads now (-1: partitions without a leader)."""
    metadata = health.admin(cfg, PRIVATE).list_topics(timeout=10)
    return dict(Counter(p.leader for p in health.partitions_of(metadata, "ingress.")))


def _kill_busiest_broker(ctx: DrillContext) -> None:
    """kill -9 of the broker leading most ingress partitions; the two left elect new leaders and go on (min ISR
    2 still met); a supervisor starts it again, and the fault ends when every partition is fully in sync."""
    cfg = ctx.cfg
    leaders = _ingress_leaders(cfg)
    node = max((n for n in leaders if n >= 0), key=lambda n: leaders[n])
    broker = brokers(cfg, PRIVATE)[node - 1]
    broker.process.kill()

    def moved() -> bool:
        try:
            now = _ingress_leaders(cfg)
        except KafkaException:
            return False
        return node not in now and -1 not in now

    ctx.notes["killed"] = {"broker": broker.name, "ingress_partitions_led": leaders[node]}
    ctx.notes["leaders_moved_s"] = _await(moved, 120)
    time.sleep(10.0)  # the cluster runs on two brokers for a while, as it would until a supervisor acts
    ctx.notes["restart_s"] = manager.start_component(cfg, broker.name, ctx.options.recovery_timeout)
    ctx.notes["back_in_sync_s"] = health.await_in_sync(cfg, PRIVATE, ctx.options.recovery_timeout)


def _rolling_restart(ctx: DrillContext) -> None:
    """Every private broker in turn: stopped (controlled shutdown hands its leaders over), started, and the next
    one only once the whole cluster is in sync again."""
    per_broker = {}
    for broker in brokers(ctx.cfg, PRIVATE):
        began = time.monotonic()
        broker.process.stop()
        manager.start_component(ctx.cfg, broker.name, ctx.options.recovery_timeout)
        health.await_in_sync(ctx.cfg, PRIVATE, ctx.options.recovery_timeout)
        per_broker[broker.name] = round(time.monotonic() - began, 1)
    ctx.notes["restart_to_in_sync_s"] = per_broker


def _below_min_isr(ctx: DrillContext) -> None:
    """One broker down for --outage s and, meanwhile, a second one restarted: for the restart only one in-sync
    copy is left, below min ISR 2, so acks=all producers must wait; nothing they were told is safe may be lost."""
    cfg = ctx.cfg
    first, second = brokers(cfg, PRIVATE)[2], brokers(cfg, PRIVATE)[1]
    began = time.monotonic()
    first.process.stop()
    time.sleep(ctx.options.outage / 3)
    acked_before = len(ctx.traffic.acked)
    ctx.notes["waiting_when_second_stopped"] = ctx.traffic.sent - acked_before - len(ctx.traffic.failed)
    second.process.stop()
    ctx.notes["second_restart_s"] = manager.start_component(cfg, second.name, ctx.options.recovery_timeout)
    # Acknowledgements while only one copy was in sync: producers waited, so few or none came through then
    # (beside the events sent but not yet acknowledged when it began).
    ctx.notes["acked_while_one_in_sync"] = len(ctx.traffic.acked) - acked_before
    time.sleep(max(0.0, ctx.options.outage - (time.monotonic() - began)))
    manager.start_component(cfg, first.name, ctx.options.recovery_timeout)
    ctx.notes["down"] = {"for_outage": first.name, "restarted_meanwhile": second.name}
    ctx.notes["back_in_sync_s"] = health.await_in_sync(cfg, PRIVATE, ctx.options.recovery_timeout)


def _group_state(client: AdminClient, group: str) -> tuple[str, int]:
    """(state, members) of a consumer group, e.g. ("PREPARING_REBALANCE", 3); ("UNKNOWN", -1) when no answer came."""
    try:
        description = client.describe_consumer_groups([group], request_timeout=30)[group].result(timeout=30)
    except (KafkaException, TimeoutError):
        return "UNKNOWN", -1
    return str(description.state).rsplit(".", 1)[-1], len(description.members)


def _kill_worker_in_rebalance(processor: str, victim: str) -> Fault:
    """One more worker of `processor` joins its group; while the group rebalances, kill -9 of `victim`; a
    supervisor starts it again. Its uncommitted batch replays on whichever worker takes the partition."""
    def inject(ctx: DrillContext) -> None:
        cfg, group, client = ctx.cfg, f"hbus-{processor}", health.admin(ctx.cfg, PRIVATE)
        running = [n for n in ctx.workers if workers.worker_of(n)[0] == processor]
        joining = workers.worker_names(processor, len(running) + 1)[-1]
        ctx.workers = (*ctx.workers, joining)
        workers.start(cfg, (joining,), timeout=120)
        seen = _await(lambda: _group_state(client, group)[0] not in ("STABLE", "UNKNOWN"), 120, interval=0.1)
        state, members = _group_state(client, group)
        if not workers.process(cfg, victim).kill():
            raise RuntimeError(f"{victim} was not running")
        ctx.notes["rebalance"] = {"joined": joining, "killed": victim, "state_at_kill": state,
                                  "members_at_kill": members, "rebalance_seen_after_s": seen}
        time.sleep(1.0)
        workers.start(cfg, (victim,), timeout=120)
        workers_now = len(running) + 1
        ctx.notes["stable_with_all_after_s"] = _await(
            lambda: _group_state(client, group) == ("STABLE", workers_now), 180)
    return inject


DRILLS: dict[str, Drill] = {d.name: d for d in (
    Drill("router-kill", "kill -9 of the router mid-batch: the uncommitted batch replays, nothing skipped",
          _kill("router")),
    Drill("egress-kill", "kill -9 of egress: it resumes after what the public cluster holds, no gap, no duplicate",
          _kill("egress")),
    Drill("archiver-kill", "kill -9 of the archiver: objects are rewritten under the same name, never twice",
          _kill("archiver")),
    Drill("private-broker-restart", "the private Kafka broker restarted: publishers and processors reconnect",
          _down("kafka-private", lambda _o: 1.0)),
    Drill("public-cluster-down", "the public cluster down for --outage s: egress waits, then catches up",
          _down("kafka-public", lambda o: o.outage)),
    Drill("vault-down", "Vault down for --outage s: processors go on with the logins they hold",
          _down("vault", lambda o: o.outage)),
    Drill("s3-down", "S3 down for --outage s: the archiver waits, then writes the backlog once",
          _down("s3", lambda o: o.outage)),
    Drill("kafka-rotation", "the field-encryption Transit keys and every processor's Kafka secret rotated "
          "mid-stream, then a rolling restart; a cleared subscriber opens every encrypted field sent",
          _rotate_kafka_logins),
    Drill("rules-swap", "a rule set hot-swapped mid-stream and back: routers switch between batches",
          _swap_rules),
    Drill("catalog-change", "a new department, event type and version applied mid-stream (hbus catalog apply): "
          "routed, exported and counted, no processor restarted", _change_catalog, same_processes=True),
    Drill("broker-kill", "kill -9 of the private broker leading most ingress partitions: leaders move, acks=all "
          "writes go on, it rejoins", _kill_busiest_broker, brokers=3),
    Drill("rolling-restart", "every private broker restarted in turn, each once the cluster is in sync again",
          _rolling_restart, brokers=3),
    Drill("below-min-isr", "one broker down for --outage s while a second restarts: producers wait below min ISR, "
          "nothing acknowledged is lost", _below_min_isr, brokers=3),
    Drill("router-worker-kill", "a third router worker joins; kill -9 of another mid-rebalance: the group "
          "rebalances again, nothing skipped", _kill_worker_in_rebalance("router", "router"), brokers=3,
          workers=(("router", 2),)),
    Drill("egress-worker-kill", "a second egress worker joins; kill -9 of the first mid-rebalance: no gap and "
          "no duplicate outside", _kill_worker_in_rebalance("egress", "egress"), brokers=3),
)}


def drills_for(brokers: int) -> list[str]:
    """The drills of `hbus drill all` on a private cluster of `brokers` brokers: its own shape's set."""
    shape = 3 if brokers >= 3 else 1
    return [d.name for d in DRILLS.values() if d.brokers == shape]


def run(name: str, cfg: Settings, options: DrillOptions) -> DrillResult:
    """Run one drill on the local stack and leave the stack, the shipped rules and the processors up."""
    from hybridbus.ops.demo import ensure_live_rules

    drill = DRILLS[name]
    if cfg.private_brokers < drill.brokers:
        raise ValueError(f"drill {name} needs a private cluster of {drill.brokers} brokers, not {cfg.private_brokers}")
    clock = _PhaseClock()
    _prepare(cfg, drill.worker_names())
    catalog, ruleset = load_catalog(cfg), load_rules(cfg)
    traffic = Traffic(catalog, ruleset, options, uuid.uuid4().hex[:8])
    tally = Tally(cfg, catalog, ruleset, traffic.id_prefix)
    ctx = DrillContext(cfg, options, traffic, drill.worker_names(), tally=tally)
    result = DrillResult(name)
    pids = _pids(cfg, ctx.workers)
    clock.mark("prepare")
    try:
        traffic.start()
        traffic.wait_sent(FAULT_AT)
        clock.mark("stream_to_fault")
        drill.inject(ctx)
        fault_ended = clock.mark("fault")
        _revive(ctx)
        probe = traffic.probe()
        result.recovery_s = _await_probe(ctx, tally, probe, fault_ended)
        clock.mark("recovery")
        traffic.join()
        _settle(ctx, tally)
        clock.mark("settle")
        if "transit_rotated" in ctx.notes:
            readback = _read_back(ctx, catalog)
            result.unreadable = readback["unreadable"]
            ctx.notes["read_back"] = readback
            clock.mark("read_back")
    finally:
        if not all(s.healthy for s in manager.status(cfg)):
            manager.up(cfg, echo=lambda *_: None)
        _revive(ctx)
        ensure_live_rules(cfg)
        # Back to one worker of each processor for whatever runs next (the tally has been read by now).
        extra = tuple(n for n in ctx.workers if n not in workers.PROCESSORS)
        if extra:
            workers.stop(cfg, extra)
    _count(result, traffic, tally)
    if drill.same_processes:
        now = _pids(cfg, ctx.workers)
        result.details["pids_changed"] = sorted(n for n in pids if now.get(n) != pids[n])
    report = tally.scan
    result.leaked = report.leaked
    result.restarted = ctx.restarted
    result.details["phases_s"] = clock.phases
    result.details.update(ctx.notes)
    result.details.update({"public_side_scanned": {"records": report.records, "objects": report.objects},
                           "public_canaries_found": report.open_found, "leaked_where": report.leaked_where[:10],
                           "rules_versions": dict(tally.private.rules_versions)})
    return result


class _PhaseClock:
    """Seconds spent in each phase of a drill, to show where its time goes."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self._last = time.monotonic()

    def mark(self, phase: str) -> float:
        now = time.monotonic()
        self.phases[phase] = round(now - self._last, 1)
        self._last = now
        return now


def _prepare(cfg: Settings, names: tuple[str, ...] = workers.PROCESSORS) -> None:
    """The shipped rules live and every processor running under them (`names`: the drill's workers).

    Egress and the archiver subscribe to the derived-view topics of the rule set live when they start: one
    started before the live set was applied would never export its views, so it is restarted first.
    """
    from hybridbus.ops.demo import ensure_live_rules

    ensure_live_rules(cfg)
    feed = RuleFeed(kafka.admin_credentials(PRIVATE, cfg))
    try:
        applied_s = feed.load()[LIVE].applied_at_ms / 1000
    finally:
        feed.close()
    for name in names:
        proc = workers.process(cfg, name)
        if workers.worker_of(name)[0] in ("egress", "archiver") and proc.running() \
                and proc.pid_file.stat().st_mtime < applied_s:
            proc.stop(timeout=20)
    workers.start(cfg, names)


def _pids(cfg: Settings, names: tuple[str, ...]) -> dict[str, int | None]:
    return {s.name: s.pid for s in workers.status(cfg, names)}


def _revive(ctx: DrillContext) -> None:
    """Restart processors that died (a supervisor's job), and remember which."""
    dead = [s.name for s in workers.status(ctx.cfg, ctx.workers) if not s.running]
    if dead:
        ctx.restarted.extend(dead)
        workers.start(ctx.cfg, tuple(dead))


def _await_probe(ctx: DrillContext, tally: Tally, probe: str, since: float) -> float | None:
    deadline = since + ctx.options.recovery_timeout
    while time.monotonic() < deadline:
        tally.poll()
        if tally.missing(probe, ctx.traffic.expected[probe]) == 0:
            return round(time.monotonic() - since, 1)
        _revive(ctx)
        time.sleep(0.5)
    return None


def _settle(ctx: DrillContext, tally: Tally) -> None:
    """Poll until every required copy is found, or for QUIET_LIMIT seconds nothing new has arrived and the copying
    processors have committed nothing (on a bus still working off an older backlog, the drill's copies come late)."""
    admin = health.admin(ctx.cfg, PRIVATE)
    last, quiet_since = None, time.monotonic()
    while True:
        complete = tally.poll()
        found = sum(tally.private.counts.values()) + sum(n for _p, _i, n in tally.outside())
        if complete and not any(tally.missing(i, ctx.traffic.expected[i]) for i in ctx.traffic.acked):
            break
        progress = (found, _committed(admin))
        if progress != last:
            last, quiet_since = progress, time.monotonic()
        elif time.monotonic() - quiet_since > QUIET_LIMIT:
            break
        _revive(ctx)
        time.sleep(1.0)
    time.sleep(5.0)  # late duplicates (a replayed batch, an archive object rewritten) would land now
    tally.poll()


def _committed(admin: AdminClient) -> int:
    """The copying processors' committed offsets, summed over their partitions: it grows while they work."""
    total = 0
    for group in (f"hbus-{name}" for name in COPYING):  # the admin API takes one group a request
        try:
            request = [ConsumerGroupTopicPartitions(group)]
            answer = admin.list_consumer_group_offsets(request, request_timeout=10)[group].result(timeout=15)
        except (KafkaException, TimeoutError):  # a broker restarting: this poll sees no progress of that group
            continue
        total += sum(max(tp.offset, 0) for tp in answer.topic_partitions or ())
    return total


def _count(result: DrillResult, traffic: Traffic, tally: Tally) -> None:
    result.published = len(traffic.acked)
    result.unacknowledged = len(set(traffic.expected) - traffic.acked)
    lost = [i for i in traffic.acked if tally.missing(i, traffic.expected[i])]
    result.lost = len(lost)
    for place, event_id, copies in tally.outside():
        where = traffic.expected.get(event_id)
        if where is None or (place not in where.public and place not in where.archive):
            result.unexpected_outside += copies
        else:
            result.duplicated += copies - 1
    result.details["lost_examples"] = sorted(lost)[:5]
    result.details["private_copies"] = sum(tally.private.counts.values())


def machine() -> str:
    """Where the drill ran, for the record next to its figures."""
    import os

    return f"{platform.node()} ({platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()})"
