"""`hbus status`: placeholder, filled in by its own change."""
from __future__ import annotations


def status() -> None:
    """(not yet built)"""
