"""`hbus rules validate|test|explain|diff|apply`: the platform engineer's tools for the routing rules."""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer

from hybridbus.adapters.config import settings
from hybridbus.adapters.loaders import load_catalog, load_ruleset_dir
from hybridbus.cli.output import FAILED, UNAVAILABLE, emit_json, fail, table
from routing.catalog import Catalog, grade_reasons
from routing.engine import route
from routing.exceptions import HybridbusError, RoutingError, RuleError, SchemaError
from routing.rules import RuleSet
from routing.validator import validate

app = typer.Typer(help="Validate, test, explain, compare and apply routing rules.\n\n"
                  "Example: hbus rules validate && hbus rules test && hbus rules apply", no_args_is_help=True)

# A fixed key for `test` and `explain` only: pseudonyms there are illustrations, never the bus's real ones,
# which are computed inside Vault Transit.
EXPLAIN_KEY = b"hybridbus-rules-test-key (not a secret)"

DIR = typer.Argument(None, help="Rules directory (default: routing/rules).")


def _pseudonymise(data: bytes) -> str:
    import hashlib
    import hmac

    return "test:" + hmac.new(EXPLAIN_KEY, data, hashlib.sha256).hexdigest()[:16]


def _load(rules_dir: Path | None) -> tuple[RuleSet, Catalog]:
    cfg = settings()
    try:
        return load_ruleset_dir(rules_dir or cfg.rules_dir), load_catalog(cfg)
    except (RuleError, SchemaError) as exc:
        raise fail(str(exc)) from None


@app.command("validate")
def validate_cmd(rules_dir: Path | None = DIR, as_json: bool = typer.Option(False, "--json")) -> None:
    """Prove the rules against the schema catalog; exit 1 with file:line: rule: reason per error.

    Example: hbus rules validate routing/rules
    """
    ruleset, catalog = _load(rules_dir)
    report = validate(ruleset, catalog)
    if as_json:
        emit_json({"version": ruleset.version, "digest": ruleset.digest, "ok": report.ok,
                   "errors": [str(e) for e in report.errors], "notes": [str(n) for n in report.notes]})
    else:
        for error in report.errors:
            typer.echo(f"error: {error}", err=True)
        for note in report.notes:
            typer.echo(f"note: {note}")
        if report.ok:
            typer.echo(f"rule set {ruleset.version}: {len(ruleset.rules)} rules valid (digest {ruleset.digest[:12]})")
    if not report.ok:
        raise typer.Exit(FAILED)


def _event_from(case: Mapping[str, Any], catalog: Catalog) -> tuple[Any, dict[str, Any], str | None]:
    event_type = catalog.get(str(case["type"]), case.get("version"))
    return event_type, dict(case["payload"]), case.get("claimed_grade")


def _destinations(result: Any) -> list[str]:
    return sorted({f"{d.destination}:{d.topic}" for d in result.decisions})


@app.command("test")
def test_cmd(rules_dir: Path | None = DIR, as_json: bool = typer.Option(False, "--json")) -> None:
    """Run the rule test cases in <rules>/tests/*.yaml: given an event, expect these destinations and output.

    Example: hbus rules test
    """
    from ruamel.yaml import YAML

    ruleset, catalog = _load(rules_dir)
    tests_dir = (rules_dir or settings().rules_dir) / "tests"
    results = []
    for path in sorted(tests_dir.glob("*.yaml")):
        for case in (YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}).get("cases", []):
            name = case.get("name", "?")
            try:
                event_type, payload, claimed = _event_from(case, catalog)
                result = route(event_type, payload, ruleset, claimed_grade=claimed, pseudonymise=_pseudonymise)
                got = _destinations(result)
                problems = []
                if sorted(case.get("expect", {}).get("destinations", [])) != got:
                    problems.append(f"destinations {got}")
                if "grade" in case.get("expect", {}) and case["expect"]["grade"] != result.grade.id:
                    problems.append(f"grade {result.grade.id}")
                if "forged" in case.get("expect", {}) and bool(case["expect"]["forged"]) != result.forged:
                    problems.append(f"forged {result.forged}")
                for topic, expected in (case.get("expect", {}).get("outputs") or {}).items():
                    out = next((dict(d.payload) for d in result.decisions if d.topic == topic), None)
                    if out != expected:
                        problems.append(f"output on {topic}: {json.dumps(out, ensure_ascii=False)}")
                results.append({"case": name, "file": str(path), "ok": not problems, "got": problems})
            except (RoutingError, KeyError, TypeError) as exc:
                results.append({"case": name, "file": str(path), "ok": False, "got": [f"error: {exc}"]})
    failed = [r for r in results if not r["ok"]]
    if as_json:
        emit_json({"passed": len(results) - len(failed), "failed": len(failed), "cases": results})
    else:
        for r in results:
            typer.echo(f"{'ok  ' if r['ok'] else 'FAIL'} {r['case']}" + ("" if r["ok"] else f"  ({'; '.join(r['got'])})"))
        typer.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed or not results:
        raise typer.Exit(FAILED)


@app.command()
def explain(event_file: Path = typer.Argument(..., help='JSON: {"type": "...", "version": N, "payload": {...}, "claimed_grade": "..."}'),
            rules_dir: Path | None = typer.Option(None, "--rules"), as_json: bool = typer.Option(False, "--json")) -> None:
    """Why an event goes where it goes: its grade and what raised it, every rule considered, the decisions.

    Example: hbus rules explain schemas/samples/event.json
    """
    ruleset, catalog = _load(rules_dir)
    try:
        event_type, payload, claimed = _event_from(json.loads(event_file.read_text(encoding="utf-8")), catalog)
    except (OSError, ValueError, KeyError, SchemaError) as exc:
        raise fail(f"{event_file}: {exc}") from None
    result = route(event_type, payload, ruleset, claimed_grade=claimed, pseudonymise=_pseudonymise)
    considered = []
    for rule in ruleset.rules:
        if rule.match.dept not in ("*", event_type.dept) or rule.match.event not in ("*", event_type.event):
            why = "does not match department/event"
        elif rule.match.grade is not None and result.grade > rule.match.grade:
            why = f"grade {result.grade.id} is above the rule's {rule.match.grade.id}"
        else:
            why = "MATCHES" + (" (first: decides)" if rule.id == result.rule_id else " (but an earlier rule decided)")
        considered.append({"rule": rule.id, "where": rule.where, "why": why})
    data = {
        "event_type": f"{event_type.key} v{event_type.version}", "grade": result.grade.id,
        "grade_reasons": grade_reasons(event_type, payload), "forged_header": result.forged,
        "rules_version": ruleset.version, "rules": considered,
        "decisions": [{"destination": d.destination, "topic": d.topic, "grade": d.grade.id, "rule": d.rule_id,
                       "reason": d.reason} for d in result.decisions],
        "blocked": [b.__dict__ for b in result.blocked],
    }
    if as_json:
        emit_json(data)
        return
    typer.echo(f"{data['event_type']}: grade {data['grade']} ({'; '.join(data['grade_reasons'])})"
               + ("  FORGED grade header" if result.forged else ""))
    typer.echo(table(["rule", "where", "why"], [[c["rule"], c["where"], c["why"]] for c in considered]))
    typer.echo(table(["destination", "topic", "grade", "rule"], [[d["destination"], d["topic"], d["grade"], d["rule"]]
                                                                  for d in data["decisions"]]))
    for blocked in result.blocked:
        typer.echo(f"blocked: {blocked.destination} by {blocked.rule_id}: {blocked.reason}")


@app.command()
def diff(old: Path = typer.Argument(..., help="Old rules directory."), new: Path = typer.Argument(..., help="New rules directory."),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """What would move between destinations, per event type, if NEW replaced OLD (exit 1 when anything moves).

    Example: hbus rules diff /tmp/rules-main routing/rules
    """
    from hybridbus.ops.governance import change_rows

    old_set, catalog = _load(old)
    new_set, _ = _load(new)
    rows = change_rows(old_set, new_set, catalog)  # widening or narrowing: routing.governance decides
    if as_json:
        emit_json({"old": old_set.version, "new": new_set.version, "changes": rows,
                   "widens": any(r["widens"] for r in rows)})
    elif rows:
        typer.echo(diff_table(rows))
    else:
        typer.echo(f"{old_set.version} -> {new_set.version}: nothing moves")
    if rows:
        raise typer.Exit(FAILED)


def diff_table(rows: list[dict[str, Any]]) -> str:
    return table(["event type", "added", "removed", "views reshaped", "needs approval"],
                 [[r["event_type"], ", ".join(r["added"]), ", ".join(r["removed"]), ", ".join(r["views_changed"]),
                   "yes (widens)" if r["widens"] else "no"] for r in rows])


def _person():  # type: ignore[no-untyped-def]
    from hybridbus.ops.people import current

    try:
        return current()
    except HybridbusError as exc:
        raise fail(str(exc), UNAVAILABLE) from None


def _act(action):  # type: ignore[no-untyped-def]
    """Run a governance act; a duty the person lacks or a refused approval exits 1, an outage 3."""
    from hybridbus.ops.people import NotAllowed

    try:
        return action()
    except NotAllowed as exc:
        raise fail(str(exc)) from None
    except (HybridbusError, OSError) as exc:
        raise fail(str(exc), UNAVAILABLE) from None


@app.command()
def propose(rules_dir: Path | None = DIR, as_json: bool = typer.Option(False, "--json")) -> None:
    """Validate, compare with the live set and record the set for review (engineers; the actor is your login).

    Example: hbus login li.wei && hbus rules propose routing/rules
    """
    from hybridbus.ops.governance import propose as record_proposal

    ruleset, catalog = _valid(rules_dir)
    person = _person()
    proposal = _act(lambda: record_proposal(ruleset, person, catalog))
    widens = any(r["widens"] for r in proposal.changes)
    if as_json:
        emit_json({"digest": proposal.digest, "version": ruleset.version, "proposer": proposal.proposer,
                   "changes": list(proposal.changes), "widens": widens})
        return
    if proposal.changes:
        typer.echo(diff_table(list(proposal.changes)))
    typer.echo(f"proposed {ruleset.version} (digest {proposal.digest}) by {proposal.proposer}; "
               + ("it widens what leaves: a second person must approve it (hbus rules approve DIGEST)" if widens
                  else "it only narrows: you may apply it (hbus rules apply DIGEST)"))


@app.command()
def approve(digest: str = typer.Argument(..., help="The proposal's digest (at least 8 characters)."),
            yes: bool = typer.Option(False, "--yes", help="Approve without the question (the diff is shown).")) -> None:
    """Show what the proposal moves, then approve it (approvers; never your own proposal).

    Example: hbus login zhang.min && hbus rules approve 3f9a1c2e
    """
    from hybridbus.ops.governance import approve as add_approval
    from hybridbus.ops.governance import find_proposal

    person = _person()
    proposal = _act(lambda: find_proposal(digest))
    typer.echo(f"{proposal.ruleset.version} (digest {proposal.digest}) proposed by {proposal.proposer}")
    typer.echo(diff_table(list(proposal.changes)) if proposal.changes else "nothing moves")
    if not yes and not typer.confirm("approve it?"):
        raise typer.Exit(FAILED)
    approved = _act(lambda: add_approval(proposal.digest, person))
    typer.echo(f"approved {approved.digest[:12]} by {person.name}")


@app.command()
def apply(target: str | None = typer.Argument(None, help="A proposal's digest, or a rules directory "
                                              "(default: routing/rules) for a pilot or a narrowing."),
          shadow: bool = typer.Option(False, "--shadow", help="Publish as a pilot: routers evaluate it beside the live set "
                                      "and count what it would move, without moving anything."),
          withdraw_shadow: bool = typer.Option(False, "--withdraw-shadow", help="End the pilot.")) -> None:
    """Sign with your login and publish to `_hbus.rules`; processors verify, then switch at their next batch.

    A widening is applied from its approved proposal; a narrowing or a pilot may come straight from a directory.
    Example: hbus rules apply 3f9a1c2e   |   hbus rules apply --shadow routing/rules
    """
    from hybridbus.ops.governance import apply_proposal, apply_set
    from hybridbus.runtime.rulestore import LIVE, SHADOW

    person = _person()
    role = SHADOW if shadow or withdraw_shadow else LIVE
    catalog = load_catalog(settings())
    if withdraw_shadow:
        _act(lambda: apply_set(None, SHADOW, person, catalog))
        return
    if target is not None and not Path(target).is_dir():
        applied = _act(lambda: apply_proposal(target, person, catalog, role))
    else:
        ruleset, catalog = _valid(Path(target) if target else None)
        applied = _act(lambda: apply_set(ruleset, role, person, catalog))
    assert applied.ruleset is not None
    typer.echo(f"applied {applied.ruleset.version} as {role} (digest {applied.digest[:12]}) by {applied.applied_by}")


def _valid(rules_dir: Path | None) -> tuple[RuleSet, Catalog]:
    ruleset, catalog = _load(rules_dir)
    report = validate(ruleset, catalog)
    if not report.ok:
        for error in report.errors:
            typer.echo(f"error: {error}", err=True)
        raise fail(f"rule set {ruleset.version} is not valid: nothing applied")
    return ruleset, catalog
