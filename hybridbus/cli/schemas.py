"""`hbus schemas list|show|check`: the event catalog and the grade of every field."""
from __future__ import annotations

from pathlib import Path

import typer

from hybridbus.cli.output import FAILED, emit_json, fail, table
from hybridbus.config import settings
from routing.catalog import Catalog
from routing.exceptions import SchemaError

app = typer.Typer(help="Print and check the event catalog (schemas/avro).\n\n"
                  "Example: hbus schemas show govservice.citizen_feedback", no_args_is_help=True)


def _catalog() -> Catalog:
    try:
        return Catalog.load(settings().schemas_dir)
    except SchemaError as exc:
        raise fail(str(exc)) from None


@app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every event type and version with its department, grades and ingress topic.

    Example: hbus schemas list --json
    """
    catalog = _catalog()
    rows = [{"type": et.key, "version": et.version, "dept": et.dept, "dept_zh": catalog.departments[et.dept].name_zh,
             "record_grade": et.record_grade.id, "max_grade": et.schema_grade.id, "topic": et.ingress_topic}
            for et in catalog]
    if as_json:
        emit_json(rows)
    else:
        typer.echo(table(["type", "version", "department", "record grade", "max grade", "ingress topic"],
                         [[r["type"], r["version"], f"{r['dept']} {r['dept_zh']}", r["record_grade"], r["max_grade"],
                           r["topic"]] for r in rows]))


@app.command()
def show(event_type: str = typer.Argument(..., help="e.g. govservice.citizen_feedback"),
         version: int | None = typer.Option(None, "--version"), as_json: bool = typer.Option(False, "--json")) -> None:
    """Each field of one event type with its grade and Avro type.

    Example: hbus schemas show health.hospital_admission
    """
    try:
        et = _catalog().get(event_type, version)
    except SchemaError as exc:
        raise fail(str(exc)) from None
    fields = [{"field": f.name, "grade": f.grade.id, "tagged": f.tagged, "type": f.avro_type} for f in et.fields]
    if as_json:
        emit_json({"type": et.key, "version": et.version, "record_grade": et.record_grade.id,
                   "max_grade": et.schema_grade.id, "file": et.path, "fields": fields})
        return
    typer.echo(f"{et.key} v{et.version} ({et.full_name}): record {et.record_grade.id} ({et.record_grade.label_zh}), "
               f"up to {et.schema_grade.id}")
    typer.echo(table(["field", "grade", "avro type"],
                     [[f["field"], f["grade"] + ("" if f["tagged"] else " (untagged)"), f["type"]] for f in fields]))


@app.command()
def check(schemas_dir: Path | None = typer.Argument(None, help="Default: schemas/avro")) -> None:
    """Check every schema: valid Avro, known grades, backward-compatible versions; file and reason per error.

    Example: hbus schemas check schemas/avro
    """
    catalog, errors, warnings = Catalog.check(schemas_dir or settings().schemas_dir)
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
    for error in errors:
        typer.echo(f"error: {error}", err=True)
    if errors or catalog is None:
        raise typer.Exit(FAILED)
    typer.echo(f"{len(catalog)} schemas of {len(catalog.latest())} event types valid")
