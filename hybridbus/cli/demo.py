"""`hbus demo`: the whole bus on the local stack — rules applied, processors running, a burst of every
department's events, then where each went, what the public side holds, and the leak scan.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO

import typer

from hybridbus.adapters.config import settings
from hybridbus.cli.output import FAILED, UNAVAILABLE, emit_json, fail, table
from hybridbus.ops.arrivals import Arrival
from hybridbus.ops.demo import DemoResult, run_demo
from hybridbus.ops.stack.exceptions import StackError

HEADINGS = {"private_cluster": "private topic (graded, internal)", "public_cluster": "public cluster topic",
            "archived": "archived event type"}


class ProgressLine:
    """The wait, on stderr: rewritten in place on a terminal, otherwise a line every `every` seconds."""

    def __init__(self, bound: float, stream: TextIO | None = None, every: float = 10.0) -> None:
        self.bound, self.stream, self.every = bound, stream or sys.stderr, every
        self.tty = self.stream.isatty()
        self._printed_at: float | None = None

    def __call__(self, counted: Sequence[Arrival], waited: float) -> None:
        done = all(a.complete for a in counted)
        line = (f"waiting for the demo's records: "
                + ", ".join(f"{a.place} {a.found_total}/{a.expected_total}" for a in counted)
                + f" ({waited:.0f}s waited, bound {self.bound:.0f}s)")
        if self.tty:
            self.stream.write(f"\r{line}\x1b[K" + ("\n" if done or waited >= self.bound else ""))
        elif done and self._printed_at is None:
            return  # everything was there at the first look: nothing to tell
        elif self._printed_at is None or done or waited >= self.bound or time.monotonic() - self._printed_at >= self.every:
            self.stream.write(line + "\n")
            self._printed_at = time.monotonic()
        self.stream.flush()


def behind_message(result: DemoResult) -> str:
    """Which place is still missing how many of the demo's records, and the processors found stopped."""
    parts = []
    for behind in result.as_dict()["behind"]:
        missing = ", ".join(f"{at} {n}" for at, n in sorted(behind["missing_by"].items()))
        parts.append(f"{behind['place']}: {behind['missing']} of {behind['expected']} missing ({missing})")
    stopped = f"; not running: {', '.join(result.not_running)}" if result.not_running else ""
    return (f"after {result.waited_seconds:.0f}s the demo's records have not all arrived — "
            + "; ".join(parts) + stopped)


def run(per_type: int, wait: float, as_json: bool) -> None:
    try:
        result = run_demo(settings(), per_type, wait, ProgressLine(wait))
    except StackError as exc:
        raise fail(str(exc)) from None
    data = result.as_dict()
    if as_json:
        emit_json(data)
    else:
        published = result.published
        if result.governance:
            typer.echo("rule set, with four eyes:\n" + "\n".join(f"  {step.line()}" for step in result.governance) + "\n")
        typer.echo(f"rule set {result.rules_version}: published {sum(published.values())} events of "
                   f"{len(published)} types in {result.publish_seconds:.1f}s\n")
        if not result.behind:
            for key, heading in HEADINGS.items():
                rows = list(data[key].items()) or [["(none)", 0]]
                typer.echo(table([heading, "demo records"], rows) + "\n")
        scan = data["leak_scan"]
        typer.echo(f"leak scan: {scan['records_scanned']} records and {scan['objects_scanned']} objects on the public "
                   f"side; non-public canaries found: {scan['leaked']}; public canaries found: {scan['public_canaries_found']}")
    if result.scan.leaked:
        raise typer.Exit(FAILED)
    if result.extra_copies:
        raise fail(f"{result.extra_copies} extra copies of the demo's records on the public side "
                   "(duplicates, or where no rule sends them)")
    if result.unacknowledged:
        raise fail(f"{result.unacknowledged} of the demo's events were not acknowledged by the private cluster",
                   UNAVAILABLE)
    if result.behind:
        raise fail(behind_message(result), UNAVAILABLE)


def demo(
    per_type: int = typer.Option(20, "--per-type", help="Events of each event type and version to publish."),
    wait: float = typer.Option(120.0, "--wait", help="At most this many seconds to wait for the demo's records "
                                                     "to arrive everywhere the rules send them."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable report."),
) -> None:
    """Run the bus end to end on the local stack and show where every event went.

    Starts router, egress and archiver, puts the shipped rules in force as people do (the sample engineer
    proposes, the sample approver approves what widens, the engineer applies, every router switches: shown as a
    few lines; when the shipped set is in force already, the engineer first narrows it alone), publishes a burst
    of every department's events (with planted canaries), waits until each of them is on every private topic,
    public-cluster topic and archive folder the rules send it to, counts them there, and scans for leaks everything written
    to the public cluster and the bucket meanwhile (`hbus leak-scan` scans all there is).

    Exit 1 if a non-public canary is found on the public side, or the demo's records were copied out twice;
    exit 3 if some of them had not arrived within --wait seconds (the message names the place behind and how
    many are missing there) or the private cluster did not acknowledge them.

    Example: hbus stack up && hbus demo --per-type 50
    """
    run(per_type, wait, as_json)
