"""`hbus catalog …`: the event catalog as the running bus holds it (the `_hbus.catalog` topic).

`hbus schemas` checks the files on disk; this group is about putting them in force and describing them.
"""
from __future__ import annotations

import typer

from hybridbus.adapters.config import settings
from hybridbus.cli.output import emit_json
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
