"""The one generated workload every configuration of the benchmark sees: 1 KB Avro events of the catalog.

Events are the catalog's samples, padded to about EVENT_BYTES, encoded once and cycled; each record gets its
own event id (the key) and the publisher's headers, so the router and egress treat it as real traffic.
"""
from __future__ import annotations

import random
import string
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from confluent_kafka import Producer

from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.config import REPO_ROOT
from hybridbus.adapters.fieldcrypt import FieldSealer, LocalKeyService
from hybridbus.ops.samples import sample_events
from hybridbus.runtime.router_step import RouterStep
from producers.publisher import EventEncoder
from routing import headers as H
from routing.catalog import Catalog
from routing.rules import RuleSet

EVENT_BYTES = 1024
SAMPLES = REPO_ROOT / "schemas" / "samples"
VARIANTS = 100  # distinct payloads of each event type
CYCLE_ROUNDS = 10  # rounds of the 100-slot mix before the workload repeats itself

# Share of each event type in the workload (percent); the grades follow from the catalog:
# public 45 (licences, bus arrivals), internal 20 (road closures), sensitive 20 (feedback and permits,
# each with a derived public view), restricted 10 (hospital admissions), important 5 (population statistics).
MIX: Mapping[str, int] = {
    "market.licence_granted": 25,
    "transport.bus_arrival": 20,
    "transport.road_closure": 20,
    "govservice.citizen_feedback": 12,
    "govservice.permit_application": 8,
    "health.hospital_admission": 10,
    "police.population_stats": 5,
}


@dataclass(frozen=True)
class Template:
    """One encoded event, ready to be sent again and again under fresh event ids."""

    topic: str
    event_type: str
    dept: str
    version: int
    value: bytes


@dataclass(frozen=True)
class Expected:
    """What the router and egress must write for a given number of workload events."""

    graded: dict[str, int]  # private output topic -> records (graded topics and derived views)
    public: dict[str, int]  # public-cluster topic -> records

    @property
    def graded_total(self) -> int:
        return sum(self.graded.values())

    @property
    def public_total(self) -> int:
        return sum(self.public.values())


class Workload:
    """The mixed-grade event stream, in a fixed order: the n-th event is the same in every run."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.codec = AvroCodec.for_catalog(catalog)
        # Restricted fields are sealed as a department's client seals them (a local key stands in for Transit), so
        # the router is measured on the bytes it really gets.
        encoder = EventEncoder(catalog, self.codec, sealer=FieldSealer(LocalKeyService()))
        variants: dict[str, list[Template]] = {}
        rng = random.Random(11)
        for sample in sample_events(catalog, SAMPLES, per_type=VARIANTS, canaries=False):
            et = sample.event_type
            if et.key not in MIX or et.version != catalog.get(et.key).version:
                continue
            envelope = encoder.encode(et.dept, et.key, _padded(encoder, et.dept, et.key, sample.payload, rng))
            variants.setdefault(et.key, []).append(
                Template(envelope.topic, et.key, et.dept, et.version, envelope.value))
        # 100 slots hold every type in its share, interleaved by a stable order; the cycle repeats them, each
        # type taking its variants in turn, so a thousand records in a row hold no value twice (as real traffic).
        slots = sorted(((i / share, key) for key, share in MIX.items() for i in range(share)))
        used: Counter[str] = Counter()
        self.cycle: list[Template] = []
        for _ in range(CYCLE_ROUNDS):
            for _, key in slots:
                self.cycle.append(variants[key][used[key] % VARIANTS])
                used[key] += 1

    @property
    def topics(self) -> list[str]:
        return sorted({t.topic for t in self.cycle})

    def mean_bytes(self) -> float:
        return sum(len(t.value) for t in self.cycle) / len(self.cycle)

    def records(self, count: int, run_tag: str) -> Iterator[tuple[Template, bytes, list[tuple[str, bytes]]]]:
        """(template, key, headers) of `count` events; the run tag makes every event id unique."""
        cycle = self.cycle
        for n in range(count):
            template = cycle[n % len(cycle)]
            event_id = f"{run_tag}-{n}".encode()
            yield template, event_id, [
                (H.EVENT_ID, event_id), (H.DEPT, template.dept.encode()), (H.EVENT_TYPE, template.event_type.encode()),
                (H.SCHEMA_VERSION, str(template.version).encode()),
                (H.OCCURRED_AT, str(int(time.time() * 1000)).encode()), (H.TRACE_ID, event_id),
            ]

    def produce(self, producer: Producer, count: int, run_tag: str, topic: str | None = None,
                rate: float | None = None) -> None:
        """Send `count` events (to their ingress topics, or all to `topic`), at most `rate` per second."""
        started = time.monotonic()
        for n, (template, key, headers) in enumerate(self.records(count, run_tag)):
            if rate and n % 50 == 0:
                ahead = started + n / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            while True:
                try:
                    producer.produce(topic or template.topic, template.value, key=key, headers=headers)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        if producer.flush(120) > 0:
            raise RuntimeError("the workload producer could not deliver every event within 120 s")

    def expected(self, count: int, ruleset: RuleSet) -> Expected:
        """Outputs of `count` events under `ruleset`, computed with the router's own step (no broker)."""
        step = RouterStep(self.catalog, self.codec)
        step.load(ruleset)
        per_template: dict[int, list[tuple[str, bool]]] = {}
        for index, template in enumerate(self.cycle):
            batch = step.begin(0)
            step.route_into(batch, template.topic, 0, b"k", template.value, [])
            per_template[index] = [(topic, b"public_cloud" in dict(headers).get(H.DESTINATIONS, b""))
                                   for topic, _, _, _, headers in batch.outputs + batch.dlq]
        graded: Counter[str] = Counter()
        public: Counter[str] = Counter()
        full, rest = divmod(count, len(self.cycle))
        for index, outputs in per_template.items():
            times = full + (1 if index < rest else 0)
            for topic, exported in outputs:
                graded[topic] += times
                if exported:
                    public[topic] += times
        return Expected(dict(graded), dict(public))


def _padded(encoder: EventEncoder, dept: str, key: str, payload: dict, rng: random.Random) -> dict:  # type: ignore[type-arg]
    """The payload with its longest text field lengthened so the encoded event is about EVENT_BYTES.

    The padding is random words, not one repeated character, so that lz4 compresses it about as much as
    real text and every configuration moves real bytes.
    """
    text_fields = [name for name, value in payload.items() if isinstance(value, str)]
    longest = max(text_fields, key=lambda name: len(payload[name].encode()))
    size = len(encoder.encode(dept, key, payload).value)
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < EVENT_BYTES - size - 2:
        words.append("".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))))
    padded = dict(payload)
    padded[longest] = payload[longest] + " " + " ".join(words)[: max(0, EVENT_BYTES - size - 2)]
    return padded


def new_run_tag() -> str:
    return f"bench-{uuid.uuid4().hex[:8]}"

