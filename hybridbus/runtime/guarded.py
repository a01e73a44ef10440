"""What egress and the archiver share around their sinks: one guard that follows the rule feed's derived views,
and the private `public.*` topics it reads. Each processor keeps only its sink.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.loaders import derived_event_types
from hybridbus.runtime.guard_step import DedupeWindow, GuardStep
from hybridbus.runtime.rulestore import RuleFeed
from routing.catalog import Catalog
from routing.grades import Grade


def guard_for(catalog: Catalog, feed: RuleFeed, destination: str, dedupe: DedupeWindow | None = None) -> GuardStep:
    """The boundary guard of `destination` with the derived view types of every rule set in force (live and
    shadow); `dedupe` is the event-id window the sink loads from what it already holds (egress), else its own."""
    guard = GuardStep(AvroCodec.for_catalog(catalog), destination, dedupe=dedupe, catalog_digest=catalog.digest)
    for applied in feed.load().values():
        guard.learn(derived_event_types(catalog, applied.ruleset))
    return guard


def public_sources(catalog: Catalog, guard: GuardStep) -> list[str]:
    """The private topics a guarded processor reads: every all-public type's and every known view's."""
    return sorted({t.graded_topic(Grade.PUBLIC) for t in catalog.latest() if t.record_grade is Grade.PUBLIC}
                  | {t.graded_topic(Grade.PUBLIC) for t in guard.derived_types()})


def view_follower(plane: Any, guard: GuardStep, catalog: Catalog) -> Callable[[dict[str, Any]], None]:
    """The rule feed's callback: the guard learns new view types between two batches of the data plane."""
    def learn(updates: dict[str, Any]) -> None:
        plane.between_batches(lambda: [guard.learn(derived_event_types(catalog, a.ruleset)) for a in updates.values()])
    return learn
