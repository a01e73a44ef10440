"""`hbus login NAME`: log in to Vault as yourself; governance acts take your name and duty from the token."""
from __future__ import annotations

import sys

import typer

from hybridbus.cli.output import FAILED, UNAVAILABLE, fail
from routing.exceptions import HybridbusError


def login(name: str = typer.Argument(..., help="Your user name, e.g. li.wei."),
          password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin.")) -> None:
    """Log in (userpass locally, OIDC/LDAP in production); the short-lived token is cached under the state dir.

    Example: hbus login li.wei
    """
    from hybridbus.adapters.exceptions import VaultError
    from hybridbus.adapters.vault import VaultUnavailable
    from hybridbus.ops.people import login as person_login
    from hybridbus.ops.people import roles

    password = sys.stdin.readline().rstrip("\n") if password_stdin else typer.prompt("password", hide_input=True)
    try:
        person = person_login(name, password)
    except VaultUnavailable as exc:
        raise fail(str(exc), UNAVAILABLE) from None
    except (VaultError, HybridbusError) as exc:
        raise fail(str(exc), FAILED) from None
    typer.echo(f"logged in as {person.name} ({', '.join(sorted(roles(person))) or 'no duty'})")
