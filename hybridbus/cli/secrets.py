"""`hbus secrets rotate kafka NAME | s3 NAME`: rotate a credential while the bus runs.

Kafka: a new SCRAM secret is set on the broker, then written to Vault KV. Sessions already authenticated stay
valid; a processor reads the new secret from Vault whenever it (re)connects. S3: the new key is added beside
the old one (both valid), the server reloads, then Vault KV switches; the next rotation retires the old key.
"""
from __future__ import annotations

import getpass
import time

import typer
from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

from hybridbus import kafka
from hybridbus.auditstore import record_decision
from hybridbus.cli.output import UNAVAILABLE, fail
from hybridbus.config import settings
from hybridbus.pipeline import DecisionRecord
from hybridbus.secrets import new_access_key, new_password
from hybridbus.stack import manager
from hybridbus.stack.bootstrap import kv_get, kv_put
from hybridbus.topology import PRIVATE, PUBLIC
from hybridbus.vault import kafka_kv_path, root_client, s3_kv_path

app = typer.Typer(help="Rotate credentials held in Vault.\n\nExample: hbus secrets rotate kafka router", no_args_is_help=True)
rotate = typer.Typer(help="Rotate one credential.", no_args_is_help=True)
app.add_typer(rotate, name="rotate")


def _audit(identity: str, what: str) -> None:
    """Record the rotation (never the secret) for the audit trail, with the login that ran it."""
    record_decision(DecisionRecord("secrets", "", "", "", "", "", what, "", "secret_rotated", f"{what} of {identity}",
                                   int(time.time() * 1000), actor=getpass.getuser()))


def rotate_kafka(identity: str, cluster: str) -> None:
    client = root_client()
    path = kafka_kv_path(cluster, identity)
    current = kv_get(client, path)
    password = new_password()
    admin = kafka.admin(cluster, kafka.admin_credentials(cluster))
    upsert = UserScramCredentialUpsertion(current["username"], ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192),
                                          password.encode())
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(timeout=30)
    kv_put(client, path, {"username": current["username"], "password": password})


def rotate_s3(identity: str) -> None:
    cfg = settings()
    client = root_client(cfg)
    path = s3_kv_path(identity)
    current = kv_get(client, path)
    kv_put(client, path, {"access_key": new_access_key(), "secret_key": new_password(),
                          "previous_access_key": current["access_key"], "previous_secret_key": current["secret_key"]})
    # The server checks signatures against a file written from Vault: rewrite it and restart the server.
    manager.component(cfg, "s3").process.stop()
    manager.up(cfg)


@rotate.command("kafka")
def kafka_cmd(identity: str = typer.Argument(..., help="Identity, e.g. router, egress, market."),
              cluster: str = typer.Option(PRIVATE, "--cluster", help="private or public.")) -> None:
    """New SCRAM secret for IDENTITY on the broker, then in Vault KV.

    Example: hbus secrets rotate kafka egress --cluster public
    """
    if cluster not in (PRIVATE, PUBLIC):
        raise fail("--cluster is private or public", 2)
    try:
        rotate_kafka(identity, cluster)
    except Exception as exc:  # noqa: BLE001 - the reason, never the secret
        raise fail(f"rotation of {identity}'s {cluster} Kafka login failed: {type(exc).__name__}", UNAVAILABLE) from None
    _audit(identity, f"kafka-{cluster}")


@rotate.command("s3")
def s3_cmd(identity: str = typer.Argument(..., help="S3 identity: archiver, audit or public-reader.")) -> None:
    """New S3 key for IDENTITY: added beside the current one, server reloaded, then Vault KV updated.

    Example: hbus secrets rotate s3 archiver
    """
    rotate_s3(identity)
    _audit(identity, "s3")
