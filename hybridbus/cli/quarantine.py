"""`hbus quarantine list|show|release|approve`: review what the boundary guard kept back, and release a record
by two people once a catalog or rules change makes it public (it goes back through egress's own guard)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import typer

from hybridbus.cli.output import FAILED, UNAVAILABLE, emit_json, fail, table
from routing.exceptions import HybridbusError

app = typer.Typer(help="Review quarantined records; release one with two people after the fix.\n\n"
                  "Example: hbus quarantine list && hbus quarantine show 3f9a1c2e7b4d", no_args_is_help=True)

ID = typer.Argument(..., help="The record's event id, or at least 8 characters of its digest (see `list`).")


def _when(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if at_ms else "-"


def _read(action):  # type: ignore[no-untyped-def]
    """Run a review step; a refusal or a missing duty exits 1, an outage 3."""
    from hybridbus.ops.people import NotAllowed

    try:
        return action()
    except NotAllowed as exc:
        raise fail(str(exc), FAILED) from None
    except (HybridbusError, OSError) as exc:
        raise fail(str(exc), UNAVAILABLE) from None


@app.command("list")
def list_cmd(all_: bool = typer.Option(False, "--all", help="Released records too."),
             as_json: bool = typer.Option(False, "--json")) -> None:
    """Every quarantined record: id, event id, type, who kept it, grade, reason, when, size (never its fields).

    Example: hbus quarantine list --json
    """
    from hybridbus.ops import quarantine as Q

    rows = _read(lambda: Q.with_reviews(Q.entries(), Q.reviews()))
    rows = [r for r in rows if all_ or r["state"] != "released"]
    if as_json:
        emit_json(rows)
        return
    typer.echo(table(["id", "event id", "type", "kept by", "grade", "reason", "quarantined", "bytes", "state"],
                     [[r["id"], r["event_id"], r["event_type"] or "?", ",".join(r["by"]), r["grade"], r["reason"],
                       _when(r["quarantined_at_ms"]), r["bytes"], r["state"]] for r in rows]))


@app.command()
def show(ident: str = ID, as_json: bool = typer.Option(False, "--json")) -> None:
    """One record, and whether the guard, looking again under today's catalog and rules, would let it go.

    Field names and grades are shown, never their values.

    Example: hbus quarantine show 3f9a1c2e7b4d
    """
    from hybridbus.ops import quarantine as Q
    from hybridbus.adapters.config import settings

    def look() -> dict[str, Any]:
        entry = Q.find(Q.entries(), ident)
        review = Q.reviews().get(entry.digest)
        # Rule sets read as they are on the topic: a look, not the approver's verified check.
        assessment = Q.second_look(entry, None, settings())
        return {**entry.summary(), "state": Q.review_state(review),
                "copies": [{"by": c.by, "grade": c.grade, "reason": c.reason, "quarantined_at_ms": c.at_ms,
                            "catalog_digest": c.catalog_digest[:12]} for c in entry.copies],
                "headers": sorted({k for k, _ in entry.record.headers}),
                "now": assessment.as_dict()}

    data = _read(look)
    if as_json:
        emit_json(data)
        return
    now = data["now"]
    lines = [f"record {data['digest']}", f"event id: {data['event_id']}", f"source topic: {data['source_topic']}",
             f"size: {data['bytes']} bytes; headers: {', '.join(data['headers'])}", f"state: {data['state']}"]
    lines += [f"kept by {c['by']} at {_when(c['quarantined_at_ms'])}: {c['grade']}: {c['reason']} "
              f"(catalog {c['catalog_digest'] or '?'})" for c in data["copies"]]
    why = "; ".join(now["grade_reasons"]) or now["reason_now"]
    lines.append(f"now: {now['event_type']} graded {now['grade_now']} ({why})")
    lines.append("may be released (hbus quarantine release ID, then a second person's approve)"
                 if now["refusal"] is None else f"stays: {now['refusal']}")
    typer.echo("\n".join(lines))


@app.command()
def release(ident: str = ID) -> None:
    """Propose its release (operators; the actor is your login).

    Refused while the guard still grades it non-public, or when no catalog or rules change came after it was
    quarantined.

    Example: hbus login wang.fang && hbus quarantine release 3f9a1c2e7b4d
    """
    from hybridbus.ops.people import current
    from hybridbus.ops.quarantine import propose_release

    person = _read(current)
    review, _ = _read(lambda: propose_release(ident, person))
    typer.echo(f"release of {review.digest[:12]} (event {review.event_id}) proposed by {review.proposer}; "
               "a second person must approve it (hbus quarantine approve ID)")


@app.command()
def approve(ident: str = ID,
            yes: bool = typer.Option(False, "--yes", help="Approve without the question (the record is shown).")
            ) -> None:
    """Approve a proposed release: the record goes back on its private topic (approvers; not your own proposal).

    The guard looks again first, and egress and the archiver judge it once more on its way out.

    Example: hbus login zhang.min && hbus quarantine approve 3f9a1c2e7b4d
    """
    from hybridbus.ops import quarantine as Q
    from hybridbus.ops.people import current

    person = _read(current)
    entry = _read(lambda: Q.find(Q.entries(), ident))
    summary = entry.summary()
    typer.echo(f"{summary['digest'][:12]}: event {summary['event_id']} on {summary['source_topic']}, kept by "
               f"{', '.join(summary['by'])} ({summary['grade']}: {summary['reason']})")
    if not yes and not typer.confirm("release it?"):
        raise typer.Exit(FAILED)
    review, assessment = _read(lambda: Q.approve_release(entry.digest, person))
    typer.echo(f"released {review.digest[:12]} ({assessment.event_type}, now {assessment.grade_now}) by "
               f"{person.name}, proposed by {review.proposer}")
