"""Holding back records of schema fingerprints not known yet: per partition from the first such record on, tried
again until the catalog knows it, given up after the bound; garbage is never held."""
from __future__ import annotations

from hybridbus.adapters.codec import MARKER
from hybridbus.runtime.holdback import HoldBack
from tests.unit.producers.fakes import FakeMessage

KNOWN, NEW = b"K" * 8, b"N" * 8


def raw(topic: str, partition: int, offset: int, value: bytes | None) -> FakeMessage:
    return FakeMessage(topic, partition, offset, b"key", value, [])  # type: ignore[arg-type]


def rec(partition: int, offset: int, fingerprint: bytes = KNOWN, topic: str = "ingress.market.x") -> FakeMessage:
    return raw(topic, partition, offset, MARKER + fingerprint + b"\x02body")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def holdback(known: set[bytes], bound_s: float = 120.0) -> tuple[HoldBack, Clock]:
    clock = Clock()
    return HoldBack(lambda fp: fp in known, bound_s, retry_s=0.5, clock=clock), clock


def offsets(records: list[FakeMessage]) -> list[tuple[int, int]]:
    return [(r.partition(), r.offset()) for r in records]


def test_a_partition_is_held_from_its_first_unknown_record_on_and_the_others_flow() -> None:
    hb, _ = holdback({KNOWN})
    kept, newly, first = hb.split([rec(0, 1), rec(0, 2, NEW), rec(1, 7), rec(0, 3), rec(1, 8)])
    assert offsets(kept) == [(0, 1), (1, 7), (1, 8)]  # nothing of partition 0 after the unknown one
    assert newly == first == [(("ingress.market.x", 0), 2)]
    assert hb.held == {("ingress.market.x", 0): 2}


def test_garbage_is_never_held() -> None:
    hb, _ = holdback({KNOWN})
    garbage = [raw("t", 0, 1, b"not avro at all"), raw("t", 0, 2, None), raw("t", 0, 3, MARKER + b"\x00" * 3),
               raw("t", 0, 4, b"\xc3\x02" + NEW + b"\x02")]
    kept, newly, _ = hb.split(garbage)
    assert offsets(kept) == [(0, 1), (0, 2), (0, 3), (0, 4)] and newly == []


def test_a_held_partition_is_tried_again_and_flows_once_the_catalog_knows_the_fingerprint() -> None:
    known = {KNOWN}
    hb, clock = holdback(known)
    hb.split([rec(0, 2, NEW), rec(0, 3)])
    assert hb.due() == []  # not before its retry time
    # Records fetched before the pause took effect are left out, not handled twice or out of order.
    assert hb.split([rec(0, 4)])[0] == []
    clock.now += 1
    assert hb.due() == [(("ingress.market.x", 0), 2)]
    kept, newly, first = hb.split([rec(0, 2, NEW)])  # still unknown: held again, not counted twice
    assert kept == [] and newly == [(("ingress.market.x", 0), 2)] and first == []
    known.add(NEW)  # the catalog caught up
    hb.retry_now()
    assert hb.due() == [(("ingress.market.x", 0), 2)]
    kept, newly, _ = hb.split([rec(0, 2, NEW), rec(0, 3), rec(0, 4)])
    assert offsets(kept) == [(0, 2), (0, 3), (0, 4)] and newly == [] and hb.held == {}


def test_after_a_rewind_only_the_held_record_comes_first() -> None:
    hb, clock = holdback({KNOWN, NEW})
    hb.held[("ingress.market.x", 0)] = 5
    clock.now += 1
    hb.due()
    assert hb.split([rec(0, 3)])[0] == []  # stale, before the offset sought: already handled
    kept, newly, _ = hb.split([rec(0, 9)])  # past it: the seek did not take, so hold again (never skip)
    assert kept == [] and newly == [(("ingress.market.x", 0), 5)]


def test_a_fingerprint_still_unknown_after_the_bound_is_given_up_to_the_handler() -> None:
    hb, clock = holdback({KNOWN}, bound_s=120)
    hb.split([rec(0, 2, NEW), rec(0, 3, NEW)])
    clock.now += 121
    hb.due()
    kept, newly, _ = hb.split([rec(0, 2, NEW), rec(0, 3, NEW), rec(0, 4)])
    assert offsets(kept) == [(0, 2), (0, 3), (0, 4)] and newly == []  # the handler DLQs them as unknown
    assert hb.waited_s(rec(0, 2, NEW).value()) == 121
    assert hb.waited_s(rec(0, 4).value()) is None


def test_a_revoked_partition_is_forgotten() -> None:
    hb, _ = holdback({KNOWN})
    hb.split([rec(0, 2, NEW), rec(1, 2, NEW)])
    hb.forget([("ingress.market.x", 0)])
    assert hb.held == {("ingress.market.x", 1): 2}
    hb.forget()
    assert hb.held == {} and hb.due() == []
