"""The router's pseudonyms per batch: one Transit request for a batch's distinct values, a bounded cache that
forgets on a key rotation, a rule switch or with age, and a batch that waits while Vault is out (never partial)."""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest

from hybridbus.adapters.vault import VaultUnavailable
from hybridbus.adapters.exceptions import VaultError
from hybridbus.runtime.pseudonyms import PseudonymCache, key_version


class FakeTransit:
    """Transit HMAC as Vault answers it (`vault:v<N>:<digest>`), with outages on demand; records every request."""

    def __init__(self) -> None:
        self.version = 1
        self.requests: list[list[bytes]] = []
        self.failures: list[Exception] = []

    def hmac_batch(self, inputs: Sequence[bytes]) -> list[str]:
        self.requests.append(list(inputs))
        if self.failures:
            raise self.failures.pop(0)
        return [self.pseudonym(data) for data in inputs]

    def pseudonym(self, data: bytes) -> str:
        return f"vault:v{self.version}:" + hashlib.sha256(bytes([self.version]) + data).hexdigest()[:20]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def cache(transit: FakeTransit, clock: Clock | None = None, **kwargs: float) -> PseudonymCache:
    clock = clock or Clock()
    return PseudonymCache(transit.hmac_batch, sleep=clock.sleep, clock=clock, **kwargs)  # type: ignore[arg-type]


def test_a_batch_is_one_request_for_its_distinct_values() -> None:
    transit = FakeTransit()
    values = {b"complainant:139", b"complainant:138", b"complainant:137"}
    got = cache(transit).resolve(values)
    assert len(transit.requests) == 1 and sorted(transit.requests[0]) == sorted(values)
    assert got == {v: transit.pseudonym(v) for v in values}


def test_remembered_values_are_not_asked_again() -> None:
    transit = FakeTransit()
    pseudonyms = cache(transit)
    first = pseudonyms.resolve({b"a:1", b"a:2"})
    second = pseudonyms.resolve({b"a:2", b"a:3"})
    assert transit.requests[1] == [b"a:3"]  # only the new value
    assert second[b"a:2"] == first[b"a:2"] and second[b"a:3"] == transit.pseudonym(b"a:3")
    assert pseudonyms.resolve({b"a:1"}) == {b"a:1": first[b"a:1"]} and len(transit.requests) == 2


def test_a_rotated_key_recomputes_the_whole_batch_so_that_it_never_mixes_versions() -> None:
    transit = FakeTransit()
    pseudonyms = cache(transit)
    pseudonyms.resolve({b"a:1"})
    transit.version = 2
    got = pseudonyms.resolve({b"a:1", b"a:2"})
    assert {key_version(p) for p in got.values()} == {"v2"}
    assert got[b"a:1"] == transit.pseudonym(b"a:1")
    assert [sorted(r) for r in transit.requests[1:]] == [[b"a:2"], [b"a:1", b"a:2"]]


def test_a_rule_switch_and_age_forget_what_was_remembered() -> None:
    transit, clock = FakeTransit(), Clock()
    pseudonyms = cache(transit, clock, max_age=60.0)
    pseudonyms.resolve({b"a:1"})
    pseudonyms.clear()
    pseudonyms.resolve({b"a:1"})
    clock.now += 61
    pseudonyms.resolve({b"a:1"})
    assert transit.requests == [[b"a:1"]] * 3


def test_the_cache_is_bounded() -> None:
    transit = FakeTransit()
    pseudonyms = cache(transit, max_entries=3)
    pseudonyms.resolve({b"a:1", b"a:2"})
    pseudonyms.resolve({b"a:3", b"a:4"})  # over the bound: start over with these
    assert len(pseudonyms._cached) == 2
    pseudonyms.resolve({b"a:1"})
    assert transit.requests[-1] == [b"a:1"]
    big = {f"b:{i}".encode() for i in range(5)}  # a batch larger than the bound is answered, not remembered
    assert pseudonyms.resolve(big) == {v: transit.pseudonym(v) for v in big} and len(pseudonyms._cached) <= 3


@pytest.mark.parametrize("failure", [VaultUnavailable("vault at x is unreachable"), VaultError("refused")])
def test_an_outage_pauses_the_batch_until_vault_answers(failure: Exception) -> None:
    transit, clock = FakeTransit(), Clock()
    transit.failures = [failure] * 5
    got = cache(transit, clock).resolve({b"a:1", b"a:2"})
    assert got == {v: transit.pseudonym(v) for v in (b"a:1", b"a:2")}
    assert len(transit.requests) == 6 and all(sorted(r) == [b"a:1", b"a:2"] for r in transit.requests)
    assert clock.slept == [0.5, 1.0, 2.0, 4.0, 8.0]  # doubling, up to the bound


def test_an_incomplete_answer_is_never_used() -> None:
    transit, clock = FakeTransit(), Clock()
    answers = [["vault:v1:only-one"], ["vault:v1:x", "vault:v1:y"]]
    pseudonyms = PseudonymCache(lambda inputs: answers.pop(0), sleep=clock.sleep, clock=clock)
    assert sorted(pseudonyms.resolve({b"a:1", b"a:2"}).values()) == ["vault:v1:x", "vault:v1:y"]
    assert clock.slept == [0.5]


def test_key_version_reads_the_transit_prefix() -> None:
    assert key_version("vault:v7:abc") == "v7"
    assert key_version("test:abc") == "" and key_version("plain") == ""
