"""The demo run behind `hbus demo`: rules applied, processors started, a burst of every department's events,
then, once each of them has reached every place its rules send it (or the bound passed), the count and the leak scan.
"""
from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hybridbus.adapters import kafka
from hybridbus.adapters.config import REPO_ROOT, Settings
from hybridbus.adapters.loaders import load_catalog, load_rules
from hybridbus.adapters.topology import PRIVATE, PUBLIC
from hybridbus.ops.arrivals import BUCKET, PRIVATE_CLUSTER, PUBLIC_CLUSTER, Arrival, Expectation, Progress, Tally, \
    await_arrivals, expectation
from hybridbus.ops.leakscan import ScanReport, scan_bucket, scan_public_cluster
from hybridbus.ops.samples import sample_events
from hybridbus.ops.stack import workers
from hybridbus.ops.stack.bootstrap import s3_admin_client
from hybridbus.ops.governance import apply_rules, stack_signer
from hybridbus.runtime.rulesigning import RuleCheck
from hybridbus.runtime.rulestore import LIVE, RuleFeed
from producers.exceptions import ProducerError
from producers.publisher import Delivery, Publisher
from routing.rules import RuleSet

ACK_TIMEOUT = 30.0  # seconds the demo's publishers wait for the private cluster to acknowledge the burst
# The report's name for each place, as the JSON has always called them.
REPORT_KEYS = {PRIVATE_CLUSTER: "private_cluster", PUBLIC_CLUSTER: "public_cluster", BUCKET: "archived"}


def ensure_live_ruleset(cfg: Settings) -> RuleSet:
    """Apply the shipped rule set as live unless it is already the one in force; returns it."""
    ruleset = load_rules(cfg)
    creds = kafka.admin_credentials(PRIVATE, cfg)
    # Verified as the processors verify it: an unsigned or forged set of the same digest is applied anew.
    feed = RuleFeed(creds, RuleCheck(stack_signer(cfg), "tools", load_catalog(cfg)))
    try:
        live = feed.load().get(LIVE)
    finally:
        feed.close()
    if live is None or live.ruleset is None or live.ruleset.digest != ruleset.digest:
        apply_rules(ruleset, LIVE, cfg)
    return ruleset


def ensure_live_rules(cfg: Settings) -> str:
    """Apply the shipped rule set as live unless it is already the one in force; returns its version."""
    return ensure_live_ruleset(cfg).version


@dataclass(frozen=True)
class DemoResult:
    """What the demo published, where its own records arrived, and the leak scan of the whole public side."""

    rules_version: str
    published: Mapping[str, int]  # acknowledged events per `<dept>.<event>`
    unacknowledged: int  # events the private cluster did not acknowledge (not expected anywhere)
    publish_seconds: float
    waited_seconds: float
    wait_bound: float
    arrivals: tuple[Arrival, ...]
    not_running: tuple[str, ...]  # processors found stopped when the bound passed
    scan: ScanReport = field(compare=False)

    @property
    def behind(self) -> tuple[Arrival, ...]:
        """The places still missing some of the demo's records when the wait ended."""
        return tuple(a for a in self.arrivals if not a.complete)

    @property
    def extra_copies(self) -> int:
        """Copies of the demo's records outside the private cloud beyond one per required place."""
        return sum(a.extra_copies for a in self.arrivals)

    def as_dict(self) -> dict[str, Any]:
        counted = {REPORT_KEYS[a.place]: dict(sorted(_by_name(a.place, a.found).items())) for a in self.arrivals}
        expected = {REPORT_KEYS[a.place]: dict(sorted(_by_name(a.place, a.expected).items())) for a in self.arrivals}
        return {
            "rules_version": self.rules_version,
            "published": dict(self.published),
            "unacknowledged": self.unacknowledged,
            "publish_seconds": round(self.publish_seconds, 2),
            "waited_seconds": round(self.waited_seconds, 1),
            "wait_bound_seconds": self.wait_bound,
            "complete": not self.behind,
            **counted,
            "expected": expected,
            "behind": [{"place": a.place, "missing": a.expected_total - a.found_total, "expected": a.expected_total,
                        "missing_by": _by_name(a.place, a.missing)} for a in self.behind],
            "processors_not_running": list(self.not_running),
            "extra_copies_outside": self.extra_copies,
            "leak_scan": self.scan.as_dict(),
        }


def _by_name(place: str, counts: Mapping[str, int]) -> dict[str, int]:
    """Counts keyed by topic, or for the bucket by `<dept>.<event>` rather than by folder."""
    if place != BUCKET:
        return dict(counts)
    return {folder.rstrip("/").replace("/", "."): n for folder, n in counts.items()}


def run_demo(cfg: Settings, per_type: int, wait: float, progress: Progress | None = None) -> DemoResult:
    """Apply the shipped rules, start the processors, publish a burst of samples and count where they went.

    The demo's events carry ids `demo-<run>-<n>`; the routing engine, under the live rule set, says where each
    must land. The count waits (at most `wait` seconds, telling `progress` after each look) until every one of
    them is on its private topics, on the public cluster and in the bucket, so that a bus still working off a
    backlog is waited for, and one that does not deliver is named, rather than reported as partial counts.
    """
    catalog = load_catalog(cfg)
    ruleset = ensure_live_ruleset(cfg)
    workers.start(cfg)
    run = uuid.uuid4().hex[:8]
    tally = Tally(cfg, catalog, ruleset, f"demo-{run}-")  # counts only what is written from now on

    expected: dict[str, Expectation] = {}
    type_of: dict[str, str] = {}
    acked: set[str] = set()
    publishers: dict[str, Publisher] = {}

    def delivered(delivery: Delivery | None, _error: ProducerError | None) -> None:
        if delivery is not None:  # a failure is logged by the publisher; the event is then expected nowhere
            acked.add(delivery.event_id)

    started = time.monotonic()
    for n, sample in enumerate(sample_events(catalog, REPO_ROOT / "schemas" / "samples", per_type, tag=run)):
        event_type = sample.event_type
        if event_type.dept not in publishers:
            publishers[event_type.dept] = Publisher.for_department(event_type.dept, catalog=catalog,
                                                                   ack_timeout=ACK_TIMEOUT)
        event_id = publishers[event_type.dept].publish_async(
            event_type.key, sample.payload, event_id=f"demo-{run}-{n:06d}", version=event_type.version,
            on_delivery=delivered)
        expected[event_id] = expectation(event_type, sample.payload, ruleset)
        type_of[event_id] = event_type.key
    for publisher in publishers.values():
        publisher.flush(ACK_TIMEOUT)
    publish_s = time.monotonic() - started
    published = Counter(type_of[event_id] for event_id in acked)
    unacknowledged = len(expected) - len(acked)
    expected = {event_id: where for event_id, where in expected.items() if event_id in acked}

    waited_from = time.monotonic()
    counted = await_arrivals(tally, expected, wait, progress)
    waited_s = time.monotonic() - waited_from
    not_running = () if all(a.complete for a in counted) else tuple(
        s.name for s in workers.status(cfg) if not s.running)

    scan = ScanReport()
    scan_public_cluster(kafka.admin_credentials(PUBLIC, cfg), scan)
    scan_bucket(s3_admin_client(cfg), cfg.open_data_bucket, scan)
    return DemoResult(ruleset.version, dict(sorted(published.items())), unacknowledged,
                      publish_s, waited_s, wait, counted, not_running, scan)
