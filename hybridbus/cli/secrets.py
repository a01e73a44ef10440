"""`hbus secrets rotate kafka NAME | s3 NAME | transit KEY`: rotate a credential or key while the bus runs.

Kafka: a new SCRAM secret is set on the broker, then written to Vault KV. Sessions already authenticated stay
valid; a processor reads the new secret from Vault whenever it (re)connects. S3: the new key is added beside
the old one (both valid), the server reloads, then Vault KV switches; the next rotation retires the old key.
"""
from __future__ import annotations

import typer

from hybridbus.adapters.topology import PRIVATE, PUBLIC
from hybridbus.cli.output import UNAVAILABLE, fail
from hybridbus.ops.rotation import record_rotation, rotate_kafka, rotate_s3, rotate_transit

app = typer.Typer(help="Rotate credentials held in Vault.\n\nExample: hbus secrets rotate kafka router", no_args_is_help=True)
rotate = typer.Typer(help="Rotate one credential.", no_args_is_help=True)
app.add_typer(rotate, name="rotate")


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
    record_rotation(identity, f"kafka-{cluster}")


@rotate.command("s3")
def s3_cmd(identity: str = typer.Argument(..., help="S3 identity: archiver, audit or public-reader.")) -> None:
    """New S3 key for IDENTITY: added beside the current one, server reloaded, then Vault KV updated.

    Example: hbus secrets rotate s3 archiver
    """
    rotate_s3(identity)
    record_rotation(identity, "s3")


@rotate.command("transit")
def transit_cmd(key: str = typer.Argument(..., help="Transit key, e.g. fields-health-restricted.")) -> None:
    """New version of a Transit key: new data keys are wrapped under it; older records stay readable.

    Example: hbus secrets rotate transit fields-health-restricted
    """
    try:
        version = rotate_transit(key)
    except Exception as exc:  # noqa: BLE001 - the reason, never a key
        raise fail(f"rotation of Transit key {key!r} failed: {type(exc).__name__}", UNAVAILABLE) from None
    record_rotation(key, f"transit-v{version}")
