"""The atheris entry point the fuzz targets share: instrument what the target imports, then fuzz.

Imported only by an on-demand run (`python fuzz/fuzz_<target>.py …`); the corpus replay in the unit tests
calls the targets' `test_one_input` directly and needs no atheris.
"""
from __future__ import annotations

import sys
from collections.abc import Callable


def run(setup: Callable[[], object], test_one_input: Callable[[bytes], None], instrumented: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=instrumented):
        setup()  # the target's imports happen here, so that coverage guides the fuzzer through them
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
