"""The fuzz corpora replayed through the fuzz targets themselves, without atheris: every input the fuzzer kept
(including each crash it found, once fixed) must keep meeting the codec's and the rules loader's contracts."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fuzz import fuzz_codec, fuzz_rules

CORPUS = Path(__file__).resolve().parents[2] / "fuzz" / "corpus"


@pytest.mark.parametrize(("name", "target"), [("codec", fuzz_codec.test_one_input), ("rules", fuzz_rules.test_one_input)])
def test_every_corpus_input_meets_the_contract(name: str, target: Callable[[bytes], None]) -> None:
    inputs = sorted(p for p in (CORPUS / name).iterdir() if p.is_file())
    assert len(inputs) >= 20, f"the {name} corpus is missing"
    failures = []
    for path in inputs:
        try:
            target(path.read_bytes())
        except Exception as exc:  # noqa: BLE001 - report every input that breaks the contract, not just the first
            failures.append(f"{path.name}: {type(exc).__name__}: {exc}")
    assert not failures, f"{len(failures)} of {len(inputs)} inputs fail:\n" + "\n".join(failures[:20])
