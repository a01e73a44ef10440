"""What egress and the archiver share around their sinks: one guard that follows the catalog in force and the rule
feed's derived views, and the pattern of the private `public.*` topics it reads. Each processor keeps only its sink.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.loaders import derived_event_types
from hybridbus.runtime.guard_step import DedupeWindow, GuardStep
from routing.catalog import Catalog
from routing.grades import Grade
from routing.rules import RuleSet

# Every private `public.*` topic, those created after the start included (librdkafka's regex subscription).
PUBLIC_PATTERN = f"^{re.escape(Grade.PUBLIC.id + '.')}.*"


class FollowedGuard:
    """The boundary guard of `destination`, with the view types of the catalog and every rule set in force (live
    and shadow); `dedupe` is the event-id window the sink loads from what it already holds (egress), else its own;
    `stamped`, the header names the sink sets itself (see `GuardStep`).

    Both inputs change only between two batches of the data plane, through `on_rules` and `on_catalog`.
    """

    def __init__(self, catalog: Catalog, applied: Mapping[str, Any], destination: str,
                 dedupe: DedupeWindow | None = None, stamped: frozenset[str] = frozenset()) -> None:
        self.catalog = catalog
        self.rulesets: dict[str, RuleSet | None] = {role: a.ruleset for role, a in applied.items()}
        self.guard = GuardStep(AvroCodec.for_catalog(catalog), destination, dedupe=dedupe,
                               catalog_digest=catalog.digest, stamped=stamped)
        self.guard.learn(self._views())

    def _views(self) -> list[Any]:
        return [t for ruleset in self.rulesets.values() for t in derived_event_types(self.catalog, ruleset)]

    def use_rules(self, updates: Mapping[str, Any]) -> None:
        self.rulesets.update({role: a.ruleset for role, a in updates.items()})
        self.guard.learn(self._views())

    def use_catalog(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.guard.use_codec(AvroCodec.for_catalog(catalog), self._views(), catalog.digest)

    def on_rules(self, plane: Any) -> Callable[[dict[str, Any]], None]:
        """The rule feed's callback: the guard learns new view types between two batches of the data plane."""
        return lambda updates: plane.between_batches(lambda: self.use_rules(updates))

    def on_catalog(self, plane: Any, check: Any) -> Callable[[Any], None]:
        """The catalog feed's callback: the guard judges under the new catalog from the next batch on, and the rule
        check (`RuleCheck`) judges a widening on its types."""
        def switch(in_force: Any) -> None:
            check.use_catalog(in_force.catalog)
            plane.between_batches(lambda: self.use_catalog(in_force.catalog))
        return switch

