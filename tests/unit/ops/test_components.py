"""The local stack's KRaft cluster ids: never read as a command-line option, always what Kafka accepts."""
from __future__ import annotations

import base64
import re

from hybridbus.ops.stack import components
from hybridbus.ops.stack.components import new_cluster_id

KAFKA_UUID = re.compile(r"^[A-Za-z0-9_-]{22}$")


def test_generated_cluster_ids_never_start_with_a_dash_and_decode_to_16_bytes() -> None:
    ids = [new_cluster_id() for _ in range(20_000)]
    assert all(KAFKA_UUID.match(i) for i in ids)
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids[:100])
    assert len(set(ids)) == len(ids)


def test_a_dash_draw_is_drawn_again(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # 0xfb.. encodes to "-..." in URL-safe base64: the first draw must be refused, the second kept.
    draws = iter([bytes([0xFB]) + bytes(15), bytes([0x10]) + bytes(15)])

    class FakeUuid:
        def __init__(self) -> None:
            self.bytes = next(draws)

    monkeypatch.setattr(components.uuid, "uuid4", FakeUuid)
    assert base64.urlsafe_b64encode(bytes([0xFB]) + bytes(15)).decode().startswith("-")
    assert new_cluster_id() == base64.urlsafe_b64encode(bytes([0x10]) + bytes(15)).decode().rstrip("=")
