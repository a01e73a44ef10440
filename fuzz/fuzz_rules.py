#!/usr/bin/env python3
"""Coverage-guided fuzz target for the rules loader (`routing/rules.py`).

Rules files are written by people and reviewed like code, but the loader is what stands between a typo
and a router: it must refuse anything it cannot read with a `RuleError` naming file and line, never with
another exception, and what it accepts must survive the trip through `_hbus.rules` (JSON) unchanged.

Run on demand (see fuzz/README.md): `python fuzz/fuzz_rules.py fuzz/corpus/rules -max_total_time=300`.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path
from types import SimpleNamespace

RULESET_HEAD = b'ruleset:\n  version: "fuzz-1"\n'
# The first byte of an input chooses which file the rest becomes: a rules file, or the rule-set head.
RULES_FILE, HEAD_FILE = range(2)
INSTRUMENTED = ["routing"]  # not ruamel: its instrumented scanner raises errors the plain one does not


@cache
def target() -> SimpleNamespace:
    """The loader and a scratch rules directory; imported here, so that the fuzzer can instrument it."""
    from routing.exceptions import RoutingError
    from hybridbus.adapters.loaders import load_ruleset_dir
    from routing.rules import RULESET_FILE, RuleSet

    workdir = Path(tempfile.mkdtemp(prefix="hbus-fuzz-rules-"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    return SimpleNamespace(load=load_ruleset_dir, from_json=RuleSet.from_json, error=RoutingError, head=RULESET_FILE,
                           workdir=workdir)


def test_one_input(data: bytes) -> None:
    """One fuzz input; raises (a crash) only when the loader breaks its contract."""
    if not data:
        return
    t = target()
    for stale in t.workdir.glob("*.yaml"):
        stale.unlink()
    if data[0] % 2 == RULES_FILE:
        (t.workdir / t.head).write_bytes(RULESET_HEAD)
        (t.workdir / "fuzz.yaml").write_bytes(data[1:])
    else:
        (t.workdir / t.head).write_bytes(data[1:])
    try:
        ruleset = t.load(t.workdir)
    except t.error:
        return
    assert t.from_json(ruleset.to_json()).digest == ruleset.digest, "the rule set changes on its way through _hbus.rules"


if __name__ == "__main__":
    from fuzz.harness import run

    run(target, test_one_input, INSTRUMENTED)
