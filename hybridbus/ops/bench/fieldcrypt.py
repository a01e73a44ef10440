"""`hbus bench crypto`: the CPU one event costs to seal its encrypted fields in the client and open them in a subscriber.

No broker and no Vault: a fixed local key stands in for Transit, whose data keys are cached anyway (one Vault call per
DEFAULT_KEY_MAX_USES fields), so the figure is the per-event AES-GCM and envelope cost the client and subscriber add.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.config import REPO_ROOT, Settings, settings
from hybridbus.adapters.fieldcrypt import FieldOpener, FieldSealer, LocalKeyService, open_payload, seal_payload
from hybridbus.adapters.loaders import load_catalog
from hybridbus.ops.samples import sample_events

EVENT_TYPE = "health.hospital_admission"  # the catalog's type with encrypted fields (two restricted strings)
EVENTS = 20_000
RUNS = 5
KEY_NOTE = "keys: a local AES key stands in for Vault Transit (data keys cached as in the client; no broker, no Vault)"


@dataclass(frozen=True)
class CryptoFigure:
    """CPU µs per event of one side (seal or open): the median of the runs, and every run."""

    side: str
    events: int
    fields_per_event: int
    runs_us: tuple[float, ...]

    @property
    def us_per_event(self) -> float:
        return statistics.median(self.runs_us)

    def as_json(self) -> dict[str, object]:
        return {"us_per_event": round(self.us_per_event, 2), "min": round(min(self.runs_us), 2),
                "max": round(max(self.runs_us), 2), "runs_us": [round(r, 2) for r in self.runs_us],
                "events": self.events, "fields_per_event": self.fields_per_event}


def _cpu_us_per_event(work: Callable[[], object], events: int) -> float:
    started = time.process_time()
    work()
    return (time.process_time() - started) / events * 1e6


def measure(cfg: Settings | None = None, events: int = EVENTS, runs: int = RUNS) -> dict[str, object]:
    """Seal and open `events` admissions `runs` times; also the bytes the envelopes add to an encoded event."""
    cfg = cfg or settings()
    catalog = load_catalog(cfg)
    event_type = catalog.get(EVENT_TYPE)
    codec = AvroCodec.for_catalog(catalog)
    samples = [s.payload for s in sample_events(catalog, REPO_ROOT / "schemas" / "samples", per_type=100, canaries=False)
               if s.event_type.key == EVENT_TYPE and s.event_type.version == event_type.version]
    payloads = [samples[n % len(samples)] for n in range(events)]
    keys = LocalKeyService()
    sealer, opener = FieldSealer(keys), FieldOpener(keys)
    sealed = [seal_payload(event_type, p, sealer) for p in payloads]  # once untimed: every key and cache warm
    for p in sealed:
        open_payload(event_type, p, opener)
    seal_runs, open_runs = [], []
    for _ in range(runs):
        seal_runs.append(_cpu_us_per_event(lambda: [seal_payload(event_type, p, sealer) for p in payloads], events))
        open_runs.append(_cpu_us_per_event(lambda: [open_payload(event_type, p, opener) for p in sealed], events))
    fields = len(event_type.encrypted_fields)
    plain_bytes = statistics.mean(len(codec.encode(event_type, p)) for p in payloads[:1000])
    sealed_bytes = statistics.mean(len(codec.encode(event_type, p)) for p in sealed[:1000])
    return {"event_type": EVENT_TYPE,
            "seal": CryptoFigure("seal", events, fields, tuple(seal_runs)).as_json(),
            "open": CryptoFigure("open", events, fields, tuple(open_runs)).as_json(),
            "bytes_plain": round(plain_bytes, 1), "bytes_sealed": round(sealed_bytes, 1),
            "data_keys_made": sealer.keys_fetched, "note": KEY_NOTE}


def table(data: dict[str, object]) -> str:
    lines = [f"{'side':<22} {'µs/event':>9} {'min–max':>13} {'events':>8}"]
    for side, label in (("seal", "seal (client, gateway)"), ("open", "open (subscriber)")):
        figure = data[side]
        assert isinstance(figure, dict)
        spread = f"{figure['min']:.1f}–{figure['max']:.1f}"
        lines.append(f"{label:<22} {figure['us_per_event']:>9.1f} {spread:>13} {figure['events']:>8,}")
    lines.append(f"{data['event_type']}: {data['seal']['fields_per_event']} encrypted fields; "  # type: ignore[index]
                 f"{data['bytes_plain']} → {data['bytes_sealed']} bytes encoded")
    lines.append(f"CPU time (process_time), median of runs; {KEY_NOTE}")
    return "\n".join(lines)
