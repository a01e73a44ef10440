"""hybridbus plumbing: configuration, Kafka and Vault clients, the Avro codec, metrics and the CLI.

The routing policy itself lives in `routing`; this package only wires it to the outside world.
"""
from __future__ import annotations

__version__ = "0.1.0"
