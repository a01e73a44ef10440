"""The Prometheus rules of infra/prometheus: valid (`promtool check rules`) and behaving as their unit tests say."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from hybridbus.adapters.config import REPO_ROOT
from hybridbus.ops.stack.workers import PROCESSORS

RULES_DIR = REPO_ROOT / "infra" / "prometheus"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
RULE_TESTS = sorted((RULES_DIR / "tests").glob("*.yml"))


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: it comes with the Debian package `prometheus` (make install)"
    return subprocess.run([tool, *map(str, args)], capture_output=True, text=True, timeout=60, cwd=RULES_DIR)


def test_every_rule_file_is_valid() -> None:
    assert RULE_FILES, f"no rule files in {RULES_DIR}"
    result = promtool("check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_rule_unit_tests_pass(test_file: Path) -> None:
    result = promtool("test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr


def alert_rules() -> dict[str, dict]:  # type: ignore[type-arg]
    yaml = YAML(typ="safe")
    return {rule["alert"]: rule for path in RULE_FILES for group in yaml.load(path.read_text())["groups"]
            for rule in group["rules"] if "alert" in rule}


def test_every_alert_has_a_unit_test_and_a_runbook_entry() -> None:
    yaml = YAML(typ="safe")
    alerts = set(alert_rules())
    tested = {case["alertname"] for path in RULE_TESTS for test in yaml.load(path.read_text())["tests"]
              for case in test.get("alert_rule_test", [])}
    runbook = (REPO_ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert alerts and alerts <= tested, f"alerts without a promtool test: {sorted(alerts - tested)}"
    assert not [a for a in alerts if f"### {a}" not in runbook], "every alert needs a runbook section"


def test_the_processor_down_alert_watches_every_processor_the_stack_runs() -> None:
    down = alert_rules()["HbusProcessorDown"]["expr"]
    assert all(f"|{name}" in down or f"({name}" in down for name in PROCESSORS), down
