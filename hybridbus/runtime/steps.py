"""The processors' steps by their older import path: the router's in `router_step`, the boundary guard's in
`guard_step`, the record helpers in `records`. New code imports from those modules.
"""
from __future__ import annotations

from hybridbus.runtime.guard_step import BoundaryStep, GuardOutcome, GuardStep
from hybridbus.runtime.records import Headers, OutRecord, header, header_map
from hybridbus.runtime.router_step import Outcome, RouterStep

__all__ = ["BoundaryStep", "GuardOutcome", "GuardStep", "Headers", "OutRecord", "Outcome", "RouterStep", "header",
           "header_map"]
