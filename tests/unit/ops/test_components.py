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


def test_a_cluster_keeps_one_id_outside_the_secrets_and_moves_one_kept_with_them(tmp_path, monkeypatch) -> None:
    from hybridbus.adapters.config import Settings
    from hybridbus.adapters.secrets import read_private, write_private

    monkeypatch.setenv("HBUS_STATE_DIR", str(tmp_path))
    cfg = Settings()
    first = components.KafkaBroker("kafka-private", cfg, cluster="private", node=1)
    second = components.KafkaBroker("kafka-private-2", cfg, cluster="private", node=2)
    first.admin_credentials()
    assert first.cluster_id() == second.cluster_id()
    assert KAFKA_UUID.match(first.cluster_id())
    assert first.cluster_id() not in {str(v) for v in read_private(first.admin_file).values()}

    public = components.KafkaBroker("kafka-public", cfg, cluster="public", node=1)
    public.admin_credentials()
    write_private(public.admin_file, {**read_private(public.admin_file), "cluster_id": "kept-by-an-older-stack"})
    assert public.cluster_id() == "kept-by-an-older-stack"
    assert "cluster_id" not in read_private(public.admin_file)
