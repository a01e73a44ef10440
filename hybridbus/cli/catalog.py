"""`hbus catalog …`: the event catalog as the running bus holds it (the `_hbus.catalog` topic).

`hbus schemas` checks the files on disk; this group is about putting them in force and describing them.
"""
from __future__ import annotations

import json
from pathlib import Path

import typer

from hybridbus.adapters.config import settings
from hybridbus.cli.output import USAGE, emit_json, fail
from hybridbus.ops.asyncapi import UnknownDepartment, asyncapi_for
from hybridbus.runtime.catalogstore import CatalogSnapshot

app = typer.Typer(
    help="The catalog in force on the bus: its digest, and putting a changed catalog in force.\n\n"
    "Example: hbus catalog digest",
    no_args_is_help=True,
)


@app.command("digest")
def digest(as_json: bool = typer.Option(False, "--json", help="The digest and file count as JSON.")) -> None:
    """The digest of the catalog on disk (schemas/avro and departments.yaml), as `_hbus.catalog` would carry it.

    Example: hbus catalog digest
    """
    snapshot = CatalogSnapshot.from_dir(settings().schemas_dir)
    if as_json:
        emit_json({"digest": snapshot.digest, "files": len(snapshot.files)})
    else:
        typer.echo(snapshot.digest)


@app.command("asyncapi")
def asyncapi(
    dept: str | None = typer.Option(None, "--dept", help="The department whose view to describe (its ACLs)."),
    public: bool = typer.Option(False, "--public", help="The public-cloud consumer's view: public.* on the public cluster."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Write the document here (default: stdout)."),
) -> None:
    """Write the AsyncAPI 3.0 document of the bus as a department (or a public-cloud consumer) sees it.

    Channels are the topics the identity's ACLs allow, messages the Avro schemas with their grades.

    Example: hbus catalog asyncapi --dept market -o market.asyncapi.json
    """
    if (dept is None) == (not public):
        raise fail("give exactly one of --dept DEPT or --public", USAGE)
    try:
        document = asyncapi_for(settings(), None if public else dept)
    except UnknownDepartment as exc:
        raise fail(str(exc), USAGE) from None
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
