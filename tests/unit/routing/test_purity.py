"""`routing` is the policy itself: it reads no file, opens no socket and asks no clock.

The import contracts keep I/O libraries out; this test keeps the standard library's I/O out too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROUTING = Path(__file__).resolve().parents[3] / "routing"
FORBIDDEN_CALLS = {"open", "read_text", "read_bytes", "write_text", "write_bytes", "glob", "rglob", "iterdir",
                   "now", "utcnow", "today", "time", "monotonic", "urandom"}
FORBIDDEN_MODULES = {"os", "io", "socket", "subprocess", "time", "shutil", "tempfile", "random", "secrets"}


def _modules() -> list[Path]:
    return sorted(ROUTING.glob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.name)
def test_routing_module_does_no_io(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FORBIDDEN_MODULES:
            found.append(node.module or "")
        elif isinstance(node, ast.ImportFrom) and node.module == "pathlib":
            found += [a.name for a in node.names if a.name != "PurePath"]
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in FORBIDDEN_CALLS:
                found.append(f"{name}() at line {node.lineno}")
    assert found == [], f"{path.name} does I/O or reads the clock: {found}"
