"""Pseudonymization of personal fields: a keyed hash, so the same person maps to the same token
without the warehouse ever holding the clear value (and without a rainbow table reversing it)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

import duckdb
import pyarrow as pa

PII_KEY_ENV = "MLSYS_PII_KEY"


def pii_key(secrets_dir: Path, log: logging.Logger | None = None) -> bytes:
    """The HMAC key: MLSYS_PII_KEY, or a key generated once and kept under the data directory."""
    from_env = os.environ.get(PII_KEY_ENV)
    if from_env:
        return from_env.encode("utf-8")
    key_file = secrets_dir / "pii.key"
    if not key_file.exists():
        secrets_dir.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    (log or logging.getLogger(__name__)).warning(
        "%s is not set: personal fields are hashed with the local key in %s. Set %s in production so "
        "hashes are stable across machines and the key is kept out of the data directory.",
        PII_KEY_ENV, key_file, PII_KEY_ENV,
    )
    return key_file.read_text().strip().encode("utf-8")


def register_pii_hash(con: duckdb.DuckDBPyConnection, key: bytes) -> None:
    """Make `pii_hash(text)` (hex HMAC-SHA256, NULL for NULL or empty) available in SQL."""

    def pii_hash(values: pa.Array) -> pa.Array:
        hashed = [
            hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest() if value else None
            for value in values.to_pylist()
        ]
        return pa.array(hashed, type=pa.string())

    con.create_function("pii_hash", pii_hash, ["VARCHAR"], "VARCHAR", type="arrow", side_effects=False)
