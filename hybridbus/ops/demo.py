"""The demo run behind `hbus demo`: rules applied, processors started, a burst of every department's events,
then, once each of them has reached every place its rules send it (or the bound passed), the count and the leak scan.
"""
from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from hybridbus.adapters import kafka
from hybridbus.adapters.config import REPO_ROOT, Settings
from hybridbus.adapters.loaders import load_catalog, load_rules
from hybridbus.adapters.topology import PRIVATE
from hybridbus.ops.arrivals import (
    BUCKET,
    PRIVATE_CLUSTER,
    PUBLIC_CLUSTER,
    Arrival,
    Expectation,
    Progress,
    Tally,
    await_arrivals,
    expectation,
)
from hybridbus.ops.governance import (
    SAMPLE_APPROVER,
    SAMPLE_ENGINEER,
    apply_proposal,
    apply_rules,
    apply_set,
    approve,
    propose,
    stack_signer,
)
from hybridbus.ops.leakscan import ScanReport
from hybridbus.ops.people import sample_login
from hybridbus.ops.samples import sample_events
from hybridbus.ops.stack import workers
from hybridbus.ops.stack.exceptions import StackError
from hybridbus.runtime.rulesigning import RuleCheck
from hybridbus.runtime.rulestore import LIVE, RuleFeed
from producers.exceptions import ProducerError
from producers.publisher import Delivery, Publisher
from routing.catalog import Catalog
from routing.rules import PUBLIC_CLOUD, RuleSet

ACK_TIMEOUT = 30.0  # seconds the demo's publishers wait for the private cluster to acknowledge the burst
# The report's name for each place, as the JSON has always called them.
REPORT_KEYS = {PRIVATE_CLUSTER: "private_cluster", PUBLIC_CLUSTER: "public_cluster", BUCKET: "archived"}


def live_in_force(cfg: Settings) -> RuleSet | None:
    """The live set as the processors follow it: verified as they verify it (an unsigned or forged set of the same
    digest does not count)."""
    feed = RuleFeed(kafka.admin_credentials(PRIVATE, cfg), RuleCheck(stack_signer(cfg), "tools", load_catalog(cfg)))
    try:
        live = feed.load().get(LIVE)
    finally:
        feed.close()
    return live.ruleset if live is not None else None


def ensure_live_ruleset(cfg: Settings) -> RuleSet:
    """Apply the shipped rule set as live unless it is already the one in force; returns it."""
    ruleset = load_rules(cfg)
    live = live_in_force(cfg)
    if live is None or live.digest != ruleset.digest:
        apply_rules(ruleset, LIVE, cfg)
    return ruleset


# --- the governance part: a proposal, an approval and the routers' switch -------------------------------------

SWITCH_TIMEOUT = 30.0  # seconds the demo waits for every router to report the set it applied


@dataclass(frozen=True)
class GovernanceStep:
    """One act of the demo's rule change, as it prints it."""

    act: str  # narrowed | proposed | approved | applied | switched
    by: str  # the person (their Vault login), or the router worker that switched
    version: str
    detail: str = ""

    def line(self) -> str:
        verbs = {"narrowed": "applied the narrowing", "proposed": "proposed", "approved": "approved",
                 "applied": "applied", "switched": "switched to"}
        return f"{self.by} {verbs.get(self.act, self.act)} {self.version}" + (f": {self.detail}" if self.detail else "")

    def as_dict(self) -> dict[str, str]:
        return {"act": self.act, "by": self.by, "version": self.version, "detail": self.detail}


def narrowed(ruleset: RuleSet) -> RuleSet:
    """The set with its first rule to the public cloud sending to the archive only: a narrowing, which its
    proposer may apply alone, and from which going back to `ruleset` widens (needs an approver)."""
    rules = list(ruleset.rules)
    index = next((i for i, r in enumerate(rules) if PUBLIC_CLOUD in r.to), None)
    if index is None:
        raise StackError("demo", f"rule set {ruleset.version} sends nothing to the public cloud: nothing to narrow")
    rules[index] = replace(rules[index], to=tuple(d for d in rules[index].to if d != PUBLIC_CLOUD))
    return RuleSet(f"{ruleset.version}-demo-narrowed", tuple(rules), ruleset.description)


def router_versions(cfg: Settings) -> dict[str, str]:
    """The live version each running router worker reports on its /metrics (`hbus_rules_info`)."""
    found = {}
    for name in ("router", *(n for n in workers.extra_running(cfg) if n.startswith("router-"))):
        try:
            text = requests.get(workers.metrics_url(cfg, name), timeout=5).text
        except requests.RequestException:
            continue
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "hbus_rules_info" and sample.labels.get("role") == LIVE and sample.value == 1:
                    found[name] = sample.labels.get("version", "")
    return found


def await_switch(cfg: Settings, version: str, applied_at_ms: int,
                 timeout: float = SWITCH_TIMEOUT) -> list[GovernanceStep]:
    """Wait until every router reports `version` live; one step per router, with the seconds since it was applied."""
    started = time.monotonic()
    while True:
        seen = router_versions(cfg)
        if seen and all(v == version for v in seen.values()):
            took = max(0.0, time.time() - applied_at_ms / 1000)
            return [GovernanceStep("switched", name, version, f"hbus_rules_info {took:.1f}s after it was applied")
                    for name in sorted(seen)]
        if time.monotonic() - started > timeout:
            raise StackError("router", f"the routers did not switch to {version} within {timeout:.0f}s: {seen}")
        time.sleep(0.2)


def governed_switch(cfg: Settings, catalog: Catalog) -> tuple[RuleSet, tuple[GovernanceStep, ...]]:
    """Put the shipped set in force the way people do: the sample engineer proposes it, the sample approver
    approves what widens, the engineer applies it, and the routers switch. When it is in force already, the
    engineer first applies a narrowing alone (a narrowing needs no approval), so that going back widens."""
    shipped = load_rules(cfg)
    engineer, approver = sample_login(SAMPLE_ENGINEER, cfg), sample_login(SAMPLE_APPROVER, cfg)
    steps: list[GovernanceStep] = []
    live = live_in_force(cfg)
    if live is not None and live.digest == shipped.digest:
        narrow = narrowed(shipped)
        narrowing = apply_set(narrow, LIVE, engineer, catalog, (), cfg)
        steps.append(GovernanceStep("narrowed", engineer.name, narrow.version, "alone: it only narrows"))
        await_switch(cfg, narrow.version, narrowing.applied_at_ms)
    proposal = propose(shipped, engineer, catalog, cfg)
    moves = "; ".join(f"{r['event_type']} +{', +'.join(r['added'])}" for r in proposal.changes if r["added"])
    widens = any(r["widens"] for r in proposal.changes)
    steps.append(GovernanceStep("proposed", engineer.name, shipped.version, f"digest {proposal.digest[:12]}, "
                                + (f"widens ({moves}): needs a second person" if widens else "nothing widens")))
    if widens:
        approve(proposal.digest, approver, cfg)
        steps.append(GovernanceStep("approved", approver.name, shipped.version, f"digest {proposal.digest[:12]}"))
    applied = apply_proposal(proposal.digest, engineer, catalog, LIVE, cfg)
    signers = ", ".join(f"{s.role} {s.signer}" for s in applied.signatures)
    steps.append(GovernanceStep("applied", engineer.name, shipped.version, f"signed by {signers}"))
    steps.extend(await_switch(cfg, shipped.version, applied.applied_at_ms))
    return shipped, tuple(steps)


def ensure_live_rules(cfg: Settings) -> str:
    """Apply the shipped rule set as live unless it is already the one in force; returns its version."""
    return ensure_live_ruleset(cfg).version


@dataclass(frozen=True)
class DemoResult:
    """What the demo published, where its own records arrived, and the leak scan of all the public side received
    meanwhile."""

    rules_version: str
    published: Mapping[str, int]  # acknowledged events per `<dept>.<event>`
    unacknowledged: int  # events the private cluster did not acknowledge (not expected anywhere)
    publish_seconds: float
    waited_seconds: float
    wait_bound: float
    arrivals: tuple[Arrival, ...]
    not_running: tuple[str, ...]  # processors found stopped when the bound passed
    scan: ScanReport = field(compare=False)
    governance: tuple[GovernanceStep, ...] = ()  # how the rule set came into force: proposal, approval, switch

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
            "governance": [step.as_dict() for step in self.governance],
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
    workers.start(cfg)
    ruleset, governance = governed_switch(cfg, catalog)
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

    # The tally read every record written to any public-cluster topic and every object written to the bucket
    # while it counted, whoever wrote them: the leak scan of the demo's time. `hbus leak-scan` reads all there is.
    return DemoResult(ruleset.version, dict(sorted(published.items())), unacknowledged,
                      publish_s, waited_s, wait, counted, not_running, tally.scan, governance)
