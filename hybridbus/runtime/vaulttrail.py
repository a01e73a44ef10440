"""OpenBao's side of the access trail: who decrypted or made data keys under which Transit key, or read which KV
secret, as OpenBao's file audit device tells it; one `accesstrail.Source` more for the audit writer's passes.

The audit device writes each request twice, a `request` line and a `response` line; only responses are counted (a
request refused by policy gets its own response line, with the error). Values in the log are HMAC'd by OpenBao; the
trail copies none of them: only the time, the identity, the path's key or secret name, the operation and the outcome.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hybridbus.adapters.vault import KV_MOUNT, TRANSIT_MOUNT
from hybridbus.runtime.accesstrail import VAULT, Check, Source

VAULT_SOURCE = "openbao"  # the source's name in the trail's saved positions
# Where the local stack's OpenBao writes its file audit device, under the state dir (infra: ops/stack/components).
AUDIT_LOG = Path("vault") / "audit" / "audit.log"
# Paths that read data or secrets -> the trail's operation; what follows the prefix is the key (first segment) or,
# for KV, the secret's path. Transit encrypt/sign/verify read nothing and are left out.
_OPERATIONS = ((f"{TRANSIT_MOUNT}/decrypt/", "transit-decrypt"), (f"{TRANSIT_MOUNT}/datakey/", "transit-datakey"),
               (f"{TRANSIT_MOUNT}/hmac/", "transit-hmac"), (f"{KV_MOUNT}/data/", "kv-read"))
_APPROLE_PREFIX = "hbus-"  # the bus's AppRoles are hbus-<identity>, its Kafka logins dept-/svc-<identity>


def vault_audit_logs(state_dir: Path) -> dict[str, Source]:
    """The local stack's OpenBao audit log as a trail source."""
    return {VAULT_SOURCE: Source(state_dir / AUDIT_LOG, parse_line)}


def _operation(path: str, method: str) -> tuple[str, str] | None:
    """(trail operation, key or KV path) of a request path, None for a path the trail does not keep."""
    for prefix, operation in _OPERATIONS:
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix):]
        if operation == "kv-read":
            return (operation, rest) if method == "read" and rest else None
        if operation == "transit-datakey":  # datakey/plaintext/<key> or datakey/wrapped/<key>
            rest = rest.partition("/")[2]
        key = rest.partition("/")[0]  # hmac/<key>/<algorithm>
        return (operation, key) if key else None
    return None


def _identity(auth: dict[str, Any]) -> tuple[str, str]:
    """(who, principal): the AppRole's or user's name, and how OpenBao names the login ("approle:hbus-health")."""
    metadata = auth.get("metadata") or {}
    display = str(auth.get("display_name") or "unknown")
    role = str(metadata.get("role_name") or "")
    if role:
        return role.removeprefix(_APPROLE_PREFIX), f"{display}:{role}"
    user = str(metadata.get("username") or "")
    return (user or display), display


def parse_line(line: str) -> Check | None:
    """The access a response line records, or None for anything else (a request line, a path the trail does not
    keep, a torn line while OpenBao writes)."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict) or entry.get("type") != "response":
        return None
    request = entry.get("request") or {}
    method = str(request.get("operation") or "")
    found = _operation(str(request.get("path") or ""), method)
    time = str(entry.get("time") or "")
    if found is None or len(time) < 16:
        return None
    auth = entry.get("auth") or {}
    who, principal = _identity(auth)
    error = str(entry.get("error") or "")
    refused = (auth.get("policy_results") or {}).get("allowed") is False or "permission denied" in error
    outcome = "denied" if refused else "failed" if error else "allowed"
    return Check(time[:16], who, found[1], found[0], outcome, principal, str(request.get("remote_address") or ""),
                 method, VAULT)
