"""Sample traffic for the demo, the leak proof and the drills: every catalog event type, with canaries.

A canary is a marked value planted in a field; non-public canaries must never be found on the public side,
and public canaries must be (so a scan that finds nothing can be told apart from a scan that cannot see).
A type may have variants (`variants/<type>.v<N>.json`: a list of fields that differ from its sample), so that
one event type is sent both with and without an optional field of a higher grade.
"""
from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routing.catalog import Catalog, EventType
from routing.grades import Grade

SECRET_CANARY = "HBUSLEAK"  # planted in fields above public
OPEN_CANARY = "HBUSOPEN"  # planted in public fields that rules publish


@dataclass(frozen=True)
class SampleEvent:
    event_type: EventType
    payload: dict[str, Any]


def load_sample(samples_dir: Path, event_type: EventType) -> dict[str, Any]:
    return json.loads((samples_dir / f"{event_type.key}.v{event_type.version}.json").read_text(encoding="utf-8"))


def load_variants(samples_dir: Path, event_type: EventType) -> list[dict[str, Any]]:
    """The sample of `event_type` and each of its variants (the sample with some fields changed), in file order."""
    base = load_sample(samples_dir, event_type)
    path = samples_dir / "variants" / f"{event_type.key}.v{event_type.version}.json"
    changes = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    return [base, *({**base, **change} for change in changes)]


def sample_events(catalog: Catalog, samples_dir: Path, per_type: int, seed: int = 7, canaries: bool = True,
                  tag: str = "") -> Iterator[SampleEvent]:
    """`per_type` events of every event type, version and variant, varied, in an interleaved order.

    `tag` goes into every canary so that one run's canaries can be told from another's.
    """
    rng = random.Random(seed)
    bases = [(et, variant) for et in catalog for variant in load_variants(samples_dir, et)]
    for i in range(per_type):
        for event_type, base in bases:
            payload = dict(base)
            for spec in event_type.fields:
                value = payload.get(spec.name)
                if isinstance(value, bool) or value is None:
                    continue
                if isinstance(value, int):
                    payload[spec.name] = value + rng.randint(0, 86_400_000) if value > 10**11 else value + rng.randint(0, 50)
                elif isinstance(value, str) and canaries and spec.grade > Grade.PUBLIC:
                    payload[spec.name] = f"{value}#{SECRET_CANARY}-{spec.grade.id}-{tag}{i}"
                elif isinstance(value, str) and canaries and spec.name in ("company_name", "business_name", "stop_name", "topic"):
                    payload[spec.name] = f"{value}#{OPEN_CANARY}-{tag}{i}"
            yield SampleEvent(event_type, payload)
