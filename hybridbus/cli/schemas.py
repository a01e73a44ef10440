"""`hbus schemas list|show|check`: the event catalog and the grade of every field.

Reads `schemas/avro` (or `HBUS_SCHEMAS_DIR`) through `routing.catalog`; never touches Kafka.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from hybridbus.adapters.config import settings
from hybridbus.adapters.loaders import check_catalog_dir, load_catalog_dir
from hybridbus.cli.output import FAILED, emit_json, fail, table
from routing.catalog import Catalog, EventType
from routing.exceptions import SchemaError

app = typer.Typer(
    help="Print and check the event catalog (schemas/avro) and the grade of every field.\n\n"
    "Example: hbus schemas show govservice.citizen_feedback",
    no_args_is_help=True,
)


def _catalog() -> Catalog:
    try:
        return load_catalog_dir(settings().schemas_dir)
    except SchemaError as exc:
        raise fail(f"the catalog does not load: {exc} (see `hbus schemas check`)") from None


def _avro_type(avro_type: object) -> str:
    return avro_type if isinstance(avro_type, str) else json.dumps(avro_type, ensure_ascii=False)


def _summary(catalog: Catalog, et: EventType) -> dict[str, Any]:
    dept = catalog.departments[et.dept]
    return {"type": et.key, "version": et.version, "dept": et.dept, "dept_zh": dept.name_zh,
            "record_grade": et.record_grade.id, "schema_grade": et.schema_grade.id, "ingress_topic": et.ingress_topic}


@app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="One JSON object per event type and version.")) -> None:
    """Every event type and version: department, record grade, upper-bound grade, ingress topic.

    The upper bound is the grade of an event that carries every field (the high-water mark of the schema).

    Example: hbus schemas list --json
    """
    catalog = _catalog()
    rows = [_summary(catalog, et) for et in catalog]
    if as_json:
        emit_json(rows)
        return
    typer.echo(table(["type", "version", "department", "record grade", "upper bound", "ingress topic"],
                     [[r["type"], r["version"], f"{r['dept']} {r['dept_zh']}", r["record_grade"], r["schema_grade"],
                       r["ingress_topic"]] for r in rows]))


@app.command()
def show(
    event_type: str = typer.Argument(..., help="<dept>.<event>, e.g. govservice.citizen_feedback"),
    version: int | None = typer.Option(None, "--version", help="Default: the latest version."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Each field of one event type with its grade, its Avro type, and whether the grade is tagged.

    An untagged field is treated as the highest grade, so adding one can never leak it.

    Example: hbus schemas show govservice.citizen_feedback
    """
    catalog = _catalog()
    try:
        et = catalog.get(event_type, version)
    except SchemaError as exc:
        raise fail(str(exc)) from None
    fields = [{"field": f.name, "grade": f.grade.id, "type": f.avro_type, "tagged": f.tagged} for f in et.fields]
    if as_json:
        emit_json({**_summary(catalog, et), "full_name": et.full_name, "file": et.path, "fields": fields})
        return
    typer.echo(f"{et.key} v{et.version} ({et.full_name}): record {et.record_grade.id} ({et.record_grade.label_zh}), "
               f"upper bound {et.schema_grade.id} ({et.schema_grade.label_zh})")
    typer.echo(table(["field", "grade", "avro type", "tagged"],
                     [[f["field"], f["grade"], _avro_type(f["type"]), "yes" if f["tagged"] else "NO (treated as highest)"]
                      for f in fields]))


@app.command()
def check(
    schemas_dir: Path | None = typer.Argument(
        None, help="The .avsc folder (<dept>/<event>.v<N>.avsc), or a folder holding avro/ and departments.yaml. "
        "Default: schemas/avro"),
) -> None:
    """Check every schema: valid JSON and Avro, known grades, names matching files, compatible versions.

    Prints every error (`error: <file>: <reason>`) and warning on stderr; exit 1 on any error, else one summary line.

    Example: hbus schemas check schemas/avro
    """
    directory = schemas_dir or settings().schemas_dir
    if (directory / "avro").is_dir():
        directory = directory / "avro"
    catalog, errors, warnings = check_catalog_dir(directory)
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
    for error in errors:
        typer.echo(f"error: {error}", err=True)
    if errors or catalog is None:
        raise typer.Exit(FAILED)
    typer.echo(f"{len(catalog)} schemas of {len(catalog.latest())} event types valid"
               + (f", {len(warnings)} warning{'s' if len(warnings) > 1 else ''}" if warnings else ""))
