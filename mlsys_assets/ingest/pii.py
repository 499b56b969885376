"""Pseudonymization of personal fields: a keyed hash, so the same person maps to the same token
without the warehouse ever holding the clear value (and without a rainbow table reversing it)."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import logging
import os
import re
import secrets
from pathlib import Path

import duckdb
import pyarrow as pa

PII_KEY_ENV = "MLSYS_PII_KEY"
EMAIL_PATTERN = re.compile(r"[^\s,;|\"']+@[^\s,;|\"']+")
MASK = "***"


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


def mask_personal_text(text: str | None, delimiter: str, positions: tuple[int, ...]) -> str | None:
    """A delivered line with its personal fields (and anything e-mail-like) replaced by ***.

    The line is split the way the file was (CSV quoting, or runs of blanks), so a quoted name with a
    comma is masked whole; a line too broken to split still loses every e-mail-like token.
    """
    if text is None:
        return None
    if delimiter == "whitespace":
        fields = text.split()
        masked = " ".join(MASK if i in positions else value for i, value in enumerate(fields))
    else:
        fields = next(csv.reader(io.StringIO(text), delimiter=delimiter), [])
        out = io.StringIO()
        csv.writer(out, delimiter=delimiter, lineterminator="").writerow(
            [MASK if i in positions else value for i, value in enumerate(fields)]
        )
        masked = out.getvalue()
    return mask_emails(masked)


def mask_emails(text: str | None) -> str | None:
    return None if text is None else EMAIL_PATTERN.sub(MASK, text)
