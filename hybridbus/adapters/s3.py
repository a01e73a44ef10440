"""The one way hybridbus builds an S3 client (boto3, path-style, signature v4, bounded retries).

The archiver and the audit writer call it with the key they read from Vault; the local stack with its root key.
"""
from __future__ import annotations

import boto3
from botocore.config import Config as BotoConfig

from hybridbus.adapters.config import Settings
from hybridbus.adapters.secrets import S3Credentials


def s3_client(cfg: Settings, creds: S3Credentials):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3", endpoint_url=cfg.s3_endpoint, aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key, region_name="us-east-1",
        config=BotoConfig(signature_version="s3v4", retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=3,
                          read_timeout=30, s3={"addressing_style": "path"}),
    )
