"""`hbus demo`: the wait shown while the demo's records travel, and what it says and returns when some are late."""
from __future__ import annotations

import io
import json

import pytest
from typer.testing import CliRunner

from hybridbus.cli import demo as cli_demo
from hybridbus.cli.main import app
from hybridbus.cli.output import FAILED, UNAVAILABLE
from hybridbus.ops.arrivals import BUCKET, PRIVATE_CLUSTER, PUBLIC_CLUSTER, Arrival
from hybridbus.ops.demo import DemoResult
from hybridbus.ops.leakscan import ScanReport

runner = CliRunner()
TOPIC = "public.market.licence_granted"


def counted(public_found: int) -> tuple[Arrival, ...]:
    return (Arrival(PRIVATE_CLUSTER, {TOPIC: 20}, {TOPIC: 20}),
            Arrival(PUBLIC_CLUSTER, {TOPIC: 20}, {TOPIC: public_found} if public_found else {}),
            Arrival(BUCKET, {"market/licence_granted/": 20}, {"market/licence_granted/": 20}))


def result(public_found: int, leaked: int = 0, not_running: tuple[str, ...] = ()) -> DemoResult:
    return DemoResult("v1", {"market.licence_granted": 20}, 0, 1.0, 15.0, 15.0, counted(public_found), not_running,
                      ScanReport(records=40, objects=2, leaked=leaked, open_found=40))


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_line_is_rewritten_in_place_on_a_terminal() -> None:
    out = Terminal()
    line = cli_demo.ProgressLine(120, out)
    line(counted(5), 3.0)
    line(counted(20), 6.0)
    text = out.getvalue()
    assert text.startswith("\rwaiting for the demo's records: private cluster 20/20, public cluster 5/20, "
                           "open-data bucket 20/20 (3s waited, bound 120s)\x1b[K\r")
    assert text.endswith("public cluster 20/20, open-data bucket 20/20 (6s waited, bound 120s)\x1b[K\n")


def test_the_progress_line_elsewhere_is_a_line_now_and_then_and_nothing_when_all_is_there_at_once() -> None:
    out = io.StringIO()
    cli_demo.ProgressLine(120, out)(counted(20), 1.0)
    assert out.getvalue() == ""
    line = cli_demo.ProgressLine(120, out, every=3600)
    line(counted(5), 1.0)
    line(counted(6), 2.0)  # too soon for another line
    line(counted(20), 3.0)
    assert [entry.split(": ", 1)[1].split(",")[1] for entry in out.getvalue().splitlines()] == [
        " public cluster 5/20", " public cluster 20/20"]


def test_a_place_still_behind_at_the_bound_is_named_and_the_exit_code_is_unavailable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_demo, "run_demo", lambda *_a, **_k: result(12, not_running=("egress",)))
    outcome = runner.invoke(app, ["demo", "--wait", "15"])
    assert outcome.exit_code == UNAVAILABLE
    assert "after 15s the demo's records have not all arrived — public cluster: 8 of 20 missing " \
           f"({TOPIC} 8); not running: egress" in outcome.stderr
    assert "PUBLIC CLUSTER TOPIC" not in outcome.stdout  # no partial counts given as the result
    assert "leak scan: 40 records" in outcome.stdout


def test_the_json_report_counts_the_demo_records_per_place_and_says_which_is_behind(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_demo, "run_demo", lambda *_a, **_k: result(12))
    outcome = runner.invoke(app, ["demo", "--json"])
    report = json.loads(outcome.stdout)
    assert outcome.exit_code == UNAVAILABLE
    assert report["public_cluster"] == {TOPIC: 12} and report["expected"]["public_cluster"] == {TOPIC: 20}
    assert report["archived"] == {"market.licence_granted": 20}
    assert report["behind"] == [{"place": PUBLIC_CLUSTER, "missing": 8, "expected": 20, "missing_by": {TOPIC: 8}}]


def test_all_arrived_prints_the_counts_and_a_leak_still_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_demo, "run_demo", lambda *_a, **_k: result(20))
    outcome = runner.invoke(app, ["demo"])
    assert outcome.exit_code == 0
    assert f"{TOPIC}  20" in outcome.stdout.split("PUBLIC CLUSTER TOPIC")[1]
    monkeypatch.setattr(cli_demo, "run_demo", lambda *_a, **_k: result(20, leaked=1))
    assert runner.invoke(app, ["demo"]).exit_code == FAILED


def test_an_archive_behind_is_named_by_event_type() -> None:
    late = DemoResult("v1", {"market.licence_granted": 20}, 0, 1.0, 15.0, 15.0,
                      (Arrival(BUCKET, {"market/licence_granted/": 20}, {"market/licence_granted/": 15}),), (),
                      ScanReport())
    assert cli_demo.behind_message(late) == ("after 15s the demo's records have not all arrived — open-data bucket: "
                                             "5 of 20 missing (market.licence_granted 5)")


def test_the_governance_part_is_a_few_lines_before_the_counts_and_in_the_json(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from hybridbus.ops.demo import GovernanceStep

    steps = (GovernanceStep("proposed", "li.wei", "v1", "digest 3f9a1c2e7b4d, widens: needs a second person"),
             GovernanceStep("approved", "zhang.min", "v1", "digest 3f9a1c2e7b4d"),
             GovernanceStep("applied", "li.wei", "v1", "signed by proposer li.wei, approver zhang.min"),
             GovernanceStep("switched", "router", "v1", "hbus_rules_info after 1.2s"))
    monkeypatch.setattr(cli_demo, "run_demo", lambda *_a, **_k: replace(result(20), governance=steps))
    outcome = runner.invoke(app, ["demo"])
    assert outcome.exit_code == 0
    head = outcome.stdout.split("published")[0]
    assert "li.wei proposed v1: digest 3f9a1c2e7b4d" in head and "zhang.min approved v1" in head
    assert "router switched to v1: hbus_rules_info after 1.2s" in head
    report = json.loads(runner.invoke(app, ["demo", "--json"]).stdout)
    assert [s["act"] for s in report["governance"]] == ["proposed", "approved", "applied", "switched"]


def test_the_demo_narrowing_drops_the_public_cloud_from_one_rule_only() -> None:
    from hybridbus.adapters.loaders import load_rules
    from hybridbus.adapters.loaders import load_catalog
    from hybridbus.ops.demo import narrowed
    from routing import governance as G

    shipped, catalog = load_rules(), load_catalog()
    narrow = narrowed(shipped)
    assert narrow.version == f"{shipped.version}-demo-narrowed" and narrow.digest != shipped.digest
    assert not G.widens(shipped, narrow, catalog) and G.widens(narrow, shipped, catalog)
    assert sum(a != b for a, b in zip(shipped.rules, narrow.rules)) == 1
