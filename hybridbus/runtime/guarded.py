"""What egress and the archiver share around their sinks: one guard that follows the rule feed's derived views,
and the private `public.*` topics it reads. Each processor keeps only its sink.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.loaders import derived_event_types
from hybridbus.runtime.rulestore import RuleFeed
from hybridbus.runtime.steps import BoundaryStep
from routing.catalog import Catalog
from routing.grades import Grade

DEDUPE_WINDOW = 20_000  # event ids remembered per partition: a router replay repeats at most an uncommitted batch


class DedupeWindow:
    """The event ids a sink let through lately, per partition, at most `size` each (the oldest forgotten first).

    The router writes an event again at a new offset after a crash; a sink that already let it out drops the copy.
    """

    def __init__(self, size: int = DEDUPE_WINDOW) -> None:
        self.size = size
        self._ids: dict[Hashable, OrderedDict[Any, None]] = {}

    def seen(self, partition: Hashable, event_id: Any) -> bool:
        """True when `event_id` already went through on `partition`; remembers it otherwise."""
        window = self._ids.get(partition)
        if window is None:
            window = self._ids[partition] = OrderedDict()
        if event_id in window:
            return True
        window[event_id] = None
        if len(window) > self.size:
            window.popitem(last=False)
        return False

    def load(self, partition: Hashable, event_ids: Iterable[Any]) -> None:
        """Start `partition` over from what its sink already holds (oldest first)."""
        window: OrderedDict[Any, None] = OrderedDict.fromkeys(event_ids)
        while len(window) > self.size:
            window.popitem(last=False)
        self._ids[partition] = window

    def forget(self, partition: Hashable) -> None:
        self._ids.pop(partition, None)


def guard_for(catalog: Catalog, feed: RuleFeed) -> BoundaryStep:
    """The boundary guard with the derived view types of every rule set in force (live and shadow)."""
    guard = BoundaryStep(AvroCodec.for_catalog(catalog))
    for applied in feed.load().values():
        guard.learn(derived_event_types(catalog, applied.ruleset))
    return guard


def public_sources(catalog: Catalog, guard: BoundaryStep) -> list[str]:
    """The private topics a guarded processor reads: every all-public type's and every known view's."""
    return sorted({t.graded_topic(Grade.PUBLIC) for t in catalog.latest() if t.record_grade is Grade.PUBLIC}
                  | {t.graded_topic(Grade.PUBLIC) for t in guard.derived_types()})


def view_follower(plane: Any, guard: BoundaryStep, catalog: Catalog) -> Callable[[dict[str, Any]], None]:
    """The rule feed's callback: the guard learns new view types between two batches of the data plane."""
    def learn(updates: dict[str, Any]) -> None:
        plane.between_batches(lambda: [guard.learn(derived_event_types(catalog, a.ruleset)) for a in updates.values()])
    return learn
