"""`hbus bench step`: the CPU one event costs in the router step and in the boundary guard, without a broker.

The input is the bench's 1 KB event mix; the guard reads what the router step writes to the public topics.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.config import Settings, settings
from hybridbus.adapters.loaders import derived_event_types, load_catalog, load_rules
from hybridbus.ops.bench.workload import Workload
from hybridbus.runtime.guard_step import DedupeWindow, GuardStep
from hybridbus.runtime.records import Headers
from hybridbus.runtime.router_step import RouterStep
from routing.boundary import PUBLIC_CLOUD
from routing.grades import Grade

RECORDS = 20_000
RUNS = 5
BATCH = 1000  # records per batch, as the router and egress consume them
# CPU µs per event, from the issue "the processing core at a fraction of its cost".
TARGETS_US = {"router": 25.0, "guard": 20.0}
PSEUDONYMISER_NOTE = "pseudonymiser: a local HMAC-SHA256 stand-in for Vault Transit (no broker, no Vault)"
_NOW_MS = 1_800_000_000_000

# (topic, partition, key, value, headers): one record as a consumer hands it over.
Record = tuple[str, int, bytes, bytes, Headers]
# (topic, partition, offset, key, value, headers): a record of a private `public.*` topic, as egress gets it.
PublicRecord = tuple[str, int, int, bytes, bytes, Headers]


@dataclass(frozen=True)
class StepFigure:
    """CPU per event of one step: the median of the runs, and every run."""

    step: str
    records: int
    runs_us: tuple[float, ...]

    @property
    def us_per_event(self) -> float:
        return statistics.median(self.runs_us)

    @property
    def target_us(self) -> float:
        return TARGETS_US[self.step]

    def as_json(self) -> dict[str, object]:
        return {"us_per_event": round(self.us_per_event, 2), "min": round(min(self.runs_us), 2),
                "max": round(max(self.runs_us), 2), "runs_us": [round(r, 2) for r in self.runs_us],
                "records": self.records, "target_us": self.target_us, "met": self.us_per_event <= self.target_us}


# --- the two adapters: the only code that knows the steps' API (the batch API the processors use) ---------------
#
# Each batch is taken as far as the step takes it: its records, its compact decision records and its metric counts
# (what the processor then hands to Kafka and Prometheus is the adapters' cost, not the step's).

def _router_loop(step: RouterStep, records: Sequence[Record], public: list[PublicRecord] | None = None) -> None:
    """Route every record, a batch at a time. Given `public`, adds what the router writes to the public topics (the
    guard's input, numbered by offset per partition): only in the untimed run, as that copy is the bench's work,
    not the router's."""
    prefix = f"{Grade.PUBLIC.id}."
    offsets: dict[tuple[str, int], int] = {}
    for start in range(0, len(records), BATCH):
        batch = step.begin(_NOW_MS)
        for topic, partition, key, value, headers in records[start:start + BATCH]:
            step.route_into(batch, topic, partition, key, value, headers)
        batch.decision_records()
        batch.counts()
        if public is None:
            continue
        for topic, key, value, partition, headers in batch.outputs:
            if topic.startswith(prefix) and partition is not None and value is not None:
                offset = offsets[(topic, partition)] = offsets.get((topic, partition), -1) + 1
                public.append((topic, partition, offset, key or b"", value, headers))


def _guard_loop(guard: GuardStep, records: Sequence[PublicRecord], resume: dict[tuple[str, int], int]) -> int:
    """Check every record as egress does, a batch at a time, with a fresh event-id window (each run sees the
    events for the first time); returns how many may leave."""
    guard.dedupe = DedupeWindow()
    allowed = 0
    for start in range(0, len(records), BATCH):
        batch = guard.begin(_NOW_MS, resume)
        for record in records[start:start + BATCH]:
            guard.check_into(batch, *record)
        batch.decision_records()
        batch.counts()
        allowed += len(batch.allowed)
    return allowed


# ------------------------------------------------------------------------------------------------------------

def local_pseudonymiser(key: bytes = b"hbus-bench-local-key") -> Callable[[bytes], bytes]:
    """Keyed HMAC-SHA256 in process, shaped like Vault Transit's answer, so a bench needs no Vault."""
    def pseudonymise(data: bytes) -> bytes:
        return b"vault:v1:" + base64.b64encode(hmac.new(key, data, hashlib.sha256).digest())
    return pseudonymise


def ingress_records(workload: Workload, count: int) -> list[Record]:
    """`count` records of the workload as the router's consumer would hand them over (made before timing)."""
    return [(template.topic, n % 6, key, template.value, headers)
            for n, (template, key, headers) in enumerate(workload.records(count, "bench-step"))]


def _cpu_us_per_record(work: Callable[[], object], records: int) -> float:
    started = time.process_time()
    work()
    return (time.process_time() - started) / records * 1e6


def measure(cfg: Settings | None = None, records: int = RECORDS, runs: int = RUNS,
            progress: Callable[[str], None] = lambda label: None) -> dict[str, StepFigure]:
    """CPU µs per event of the router step and the guard step, `runs` times over `records` records each."""
    cfg = cfg or settings()
    catalog = load_catalog(cfg)
    ruleset = load_rules(cfg)
    workload = Workload(catalog)
    router = RouterStep(catalog, AvroCodec.for_catalog(catalog), pseudonymiser=local_pseudonymiser())
    router.load(ruleset)
    guard = GuardStep(AvroCodec.for_catalog(catalog), PUBLIC_CLOUD, derived_event_types(catalog, ruleset))
    inputs = ingress_records(workload, records)
    public: list[PublicRecord] = []
    _router_loop(router, inputs, public)  # once untimed: the guard's input, and every cache warm
    if not public:
        raise RuntimeError("the router step wrote nothing to the public topics: no input for the guard step")
    # Egress resumes every partition after what the public side holds: here nothing yet.
    resume = {(topic, partition): -1 for topic, partition, *_ in public}
    _guard_loop(guard, public, resume)
    router_runs, guard_runs = [], []
    for i in range(runs):
        progress(f"router step {i + 1}/{runs}")
        router_runs.append(_cpu_us_per_record(lambda: _router_loop(router, inputs), len(inputs)))
        progress(f"guard step {i + 1}/{runs}")
        guard_runs.append(_cpu_us_per_record(lambda: _guard_loop(guard, public, resume), len(public)))
    return {"router": StepFigure("router", len(inputs), tuple(router_runs)),
            "guard": StepFigure("guard", len(public), tuple(guard_runs))}


def table(figures: dict[str, StepFigure]) -> str:
    lines = [f"{'step':<12} {'µs/event':>9} {'min–max':>13} {'records':>8} {'target':>8}"]
    for name, figure in figures.items():
        spread = f"{min(figure.runs_us):.1f}–{max(figure.runs_us):.1f}"
        mark = "met" if figure.us_per_event <= figure.target_us else "missed"
        lines.append(f"{name + ' step':<12} {figure.us_per_event:>9.1f} {spread:>13} {figure.records:>8,} "
                     f"{'≤ %.0f' % figure.target_us:>8} {mark}")
    runs = len(next(iter(figures.values())).runs_us)
    lines.append(f"CPU time (process_time), median of {runs} runs; {PSEUDONYMISER_NOTE}")
    return "\n".join(lines)
