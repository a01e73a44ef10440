"""`hbus infra render|check`: the production topology (infra/terraform) from the same model as the local stack.

Thin shell over `hybridbus.ops.infra`; see infra/terraform/README.md for planning and applying it.
"""
from __future__ import annotations

from pathlib import Path

import typer

from hybridbus.adapters.config import settings
from hybridbus.cli.output import FAILED, emit_json, fail
from hybridbus.ops import infra
from routing.exceptions import RuleError, SchemaError

app = typer.Typer(
    help="Render and check the production topology (infra/terraform) derived from the catalog and the rules.\n\n"
    "Example: hbus infra render && hbus infra check",
    no_args_is_help=True,
)

OUT_DIR = typer.Option(infra.GENERATED_DIR, "--dir", help="Directory of the rendered .tf.json files.")


@app.command()
def render(out_dir: Path = OUT_DIR) -> None:
    """Write the topics, ACLs and Vault roles of the topology model as Terraform JSON (quiet on success).

    Commit the result: `hbus infra check` (and the test command) fail while it is out of date.

    Example: hbus infra render && git diff infra/terraform/generated
    """
    try:
        infra.write(settings(), out_dir)
    except (SchemaError, RuleError) as exc:
        raise fail(f"the catalog or the rules do not load: {exc}") from None


@app.command()
def check(out_dir: Path = OUT_DIR,
          as_json: bool = typer.Option(False, "--json", help="Every problem as a JSON object.")) -> None:
    """Exit 1 when the rendered files disagree with the catalog, the rules or the local stack's model.

    Fails on: stale or missing rendered files, a catalog event type without its topics, a non-public topic on
    the public cluster, an ACL wider than the model, and any topic, ACL or Vault role the local stack and the
    rendered production topology do not share.

    Example: hbus infra check --json
    """
    try:
        problems = infra.check(settings(), out_dir)
    except (SchemaError, RuleError) as exc:
        raise fail(f"the catalog or the rules do not load: {exc}") from None
    if as_json:
        emit_json([p.as_dict() for p in problems])
    else:
        for problem in problems:
            typer.echo(f"{problem.kind}: {problem.message}", err=True)
    if problems:
        raise typer.Exit(FAILED)
