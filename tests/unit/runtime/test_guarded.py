"""The dedupe window egress and the archiver share: a router replay's copies are dropped, memory stays bounded."""
from __future__ import annotations

from hybridbus.runtime.guarded import DedupeWindow


def test_an_event_id_goes_through_once_per_partition() -> None:
    window = DedupeWindow(size=3)
    assert not window.seen(("t", 0), "a")
    assert window.seen(("t", 0), "a")
    assert not window.seen(("t", 1), "a")  # another partition is another stream


def test_the_oldest_ids_are_forgotten_first_beyond_the_bound() -> None:
    window = DedupeWindow(size=3)
    for event_id in "abcd":
        assert not window.seen("p", event_id)
    assert not window.seen("p", "a")  # forgotten: "a" was the oldest of four
    assert window.seen("p", "d") and window.seen("p", "c")


def test_a_partition_loaded_from_its_sink_knows_what_is_already_out_and_forget_starts_it_over() -> None:
    window = DedupeWindow(size=2)
    window.load("p", ["x", "y", "z"])  # only the newest two are kept
    assert window.seen("p", "z") and window.seen("p", "y") and not window.seen("p", "x")
    window.forget("p")
    assert not window.seen("p", "z")
