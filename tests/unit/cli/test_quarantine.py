"""`hbus quarantine`: what `list` prints (ids, reasons, grades; never a field value), and a release with nobody
logged in is an outage to fix, not an act (no actor from a flag)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hybridbus.adapters.loaders import load_catalog_dir
from hybridbus.cli.main import app
from hybridbus.cli.output import UNAVAILABLE
from hybridbus.ops import quarantine as Q
from tests.unit.ops.test_quarantine import CANARY, LICENCE_TOPIC, catalog_with_licence_v2, licence_v2, quarantined_by_both
from tests.unit.runtime.inputs import CATALOG

runner = CliRunner()


@pytest.fixture
def one_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Q.Entry:
    value, headers = licence_v2(load_catalog_dir(catalog_with_licence_v2(tmp_path)), "q-cli")
    entry, = Q.group(quarantined_by_both(CATALOG, LICENCE_TOPIC, 3, b"q-cli", value, headers))
    monkeypatch.setattr(Q, "entries", lambda cfg=None: [entry])
    monkeypatch.setattr(Q, "reviews", lambda cfg=None: {})
    return entry


def test_list_names_the_record_and_never_its_fields(one_record: Q.Entry) -> None:
    outcome = runner.invoke(app, ["quarantine", "list"])
    assert outcome.exit_code == 0, outcome.output
    assert one_record.digest[:12] in outcome.stdout and "q-cli" in outcome.stdout and "does not decode" in outcome.stdout
    assert "archiver,egress" in outcome.stdout and "quarantined" in outcome.stdout
    as_json = runner.invoke(app, ["quarantine", "list", "--json"])
    row, = json.loads(as_json.stdout)
    assert row["event_id"] == "q-cli" and row["grade"] == "important" and row["state"] == "quarantined"
    assert CANARY not in outcome.stdout + as_json.stdout


def test_a_release_with_nobody_logged_in_is_refused_before_anything(one_record: Q.Entry, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from hybridbus.adapters import config

    monkeypatch.delenv("HBUS_TOKEN", raising=False)
    monkeypatch.setenv("HBUS_STATE_DIR", str(tmp_path / "state"))
    config.settings.cache_clear()
    try:
        outcome = runner.invoke(app, ["quarantine", "release", "q-cli"])
    finally:
        config.settings.cache_clear()
    assert outcome.exit_code == UNAVAILABLE and "nobody is logged in" in outcome.output
