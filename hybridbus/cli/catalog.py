"""`hbus catalog …`: the event catalog as the running bus holds it (the `_hbus.catalog` topic).

`hbus schemas` checks the files on disk; this group is about putting them in force and describing them.
"""
from __future__ import annotations

import json
from pathlib import Path

import typer

from hybridbus.adapters.config import settings
from hybridbus.cli.output import UNAVAILABLE, USAGE, emit_json, fail, table
from hybridbus.ops.asyncapi import UnknownDepartment, asyncapi_for
from hybridbus.runtime.catalogstore import CatalogSnapshot
from routing.exceptions import HybridbusError

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


@app.command("apply")
def apply(
    schemas: Path | None = typer.Option(None, "--schemas", help="The catalog's .avsc folder (<dept>/<event>.v<N>.avsc), "
                                        "departments.yaml beside it, or the folder holding both avro/ and "
                                        "departments.yaml (default: HBUS_SCHEMAS_DIR, schemas/avro)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check and print the plan; change nothing."),
    as_json: bool = typer.Option(False, "--json", help="The plan and what was applied as JSON."),
) -> None:
    """Check a catalog change against the catalog in force, provision what it adds (topics, ACLs, SCRAM users,
    Vault AppRoles and keys of new departments; nothing is ever deleted), put it in force on `_hbus.catalog`, and
    record the act on the audit chain (engineers; the actor is your login). Running it again changes nothing.

    Refused (exit 1, each error with its file): a lowered or dropped grade, a dropped or renamed department, a
    version in force removed or rewritten, a fingerprint collision, rules in force that no longer validate.
    Exit 3 when a system is down: it stops there, says what it applied, and is safe to run again.

    Example: hbus login li.wei && hbus catalog apply --dry-run && hbus catalog apply
    """
    from hybridbus.ops.catalogapply import UNCHANGED, ApplyStopped, CatalogRefused, execute, prepare, summary
    from hybridbus.ops.people import NotAllowed, current

    cfg = settings()
    schemas_dir = (schemas or cfg.schemas_dir).resolve()
    if (schemas_dir / "avro").is_dir() and (schemas_dir / "departments.yaml").is_file():
        schemas_dir = schemas_dir / "avro"  # the folder holding both, as `hbus schemas check` takes it
    try:
        person = current(cfg)
        plan = prepare(schemas_dir, person, cfg)
        applied = [] if dry_run else execute(plan, person, cfg)
    except CatalogRefused as exc:
        for error in exc.errors:
            typer.echo(f"error: {error}", err=True)
        raise fail(str(exc)) from None
    except NotAllowed as exc:
        raise fail(str(exc)) from None
    except ApplyStopped as exc:
        if as_json:
            emit_json({"stopped_at": exc.at, "reason": exc.reason, "applied": summary(exc.applied)})
        raise fail(str(exc), UNAVAILABLE) from None
    except (HybridbusError, OSError) as exc:
        raise fail(str(exc), UNAVAILABLE) from None
    if as_json:
        emit_json({**plan.as_dict(), "dry_run": dry_run, "applied": summary(applied),
                   "applied_by": None if dry_run or not applied else person.name})
        return
    for warning in plan.warnings:
        typer.echo(f"warning: {warning}", err=True)
    rows = summary(plan.steps)
    typer.echo(table(["system", "kind", "create" if dry_run else "created", "update" if dry_run else "updated",
                      UNCHANGED, "names"],
                     [[r["system"], r["kind"], r["create"], r["update"], r["unchanged"], _names(r["changed"])]
                      for r in rows]))
    what = "; ".join(part for part in (
        f"new departments: {', '.join(plan.change.new_departments)}" if plan.change.new_departments else "",
        f"new versions: {', '.join(f'{k} v{v}' for k, v in plan.change.new_versions)}" if plan.change.new_versions else "",
        f"grades raised: {'; '.join(map(str, plan.change.raised))}" if plan.change.raised else "") if part)
    if what:
        typer.echo(what)
    if dry_run:
        typer.echo(f"dry run: {len(plan.todo)} to make, nothing changed (catalog {plan.snapshot.digest[:19]})")
    elif applied:
        typer.echo(f"applied catalog {plan.snapshot.digest[:19]} by {person.name}: {len(applied)} made")
    else:
        typer.echo(f"catalog {plan.snapshot.digest[:19]} is in force and everything it needs exists: nothing changed")


def _names(names: list[str], shown: int = 4) -> str:
    return ", ".join(names[:shown]) + (f", … (+{len(names) - shown})" if len(names) > shown else "")


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
