"""Every fault drill of `hbus drill`, run through the drill engine with a short stream and short outages:
nothing lost, nothing duplicated on the public side, nothing leaked, and the bus recovers by itself."""
from __future__ import annotations

from dataclasses import replace

import pytest

from hybridbus.adapters.config import Settings
from hybridbus.ops.drills import DrillOptions, drills_for, run
from hybridbus.ops.stack import manager, workers

# Small enough for the test command; `hbus drill all` runs the same drills with 100,000 events.
OPTIONS = DrillOptions(events=600, rate=600.0, outage=3.0, recovery_timeout=180.0)


@pytest.mark.parametrize("name", drills_for(1))  # the production shape's: tests/integration/test_three_brokers.py
def test_drill_loses_duplicates_and_leaks_nothing(bus: Settings, name: str) -> None:
    # The rotation drill's stream lasts 4 s, so that part of it is surely sealed after the Transit keys rotate.
    options = replace(OPTIONS, rate=150.0) if name == "kafka-rotation" else OPTIONS
    result = run(name, bus, options)
    figures = result.as_dict()
    onboarded = figures.get("catalog_change", {}).get("published", 0)  # events of the types a catalog change added
    assert result.published == OPTIONS.events + 1 + onboarded, figures  # the stream and the probe, all acknowledged
    assert result.lost == 0 and result.duplicated == 0 and result.unexpected_outside == 0, figures
    assert result.leaked == 0 and result.details["public_canaries_found"] > 0, figures
    assert result.recovery_s is not None, figures
    assert not figures.get("pids_changed"), figures
    if name == "kafka-rotation":
        # Every encrypted field of the stream opened for its department's cleared subscriber, to the value sent,
        # from records sealed under the Transit key versions before and after the rotation.
        read_back = figures["read_back"]
        assert read_back["records"] > 0 and read_back["opened"] == read_back["records"], figures
        assert result.unreadable == 0, figures
        for key, version in figures["transit_rotated"].items():
            if key in read_back["key_versions"]:
                assert version in read_back["key_versions"][key] and min(read_back["key_versions"][key]) < version, figures
    assert result.ok
    # The drill leaves the stack and the processors up for what comes next.
    assert all(s.healthy for s in manager.status(bus))
    assert all(s.healthy for s in workers.status(bus))
