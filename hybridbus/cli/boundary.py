"""`hbus boundary close --reason … | open | status`: the emergency stop of everything leaving the private cloud."""
from __future__ import annotations

import typer

from hybridbus.cli.output import UNAVAILABLE, emit_json, fail
from routing import governance as G
from routing.exceptions import HybridbusError

app = typer.Typer(help="Close the boundary at once (egress and the archiver send nothing) and open it again.\n\n"
                  "Example: hbus boundary close --reason 'suspected leak, ticket 4711'", no_args_is_help=True)

def _set(state: str, reason: str) -> None:
    """As the person logged in (`hbus login`), who must be an operator."""
    from hybridbus.ops.governance import set_boundary
    from hybridbus.ops.people import NotAllowed, current

    try:
        record = set_boundary(state, reason, current())
    except NotAllowed as exc:
        raise fail(str(exc)) from None
    except (HybridbusError, OSError) as exc:
        raise fail(str(exc), UNAVAILABLE) from None
    typer.echo(f"boundary {state} by {record.by}: {reason}")


@app.command()
def close(reason: str = typer.Option(..., "--reason", help="Why (goes on the audit chain).")) -> None:
    """Stop egress and the archiver on every instance within about a second; they keep their place.

    Example: hbus boundary close --reason "suspected leak of health data"
    """
    _set(G.CLOSED, reason)


@app.command("open")
def open_cmd(reason: str = typer.Option("reopened", "--reason", help="Why (goes on the audit chain).")) -> None:
    """Let egress and the archiver send again, from where they stopped (a second operator: not who closed it).

    Example: hbus boundary open --reason "leak ruled out"
    """
    _set(G.OPEN, reason)


@app.command()
def status(as_json: bool = typer.Option(False, "--json")) -> None:
    """The boundary's state as last set (exit 1 while closed).

    Example: hbus boundary status
    """
    from hybridbus.ops.governance import boundary_state

    try:
        state = boundary_state()
    except (HybridbusError, OSError) as exc:
        raise fail(str(exc), UNAVAILABLE) from None
    data = {"state": state.state if state else G.OPEN, "reason": state.reason if state else "",
            "by": state.by if state else "", "at_ms": state.at_ms if state else 0}
    if as_json:
        emit_json(data)
    else:
        typer.echo(f"boundary {data['state']}" + (f" by {data['by']}: {data['reason']}" if state else ""))
    if state is not None and state.closed:
        raise typer.Exit(1)
