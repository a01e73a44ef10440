"""What the processors write to `_hbus.decisions` for the audit trail: ids, grades and verdicts, never payload."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class DecisionRecord:
    """What is written to `_hbus.decisions` for the audit trail: ids and grades, never payload values."""

    component: str
    event_id: str
    event_type: str
    dept: str
    grade: str
    rules_version: str
    destination: str
    topic: str
    verdict: str  # routed | dlq | blocked | forged | exported | quarantined | archived
    reason: str
    at_ms: int
    actor: str = ""  # who acted, for decisions of people (rules applied, secrets rotated); "" for processors

    def to_bytes(self) -> bytes:
        return json.dumps(self.__dict__, ensure_ascii=False, separators=(",", ":")).encode()


DECISIONS_PER_RECORD = 400  # keeps one `_hbus.decisions` record far below Kafka's 1 MB request limit


def decisions_batch(decisions: Sequence[DecisionRecord]) -> list[bytes]:
    """`_hbus.decisions` records for a whole batch, each a JSON array of up to DECISIONS_PER_RECORD decisions,
    so the audit trail costs a few writes per batch rather than one per event."""
    return [json.dumps([d.__dict__ for d in decisions[i:i + DECISIONS_PER_RECORD]], ensure_ascii=False,
                       separators=(",", ":")).encode()
            for i in range(0, len(decisions), DECISIONS_PER_RECORD)]
