"""A second router worker for the scaling figure: the same app and consumer group, metrics on a free port.

The first worker holds the router's metrics port; this one asks the OS for any free port instead.
"""
from __future__ import annotations

from hybridbus.config import settings
from processors.router import main

if __name__ == "__main__":
    settings().ports.router_metrics = 0
    main()
