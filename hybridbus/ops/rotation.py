"""Credential rotation while the bus runs: Kafka SCRAM secrets and S3 keys, Vault KV kept in step.

Kafka: a new SCRAM secret is set on the broker, then written to Vault KV. Sessions already authenticated stay
valid; a processor reads the new secret from Vault whenever it (re)connects. S3: the new key is added beside
the old one (both valid), the server reloads, then Vault KV switches; the next rotation retires the old key.
"""
from __future__ import annotations

import getpass
import time

from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

from hybridbus.adapters import kafka
from hybridbus.adapters.config import settings
from hybridbus.adapters.secrets import new_access_key, new_password
from hybridbus.adapters.vault import TRANSIT_MOUNT, kafka_kv_path, root_client, s3_kv_path
from hybridbus.ops.stack import manager
from hybridbus.ops.stack.bootstrap import kv_get, kv_put
from hybridbus.runtime.auditstore import record_decision
from hybridbus.runtime.decisions import DecisionRecord


def record_rotation(identity: str, what: str) -> None:
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


def rotate_transit(key: str) -> int:
    """A new version of Transit key `key`; returns it. New data keys are wrapped under it at once; records sealed
    under older versions stay readable while those versions are kept (crypto-shredding: raise the key's
    `min_decryption_version`, then trim, and what was sealed under older versions can no longer be opened)."""
    client = root_client()
    client.secrets.transit.read_key(name=key, mount_point=TRANSIT_MOUNT)  # InvalidPath for an unknown key
    client.secrets.transit.rotate_key(name=key, mount_point=TRANSIT_MOUNT)
    return int(client.secrets.transit.read_key(name=key, mount_point=TRANSIT_MOUNT)["data"]["latest_version"])
