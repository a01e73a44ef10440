"""`hbus demo`: the whole bus on the local stack — rules applied, processors running, a burst of every
department's events, then where each went, what the public side holds, and the leak scan.
"""
from __future__ import annotations

import typer

from hybridbus.adapters.config import settings
from hybridbus.cli.output import FAILED, emit_json, fail, table
from hybridbus.ops.demo import run_demo
from hybridbus.ops.stack.exceptions import StackError


def run(per_type: int, wait: float, as_json: bool) -> None:
    try:
        result, report = run_demo(settings(), per_type, wait)
    except StackError as exc:
        raise fail(str(exc)) from None
    version, published, publish_s = result["rules_version"], result["published"], result["publish_seconds"]
    if as_json:
        emit_json(result)
    else:
        typer.echo(f"rule set {version}: published {sum(published.values())} events of {len(published)} types "
                   f"in {publish_s:.1f}s\n")
        rows = [[t, n] for t, n in result["private_cluster"].items()]
        typer.echo(table(["private topic (graded, internal)", "new records"], rows) + "\n")
        typer.echo(table(["public cluster topic", "new records"], list(result["public_cluster"].items()) or [["(none)", 0]]) + "\n")
        typer.echo(table(["archived event type", "new records"], list(result["archived"].items()) or [["(none)", 0]]) + "\n")
        scan = result["leak_scan"]
        typer.echo(f"leak scan: {scan['records_scanned']} records and {scan['objects_scanned']} objects on the public "
                   f"side; non-public canaries found: {scan['leaked']}; public canaries found: {scan['public_canaries_found']}")
    if report.leaked:
        raise typer.Exit(FAILED)


def demo(
    per_type: int = typer.Option(20, "--per-type", help="Events of each event type and version to publish."),
    wait: float = typer.Option(60.0, "--wait", help="Seconds to wait for the public side to settle."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable report."),
) -> None:
    """Run the bus end to end on the local stack and show where every event went.

    Applies the shipped rules, starts router, egress and archiver, publishes a burst of every department's
    events (with planted canaries), then scans the whole public cluster and bucket for leaks.
    Exit 1 if any non-public canary is found on the public side.

    Example: hbus stack up && hbus demo --per-type 50
    """
    run(per_type, wait, as_json)
