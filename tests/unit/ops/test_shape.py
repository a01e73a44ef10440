"""The shape of the local stack: broker and worker ports, the recorded broker count, replication per size."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybridbus.adapters.config import Settings
from hybridbus.adapters.topology import replication_for
from hybridbus.ops.stack import manager, workers
from hybridbus.ops.stack.components import KafkaBroker, all_components, brokers
from hybridbus.ops.stack.exceptions import StackError


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in ("HBUS_PORT_OFFSET", "HBUS_PRIVATE_BROKERS", "HBUS_PUBLIC_BROKERS", "HBUS_PRIVATE_BOOTSTRAP",
                 "HBUS_PUBLIC_BOOTSTRAP", "HBUS_PORT_PRIVATE_KAFKA", "HBUS_PORT_PRIVATE_CONTROLLER"):
        monkeypatch.delenv(name, raising=False)
    return Settings(state_dir=tmp_path)


def test_replication_is_three_copies_acknowledged_on_two_from_three_brokers() -> None:
    assert [(r.factor, r.min_insync) for r in map(replication_for, (1, 2, 3, 5))] == [(1, 1), (2, 1), (3, 2), (3, 2)]
    with pytest.raises(ValueError):
        replication_for(0)


def test_three_brokers_take_the_next_port_pairs_and_all_are_in_the_bootstrap_list(cfg: Settings) -> None:
    three = cfg.with_brokers(3, 1)
    assert [three.ports.broker("private", n) for n in (1, 2, 3)] == [(19092, 19093), (19094, 19095), (19096, 19097)]
    assert three.private_bootstrap == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    assert three.public_bootstrap == "127.0.0.1:29092"
    assert [c.name for c in all_components(three)] == [
        "vault", "s3", "kafka-private", "kafka-private-2", "kafka-private-3", "kafka-public", "kafka-exporter",
        "prometheus"]
    ports = [p for c in all_components(three) for p in c.ports()]
    assert len(ports) == len(set(ports)), "two components would listen on one port"


def test_each_node_names_every_voter_and_replicates_internal_topics_by_the_model(cfg: Settings) -> None:
    node = brokers(cfg.with_brokers(3, 1), "private")[1]
    assert isinstance(node, KafkaBroker) and node.node == 2
    props = node.properties(manager_creds(), "controller-secret", Path("/data"))
    assert "node.id=2\n" in props
    assert "controller.quorum.voters=1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097\n" in props
    assert "listeners=SASL_PLAINTEXT://127.0.0.1:19094,CONTROLLER://127.0.0.1:19095\n" in props
    for line in ("offsets.topic.replication.factor=3", "transaction.state.log.min.isr=2", "min.insync.replicas=2",
                 "default.replication.factor=3", "unclean.leader.election.enable=false"):
        assert f"{line}\n" in props
    single = brokers(cfg, "private")[0].properties(manager_creds(), "x", Path("/data"))
    assert "min.insync.replicas=1\n" in single and "controller.quorum.voters=1@127.0.0.1:19093\n" in single


def manager_creds():  # type: ignore[no-untyped-def]
    from hybridbus.adapters.secrets import KafkaCredentials

    return KafkaCredentials("admin", "secret")


def test_the_size_asked_is_recorded_and_read_back_by_every_later_settings(cfg: Settings) -> None:
    shaped = manager.shaped(cfg, 3)
    assert (shaped.private_brokers, shaped.public_brokers) == (3, 1)
    assert json.loads((cfg.state_dir / "stack.json").read_text()) == {"brokers": {"private": 3, "public": 1}}
    assert Settings(state_dir=cfg.state_dir).private_brokers == 3
    assert manager.shaped(Settings(state_dir=cfg.state_dir)).private_brokers == 3  # no size asked: the recorded one


def test_a_state_dir_formatted_for_another_size_is_refused(cfg: Settings) -> None:
    data = cfg.state_dir / "kafka-private" / "data"
    data.mkdir(parents=True)
    (data / "meta.properties").write_text("node.id=1\n")
    with pytest.raises(StackError, match="holds a 1-broker private cluster, not 3"):
        manager.shaped(cfg, 3)
    assert not (cfg.state_dir / "stack.json").exists()


def test_further_workers_get_their_own_metrics_ports(cfg: Settings) -> None:
    assert workers.worker_names("router", 3) == ("router", "router-2", "router-3")
    assert [workers.metrics_port(cfg, n) for n in ("router", "router-2", "router-3", "egress-2")] == [
        19101, 19111, 19121, 19112]
    assert workers.worker_of("egress-2") == ("egress", 2)
    for bad in ("bench-router-2", "router-1", "router-x", "nothing"):
        with pytest.raises(StackError):
            workers.worker_of(bad)
