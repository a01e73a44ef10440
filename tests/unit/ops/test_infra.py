"""Production topology as code, checked offline: the Terraform parses, the rendered files are current and agree with
the local stack's model, checkov finds nothing unjustified, and drift from the catalog is caught."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import hcl2
import pytest
from typer.testing import CliRunner

from hybridbus.adapters.config import Settings, settings
from hybridbus.adapters.topology import PRODUCTION_BROKERS
from hybridbus.cli.main import app
from hybridbus.ops import infra
from hybridbus.ops.stack.bootstrap import role_name
from hybridbus.ops.stack.manager import load_topology

ROOT = Path(__file__).resolve().parents[3]
TERRAFORM = ROOT / "infra" / "terraform"
CHECKOV = ROOT / ".venv-tools" / "bin" / "checkov"
PINNED = {"kafka": "Mongey/kafka", "vault": "hashicorp/vault", "aws": "hashicorp/aws"}
runner = CliRunner()


def shipped() -> Settings:
    return Settings(schemas_dir=ROOT / "schemas" / "avro", rules_dir=ROOT / "routing" / "rules")


@pytest.fixture
def generated_copy(tmp_path: Path) -> Path:
    """A scratch copy of the committed rendering, to tamper with."""
    return Path(shutil.copytree(infra.GENERATED_DIR, tmp_path / "generated"))


@pytest.fixture
def shipped_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HBUS_SCHEMAS_DIR", str(ROOT / "schemas" / "avro"))
    monkeypatch.setenv("HBUS_RULES_DIR", str(ROOT / "routing" / "rules"))
    settings.cache_clear()
    yield
    settings.cache_clear()


def _edit_outputs(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data["output"])
    path.write_text(json.dumps(data), encoding="utf-8")


def test_every_tf_file_parses_and_pins_its_providers() -> None:
    tf_files = sorted(TERRAFORM.rglob("*.tf"))
    assert len(tf_files) >= 15
    pins = []
    for path in tf_files:
        with path.open(encoding="utf-8") as handle:
            doc = hcl2.load(handle)  # raises on a syntax error
        for block in doc.get("terraform", []):
            for providers in block.get("required_providers", []):
                pins.extend(providers.items())
    for name, spec in pins:
        assert spec["source"] == PINNED[name]
        assert re.fullmatch(r"\d+\.\d+\.\d+", spec["version"]), f"{name} is not pinned to one version: {spec['version']}"
    assert {name for name, _ in pins} == set(PINNED)
    for path in sorted(TERRAFORM.rglob("*.tf.json")):
        assert json.loads(path.read_text(encoding="utf-8"))["output"]


def test_the_example_environment_consumes_only_outputs_the_rendering_declares() -> None:
    declared = set()
    for path in infra.GENERATED_DIR.glob("*.tf.json"):
        declared |= set(json.loads(path.read_text(encoding="utf-8"))["output"])
    used = set(re.findall(r"module\.topology\.(\w+)", (TERRAFORM / "environments" / "example" / "main.tf").read_text()))
    assert used == declared


def test_no_credential_is_written_in_any_tf_or_tfvars_file() -> None:
    credential = re.compile(r"(password|secret|token)$", re.IGNORECASE)
    for path in sorted(TERRAFORM.rglob("*.tf")):
        with path.open(encoding="utf-8") as handle:
            doc = hcl2.load(handle)
        for block in doc.get("variable", []):
            for name, spec in block.items():
                if credential.search(name):
                    assert spec.get("sensitive") is True and "default" not in spec, f"{path}: variable {name}"
    for path in sorted(TERRAFORM.rglob("*.tfvars")):
        with path.open(encoding="utf-8") as handle:
            assigned = hcl2.load(handle)
        assert not [key for key in assigned if credential.search(key)], f"{path} assigns a credential"


def test_rendered_files_are_what_render_produces_now() -> None:
    expected = infra.render(shipped())
    assert sorted(expected) == sorted(p.name for p in infra.GENERATED_DIR.glob("*.tf.json"))
    for name, content in expected.items():
        assert (infra.GENERATED_DIR / name).read_text(encoding="utf-8") == content, f"{name} is stale: hbus infra render"


def test_consistency_check_passes_on_the_committed_rendering() -> None:
    assert infra.check(shipped()) == []


def test_rendering_reads_back_to_the_local_stacks_model_at_production_size() -> None:
    topology = load_topology(shipped(), PRODUCTION_BROKERS)
    rendered = infra.read_rendered()
    assert rendered.acls == frozenset(topology.acls)
    assert {k: (t.partitions, t.replication_factor, dict(t.config)) for k, t in rendered.topics.items()} == {
        (t.cluster, t.name): (t.partitions, t.replication_factor, dict(t.config)) for t in topology.topics}
    # Production's three brokers: three copies of every partition, a write acknowledged on two.
    assert {(t.replication_factor, t.config["min.insync.replicas"]) for t in rendered.topics.values()} == {(3, "2")}
    assert sorted(rendered.roles) == sorted(role_name(i) for i in topology.identities)


def test_a_local_stack_of_another_size_still_agrees_with_the_rendering() -> None:
    # The check compares at production's size, so a one-broker local stack (the default) passes it too.
    assert infra.check(shipped().with_brokers(1, 1)) == []


def test_new_event_type_without_re_rendering_fails_the_check(tmp_path: Path) -> None:
    catalog = Path(shutil.copytree(ROOT / "schemas", tmp_path / "schemas"))
    schema = json.loads((catalog / "avro" / "transport" / "road_closure.v1.avsc").read_text(encoding="utf-8"))
    schema.update({"name": "RoadWorks", "hbus.event": "road_works"})
    (catalog / "avro" / "transport" / "road_works.v1.avsc").write_text(json.dumps(schema), encoding="utf-8")
    cfg = Settings(schemas_dir=catalog / "avro", rules_dir=ROOT / "routing" / "rules")

    problems = infra.check(cfg)

    kinds = {p.kind for p in problems}
    assert {"stale", "missing-topic", "stack-disagrees"} <= kinds
    assert any("transport.road_works" in p.message and "ingress.transport.road_works" in p.message
               for p in problems if p.kind == "missing-topic")
    # Rendering again brings production back in line with the catalog.
    out = tmp_path / "generated"
    infra.write(cfg, out)
    assert infra.check(cfg, out) == []


def test_non_public_topic_on_the_public_cluster_fails_the_check(generated_copy: Path) -> None:
    def add_internal_topic(outputs: dict) -> None:  # type: ignore[type-arg]
        outputs["public_topics"]["value"]["internal.transport.road_closure"] = {"partitions": 6, "config": {}}

    _edit_outputs(generated_copy / infra.KAFKA_FILE, add_internal_topic)

    problems = infra.check(shipped(), generated_copy)

    assert any(p.kind == "public-cluster" and "internal.transport.road_closure" in p.message for p in problems)


def test_acl_wider_than_the_model_fails_the_check(generated_copy: Path) -> None:
    def widen(outputs: dict) -> None:  # type: ignore[type-arg]
        private = outputs["private_acls"]["value"]
        private["User:dept-market|topic|prefixed|ingress.market.|write"]["resource_name"] = "ingress."
        outputs["public_acls"]["value"]["reader-writes"] = {
            "principal": "User:pub-public-reader", "resource_type": "Topic", "resource_name": "public.",
            "pattern": "Prefixed", "operation": "Write"}

    _edit_outputs(generated_copy / infra.KAFKA_FILE, widen)

    wider = [p.message for p in infra.check(shipped(), generated_copy) if p.kind == "acl-wider"]

    assert any("User:dept-market may write topic prefixed 'ingress.'" in m for m in wider)
    assert any(m.startswith("public cluster: User:pub-public-reader may write") for m in wider)


def test_cli_check_exits_1_with_json_problems_and_render_repairs(generated_copy: Path, shipped_settings: None) -> None:
    (generated_copy / infra.VAULT_FILE).unlink()

    failed = runner.invoke(app, ["infra", "check", "--dir", str(generated_copy), "--json"])
    rendered = runner.invoke(app, ["infra", "render", "--dir", str(generated_copy)])
    passed = runner.invoke(app, ["infra", "check", "--dir", str(generated_copy)])

    assert failed.exit_code == 1
    problems = json.loads(failed.stdout)
    assert {"kind": "stale", "message": f"{generated_copy / infra.VAULT_FILE} is missing: run `hbus infra render`"} in problems
    assert any(p["kind"] == "stack-disagrees" and "hbus-router" in p["message"] for p in problems)
    assert (rendered.exit_code, rendered.stdout) == (0, "")
    assert passed.exit_code == 0, passed.output


def test_checkov_finds_no_issue_that_is_not_justified_in_a_skip_comment() -> None:
    assert CHECKOV.exists(), f"{CHECKOV} is missing: run `make install` (it installs infra/tools-requirements.txt)"
    result = subprocess.run(
        [str(CHECKOV), "--directory", str(TERRAFORM), "--framework", "terraform", "--skip-download",
         "--compact", "--output", "json"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    report = json.loads(result.stdout)
    summary, results = report["summary"], report["results"]
    failed = [(c["check_id"], c["resource"], c["check_name"]) for c in results.get("failed_checks", [])]
    assert failed == [], failed
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= 20  # every module was scanned, not an empty directory
    for skipped in results.get("skipped_checks", []):
        reason = skipped["check_result"].get("suppress_comment") or ""
        assert len(reason.split()) >= 5, f"{skipped['check_id']} on {skipped['resource']} is skipped without a reason"
