"""People's own Vault logins: `hbus login` caches a short-lived token (as the Vault CLI does), and every governance
act takes its actor and duty from that token, never from a flag.
"""
from __future__ import annotations

import os
from pathlib import Path

from hybridbus.adapters.config import Settings, settings
from hybridbus.adapters.exceptions import VaultError
from hybridbus.adapters.secrets import read_private, write_private
from hybridbus.adapters.vault import PersonToken, person_of, userpass_login
from hybridbus.ops.stack.bootstrap import PERSON_ROLES, person_file, person_policy_name

TOKEN_ENV = "HBUS_TOKEN"  # a token in the environment wins over the cached one (scripts, two people in one shell)


class NotAllowed(VaultError):
    """The person logged in does not hold the duty the act needs, or may not act on their own proposal."""


def token_file(cfg: Settings) -> Path:
    return cfg.state_dir / "login" / "token.json"


def login(username: str, password: str, cfg: Settings | None = None) -> PersonToken:
    cfg = cfg or settings()
    person = userpass_login(username, password, cfg)
    write_private(token_file(cfg), {"token": person.token})
    return person


def current(cfg: Settings | None = None) -> PersonToken:
    """The person logged in, as Vault names them."""
    cfg = cfg or settings()
    token = os.environ.get(TOKEN_ENV)
    if not token:
        path = token_file(cfg)
        if not path.exists():
            raise VaultError("nobody is logged in: run `hbus login NAME`")
        token = str(read_private(path)["token"])
    return person_of(token, cfg)


def roles(person: PersonToken) -> set[str]:
    return {r for r in PERSON_ROLES if person_policy_name(r) in person.policies}


def require(person: PersonToken, role: str) -> PersonToken:
    if role not in roles(person):
        raise NotAllowed(f"{person.name} is not an {role}" if role[0] in "aeiou" else f"{person.name} is not a {role}")
    return person


def sample_login(name: str, cfg: Settings | None = None) -> PersonToken:
    """Log in as one of the local stack's sample people with their generated password (tools and tests only)."""
    cfg = cfg or settings()
    return userpass_login(name, str(read_private(person_file(cfg, name))["password"]), cfg)
