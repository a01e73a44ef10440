"""`hbus drill`: placeholder, filled in by its own change."""
from __future__ import annotations


def drill() -> None:
    """(not yet built)"""
