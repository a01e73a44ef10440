"""The rule feed's start: a processor that starts while the rules partition's leader moves waits for it."""
from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from hybridbus.adapters import kafka
from hybridbus.adapters.topology import RULES_TOPIC
from hybridbus.runtime import rulestore
from hybridbus.runtime.compacted import CompactedReader
from hybridbus.runtime.rulestore import RuleFeed


class _LeaderMoving:
    """A consumer whose first watermark calls meet a broker that no longer leads the partition."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals

    def get_watermark_offsets(self, partition, timeout):  # noqa: ANN001, ANN201 - confluent's signature
        if self.refusals:
            self.refusals -= 1
            raise KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION))
        return 0, 0

    def consume(self, num, timeout):  # noqa: ANN001, ANN201
        return []


def _feed(consumer: _LeaderMoving) -> RuleFeed:
    feed = RuleFeed.__new__(RuleFeed)
    feed._reader = CompactedReader(consumer, RULES_TOPIC)  # type: ignore[arg-type]
    feed._follower = rulestore.Follower(None)
    return feed


def test_load_waits_for_a_new_leader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka.time, "sleep", lambda _: None)
    consumer = _LeaderMoving(refusals=3)
    assert _feed(consumer).load(timeout=5) == {}
    assert consumer.refusals == 0


def test_load_gives_up_at_its_timeout() -> None:
    with pytest.raises(KafkaException):
        _feed(_LeaderMoving(refusals=10_000)).load(timeout=0.2)


def test_a_feed_without_a_check_keeps_what_it_followed_in_force() -> None:
    """Tools that only look (no signature check) still know which set is live, and since when."""
    from hybridbus.runtime.rulestore import LIVE, AppliedRuleSet

    follower = rulestore.Follower(None)
    first, second = (AppliedRuleSet(LIVE, None, "li.wei", at, "d") for at in (1, 2))
    assert follower.follow([first, second]) == {LIVE: second}
    assert follower.follow([]) == {} and follower.in_force == {LIVE: second}
