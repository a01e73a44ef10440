"""The plan of `hbus catalog apply` against what a stack holds, and how it stops at a failure: only what is missing
is made, nothing is deleted, a second run finds everything unchanged, and a stop says what was applied."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import pytest

from hybridbus.adapters.loaders import load_catalog_dir
from hybridbus.adapters.topology import PRIVATE, PUBLIC, AclSpec, Topology, build_topology
from hybridbus.adapters.vault import PersonToken, kafka_kv_path
from hybridbus.ops import catalogapply as A
from hybridbus.ops.people import NotAllowed
from hybridbus.ops.stack.bootstrap import gateway_kv_path, person_policy_name, policy_for, role_name, transit_keys
from hybridbus.runtime.catalogstore import CatalogSnapshot
from routing.catalogdiff import CatalogChange
from routing.rules import RuleSet

ROOT = Path(__file__).resolve().parents[3]
SIZES = {PRIVATE: 1, PUBLIC: 1}
SHIPPED = build_topology(load_catalog_dir(ROOT / "schemas" / "avro"), (), SIZES)
ENGINEER = PersonToken("li.wei", (person_policy_name("engineer"),), "token")


def with_department(tmp_path: Path) -> Topology:
    """The shipped catalog plus a department `ecology` with one public event type."""
    (tmp_path / "avro" / "ecology").mkdir(parents=True)
    departments = (ROOT / "schemas" / "departments.yaml").read_text(encoding="utf-8")
    (tmp_path / "departments.yaml").write_text(departments + "  - id: ecology\n    name_zh: 生态环境局\n"
                                               "    name_en: Ecology\n    clearance: internal\n", encoding="utf-8")
    for path in (ROOT / "schemas" / "avro").glob("*/*.avsc"):
        (tmp_path / "avro" / path.parent.name).mkdir(exist_ok=True)
        (tmp_path / "avro" / path.parent.name / path.name).write_bytes(path.read_bytes())
    (tmp_path / "avro" / "ecology" / "air_quality.v1.avsc").write_text(
        '{"type": "record", "namespace": "hybridbus.ecology", "name": "AirQuality", "hbus.dept": "ecology", '
        '"hbus.event": "air_quality", "hbus.version": 1, "grade": "public", '
        '"fields": [{"name": "station", "type": "string", "grade": "public"}]}', encoding="utf-8")
    return build_topology(load_catalog_dir(tmp_path / "avro"), (), SIZES)


def holding(topology: Topology, digest: str = "sha256:in-force") -> A.Held:
    """A stack that holds everything `topology` names."""
    return A.Held(
        transit_keys=frozenset(k for k, _ in transit_keys(topology)),
        policies={role_name(i): policy_for(i) for i in topology.identities},
        approles=frozenset(role_name(i) for i in topology.identities),
        role_files=frozenset(i.name for i in topology.identities),
        kv=frozenset([gateway_kv_path(i.name) for i in topology.identities if i.kind == "department"]
                     + [kafka_kv_path(c, i.name) for i in topology.identities for c in i.clusters]),
        topics={c: frozenset(t.name for t in topology.topics_on(c)) for c in (PRIVATE, PUBLIC)},
        acls={c: frozenset(topology.acls_on(c)) for c in (PRIVATE, PUBLIC)},
        scram_users={c: frozenset(i.principal for i in topology.identities if c in i.clusters) for c in (PRIVATE, PUBLIC)},
        catalog_digest=digest)


def changed(steps: Iterable[A.Step]) -> set[tuple[str, str, str, str]]:
    return {(s.system, s.kind, s.name, s.action) for s in steps if s.action != A.UNCHANGED}


def test_a_stack_that_holds_everything_and_the_same_catalog_is_all_unchanged() -> None:
    steps = A.plan_steps(SHIPPED, holding(SHIPPED), "sha256:in-force")
    assert changed(steps) == set()
    assert {r["kind"] for r in A.summary(steps)} == {"transit-key", "approle", "scram-user", "topic", "acl", "snapshot"}


def test_a_new_department_plans_only_its_own_logins_keys_topics_and_acls(tmp_path: Path) -> None:
    new = with_department(tmp_path)
    steps = A.plan_steps(new, holding(SHIPPED), "sha256:new")
    todo = changed(steps)
    assert ("vault", "approle", "hbus-ecology", "create") in todo
    assert ("vault", "transit-key", "fields-ecology-restricted", "create") in todo
    assert ("kafka-private", "scram-user", "dept-ecology", "create") in todo
    assert ("kafka-private", "topic", "ingress.ecology.air_quality", "create") in todo
    assert ("kafka-public", "topic", "public.ecology.air_quality", "create") in todo
    assert ("kafka-private", "acl", "User:dept-ecology write topic:ingress.ecology.*", "create") in todo
    assert ("catalog", "snapshot", "sha256:new", "create") in todo
    # Nothing of another department, nothing on the public cluster's logins: the department lives on the private side.
    assert {name for _s, _k, name, _a in todo if "ecology" not in name} == {"sha256:new"}
    assert not any(s == "kafka-public" and k == "scram-user" for s, k, _n, _a in todo)
    # Once made, the same plan is all unchanged.
    assert changed(A.plan_steps(new, holding(new, "sha256:new"), "sha256:new")) == set()


def test_what_the_stack_holds_beyond_the_model_is_never_in_the_plan() -> None:
    extra = AclSpec(PRIVATE, "User:dept-gone", "topic", "ingress.gone.", "prefixed", "write")
    held = holding(SHIPPED)
    held = replace(held, acls={**held.acls, PRIVATE: held.acls[PRIVATE] | {extra}},
                   topics={**held.topics, PRIVATE: held.topics[PRIVATE] | {"ingress.gone.thing"}})
    steps = A.plan_steps(SHIPPED, held, "sha256:in-force")
    assert changed(steps) == set()
    assert not any("gone" in s.name for s in steps)


def test_a_policy_that_differs_from_the_model_or_a_missing_login_is_an_update() -> None:
    held = holding(SHIPPED)
    held = replace(held, policies={**held.policies, "hbus-market": "path \"x\" {}"},
                   role_files=held.role_files - {"transport"})
    assert changed(A.plan_steps(SHIPPED, held, "sha256:in-force")) == {
        ("vault", "approle", "hbus-market", "update"), ("vault", "approle", "hbus-transport", "update")}


def test_a_scram_user_without_its_vault_secret_is_made_again() -> None:
    held = holding(SHIPPED)
    held = replace(held, kv=held.kv - {kafka_kv_path(PRIVATE, "market")})
    assert changed(A.plan_steps(SHIPPED, held, "sha256:in-force")) == {
        ("kafka-private", "scram-user", "dept-market", "create")}


def plan_for(topology: Topology, held: A.Held) -> A.Plan:
    snapshot = CatalogSnapshot({"departments.yaml": "x"})
    return A.Plan(snapshot, CatalogSnapshot({"departments.yaml": "y"}), CatalogChange(("ecology",)), RuleSet.empty(),
                  topology, tuple(A.plan_steps(topology, held, snapshot.digest)))


def test_apply_stops_at_the_first_failure_and_says_what_it_applied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = plan_for(with_department(tmp_path), holding(SHIPPED))
    made: list[tuple[str, str]] = []
    recorded: list[str] = []

    def make(_plan, system, kind, steps, _person, _cfg):  # type: ignore[no-untyped-def]
        if system == "kafka-public":
            raise A.HybridbusError("kafka-public: creating topics failed: broker down")
        made.append((system, kind))
        yield from steps

    monkeypatch.setattr(A, "_make", make)
    monkeypatch.setattr(A, "record_act", lambda _c, verdict, *_a: recorded.append(verdict))
    with pytest.raises(A.ApplyStopped) as stopped:
        A.execute(plan, ENGINEER)
    assert made == [("vault", "transit-key"), ("vault", "approle"), ("kafka-private", "scram-user"),
                    ("kafka-private", "topic"), ("kafka-private", "acl")]
    assert stopped.value.at.startswith("kafka-public topic public.ecology.")
    assert {s.system for s in stopped.value.applied} == {"vault", "kafka-private"}
    assert "applied before it: transit-key 4 on vault, approle 1 on vault" in str(stopped.value)
    assert "run it again" in str(stopped.value)
    assert recorded == ["catalog_apply_stopped"]  # the part made is on the audit chain; the catalog is not in force


def test_apply_makes_every_step_in_order_then_records_the_act(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = plan_for(with_department(tmp_path), holding(SHIPPED))
    order: list[str] = []
    recorded: list[tuple[str, str]] = []

    def make(_plan, system, _kind, steps, _person, _cfg):  # type: ignore[no-untyped-def]
        order.append(system)
        yield from steps

    monkeypatch.setattr(A, "_make", make)
    monkeypatch.setattr(A, "record_act", lambda _c, verdict, _v, _d, _r, _at, actor: recorded.append((verdict, actor)))
    applied = A.execute(plan, ENGINEER)
    assert applied == plan.todo
    assert list(dict.fromkeys(order)) == ["vault", "kafka-private", "kafka-public", "catalog"]
    assert recorded == [("catalog_applied", "li.wei")]


def test_apply_of_a_plan_with_nothing_to_make_records_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = plan_for(SHIPPED, holding(SHIPPED, CatalogSnapshot({"departments.yaml": "x"}).digest))
    monkeypatch.setattr(A, "record_act", lambda *_a: pytest.fail("an unchanged apply is no act"))
    assert A.execute(plan, ENGINEER) == []


def test_only_an_engineer_may_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = plan_for(SHIPPED, holding(SHIPPED))
    with pytest.raises(NotAllowed):
        A.execute(plan, PersonToken("wang.fang", (person_policy_name("operator"),), "token"))
