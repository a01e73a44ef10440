"""`hbus leak-scan`: read everything the public side holds and count the canaries; the proof that nothing
non-public left, on demand (the demo and the drills scan only what was written while they ran).
"""
from __future__ import annotations

import typer

from hybridbus.adapters.config import settings
from hybridbus.cli.output import FAILED, emit_json
from hybridbus.ops.leakscan import scan_public_side


def leak_scan(as_json: bool = typer.Option(False, "--json", help="Machine-readable report.")) -> None:
    """Scan every record of every topic on the public cluster and every object in the open-data bucket for the
    canaries planted by the demo, the drills and the tests.

    Exit 1 if a non-public canary is found (the report names where). Reads all there is: on a bus that has run
    for long, this takes a while (about 10,000 records a second).

    Example: hbus leak-scan --json
    """
    report = scan_public_side(settings())
    if as_json:
        emit_json(report.as_dict())
    else:
        typer.echo(f"leak scan: {report.records} records and {report.objects} objects on the public side; "
                   f"non-public canaries found: {report.leaked}; public canaries found: {report.open_found}")
        for where in report.leaked_where[:20]:
            typer.echo(f"  leaked at {where}")
    if report.leaked:
        raise typer.Exit(FAILED)
