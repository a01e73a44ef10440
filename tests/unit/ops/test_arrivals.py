"""Counting a known set of events against where the rules send them, and waiting for them within a bound."""
from __future__ import annotations

from collections import Counter

from hybridbus.adapters.config import REPO_ROOT
from hybridbus.adapters.loaders import load_catalog, load_rules
from hybridbus.ops.arrivals import BUCKET, PRIVATE_CLUSTER, PUBLIC_CLUSTER, Expectation, arrivals, await_arrivals, \
    expectation
from hybridbus.ops.samples import load_sample

LICENCE = Expectation(frozenset({"public.market.licence_granted"}), frozenset({"public.market.licence_granted"}),
                      frozenset({"market/licence_granted/"}))
CLOSURE = Expectation(frozenset({"internal.transport.road_closure"}), frozenset(), frozenset())


class FakeTally:
    """Copies per place, as a Tally keeps them; each poll lets the next arrivals in."""

    def __init__(self, arriving: list[tuple[str, str, str]] | None = None) -> None:
        self.counts = {place: Counter() for place in (PRIVATE_CLUSTER, PUBLIC_CLUSTER, BUCKET)}
        self.arriving = list(arriving or [])
        self.polls = 0

    def poll(self) -> bool:
        self.polls += 1
        if self.arriving:
            place, at, event_id = self.arriving.pop(0)
            self.counts[place][(at, event_id)] += 1
        return True

    def copies(self, place: str) -> Counter:  # type: ignore[type-arg]
        return self.counts[place]


def test_the_expectation_of_a_public_event_is_its_graded_topic_the_public_cluster_and_the_archive() -> None:
    catalog, ruleset = load_catalog(), load_rules()
    licence = catalog.get("market.licence_granted")
    assert expectation(licence, load_sample(REPO_ROOT / "schemas" / "samples", licence), ruleset) == LICENCE


def test_a_derived_view_is_expected_where_the_view_goes_and_the_source_only_on_its_private_topic() -> None:
    catalog, ruleset = load_catalog(), load_rules()
    permit = catalog.get("govservice.permit_application")
    where = expectation(permit, load_sample(REPO_ROOT / "schemas" / "samples", permit), ruleset)
    assert where.private == {"sensitive.govservice.permit_application", "public.govservice.permit_application_stats"}
    assert where.public == {"public.govservice.permit_application_stats"}
    assert where.archive == {"govservice/permit_application_stats/"}


def test_arrivals_count_each_required_record_once_and_name_what_is_missing() -> None:
    tally = FakeTally()
    tally.counts[PRIVATE_CLUSTER].update({("public.market.licence_granted", "e1"): 2,  # a replay: allowed privately
                                          ("internal.transport.road_closure", "e2"): 1})
    tally.counts[PUBLIC_CLUSTER].update({("public.market.licence_granted", "e1"): 1,
                                         ("public.market.licence_granted", "other-run"): 1})
    counted = {a.place: a for a in arrivals(tally, {"e1": LICENCE, "e2": CLOSURE})}  # type: ignore[arg-type]

    assert counted[PRIVATE_CLUSTER].complete and counted[PRIVATE_CLUSTER].extra_copies == 0
    assert counted[PRIVATE_CLUSTER].found == {"public.market.licence_granted": 1, "internal.transport.road_closure": 1}
    assert counted[PUBLIC_CLUSTER].complete and counted[PUBLIC_CLUSTER].found_total == 1
    assert not counted[BUCKET].complete
    assert counted[BUCKET].missing == {"market/licence_granted/": 1}


def test_copies_outside_beyond_one_per_place_are_extra() -> None:
    tally = FakeTally()
    tally.counts[PUBLIC_CLUSTER].update({("public.market.licence_granted", "e1"): 2,
                                         ("public.transport.bus_arrival", "e2"): 1})
    counted = {a.place: a for a in arrivals(tally, {"e1": LICENCE, "e2": CLOSURE})}  # type: ignore[arg-type]
    assert counted[PUBLIC_CLUSTER].extra_copies == 2  # a duplicate, and a copy where no rule sends e2


def test_the_wait_ends_when_everything_has_arrived_and_reports_each_look() -> None:
    tally = FakeTally([(PRIVATE_CLUSTER, "public.market.licence_granted", "e1"),
                       (PUBLIC_CLUSTER, "public.market.licence_granted", "e1"),
                       (BUCKET, "market/licence_granted/", "e1")])
    looks: list[tuple[int, ...]] = []
    counted = await_arrivals(tally, {"e1": LICENCE}, within=30, interval=0.01,  # type: ignore[arg-type]
                             progress=lambda c, _waited: looks.append(tuple(a.found_total for a in c)))
    assert all(a.complete for a in counted)
    assert looks == [(1, 0, 0), (1, 1, 0), (1, 1, 1)]


def test_the_wait_ends_at_its_bound_with_what_was_found() -> None:
    tally = FakeTally([(PRIVATE_CLUSTER, "public.market.licence_granted", "e1")])
    counted = await_arrivals(tally, {"e1": LICENCE}, within=0.2, interval=0.05)  # type: ignore[arg-type]
    assert [a.place for a in counted if not a.complete] == [PUBLIC_CLUSTER, BUCKET]
    assert tally.polls >= 2
