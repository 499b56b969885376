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

from mlsys_assets.contract import PERSONAL_FIELDS
from mlsys_assets.ingest.dialect import inspect_file, resolve_columns
from mlsys_assets.ingest.landing_file import LandingFile

PII_KEY_ENV = "MLSYS_PII_KEY"
ALLOW_LOCAL_KEY_ENV = "MLSYS_ALLOW_LOCAL_PII_KEY"
EMAIL_PATTERN = re.compile(r"[^\s,;|\"']+@[^\s,;|\"']+")
# What the warehouse guard counts as an address (SQL regex, bound as a parameter): loose on purpose.
EMAIL_SQL_PATTERN = r"[^\s,;|\"'<>@]+@[^\s,;|\"'<>@]+\.[A-Za-z]{2,}"
MASK = "***"


class LocalKeyRefused(RuntimeError):
    """A real shop's data would be hashed with a key kept next to it."""


def pii_key(secrets_dir: Path, log: logging.Logger | None = None, simulated: bool = False) -> bytes:
    """The HMAC key: MLSYS_PII_KEY, or a key generated once and kept under the data directory.

    The local key sits next to the hashes it protects, so it is only used for a simulated shop or when
    MLSYS_ALLOW_LOCAL_PII_KEY=1 says so explicitly; otherwise LocalKeyRefused.
    """
    from_env = os.environ.get(PII_KEY_ENV)
    if from_env:
        return from_env.encode("utf-8")
    if not simulated and os.environ.get(ALLOW_LOCAL_KEY_ENV) != "1":
        raise LocalKeyRefused(
            f"{PII_KEY_ENV} is not set and {secrets_dir.parent} is not a simulated shop (no "
            "simulation/ground_truth.parquet): refusing to hash personal data with a key kept in the data "
            f"directory. Set {PII_KEY_ENV} to a secret kept outside it, or set {ALLOW_LOCAL_KEY_ENV}=1 to "
            f"accept the local key in {secrets_dir / 'pii.key'}."
        )
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
    """Make `pii_hash(text)` (hex HMAC-SHA256, NULL for NULL or empty) available in SQL.

    HMAC (RFC 2104) is two SHA-256 passes over the key's padded forms: DuckDB's own `sha256` runs them,
    vectorized and in parallel. The padded keys go into a temporary table through bound parameters, so the
    key never appears in SQL text; `hmac_sha256_hex` is the same function in Python (tests compare them).
    """
    inner, outer = _hmac_pads(key)
    con.execute("CREATE OR REPLACE TEMP TABLE _pii_key (inner_pad BLOB, outer_pad BLOB)")
    con.execute("INSERT INTO _pii_key VALUES (?, ?)", [inner, outer])
    con.execute(
        """
        CREATE OR REPLACE TEMP MACRO pii_hash(value) AS
        CASE WHEN value <> '' THEN sha256((SELECT outer_pad FROM _pii_key)
                                          || unhex(sha256((SELECT inner_pad FROM _pii_key) || encode(value)))) END
        """
    )


def _hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    """The key XOR-ed with HMAC's inner and outer pads (a key longer than a SHA-256 block is hashed first)."""
    block = hashlib.sha256().block_size
    key = (hashlib.sha256(key).digest() if len(key) > block else key).ljust(block, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def hmac_sha256_hex(key: bytes, value: str | None) -> str | None:
    """What `pii_hash` computes, in Python: hex HMAC-SHA256 of the UTF-8 text, None for None or empty."""
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest() if value else None


def split_line(text: str, delimiter: str) -> list[str]:
    """A delivered line's fields, split the way the file was (CSV quoting, or runs of blanks)."""
    if delimiter == "whitespace":
        return text.split()
    return next(csv.reader(io.StringIO(text), delimiter=delimiter), [])


def mask_personal_text(
    text: str | None, delimiter: str, positions: tuple[int, ...], keep: tuple[int, ...] | None = None
) -> str | None:
    """A delivered line with its personal fields (and anything e-mail-like) replaced by ***.

    `positions` are always masked; when `keep` is given, every field NOT in it is masked too (extra
    fields, unmapped columns, a shifted line). A quoted name with a comma is masked whole; a line too
    broken to split still loses every e-mail-like token.
    """
    if text is None:
        return None
    fields = split_line(text, delimiter)
    hidden = [
        MASK if i in positions or (keep is not None and i not in keep) else value for i, value in enumerate(fields)
    ]
    if delimiter == "whitespace":
        masked = " ".join(hidden)
    else:
        out = io.StringIO()
        csv.writer(out, delimiter=delimiter, lineterminator="").writerow(hidden)
        masked = out.getvalue()
    return mask_emails(masked)


def mask_emails(text: str | None) -> str | None:
    return None if text is None else EMAIL_PATTERN.sub(MASK, text)


def email_like_columns(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """`schema.table.column` -> rows holding an e-mail-like value, for every VARCHAR column of every table.

    One query per column (the pattern is a bound parameter): a guard that reads each column on its own
    cannot be fooled the way `concat_ws('|', COLUMNS(*))` in a WHERE was (DuckDB expands that into one
    condition per column, AND-ed, so a single dirty column never matched). The pattern needs an '@', so a
    value without one is passed over before the regular expression runs.
    """
    columns = con.execute(
        """SELECT c.schema_name, c.table_name, c.column_name FROM duckdb_columns() c
           JOIN duckdb_tables() t USING (database_oid, schema_oid, table_oid)
           WHERE c.database_name = current_database() AND NOT t.temporary AND c.data_type = 'VARCHAR'
           ORDER BY ALL"""
    ).fetchall()
    found = {}
    for schema, table, column in columns:
        source, target = f"{_ident(schema)}.{_ident(table)}", _ident(column)
        count = con.execute(
            f"SELECT count(*) FROM {source} WHERE contains({target}, '@') AND regexp_matches({target}, ?)",
            [EMAIL_SQL_PATTERN],
        ).fetchone()[0]
        if count:
            found[f"{schema}.{table}.{column}"] = count
    return found


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def clear_positions(con: duckdb.DuckDBPyConnection, path: Path, fmt) -> tuple[tuple[int, ...], int, int | None]:
    """(positions of the contract columns stored in clear, number of fields, customer_id's position) of a file.

    Only those fields of a quarantined line may stay readable; anything else (personal fields, extra or
    unmapped columns) is masked.
    """
    _kind, columns = inspect_file(LandingFile(path, path.name), fmt, con)
    positions = resolve_columns(path, fmt, list(columns))
    clear = tuple(sorted(p for c, p in positions.items() if c not in PERSONAL_FIELDS))
    return clear, len(columns), positions.get("customer_id")


def mask_quarantined_line(
    text: str | None, delimiter: str, personal: tuple[int, ...], layout: tuple[tuple[int, ...], int, int | None],
    reason: str | None,
) -> str | None:
    """A quarantined line with only its clear contract fields readable (extra fields are masked). A line
    with fewer fields than the header, or with personal data in a clear column, is shifted: then only
    customer_id stays, since any other field may hold a name or an address."""
    if text is None:
        return None
    clear, field_count, customer_position = layout
    keep = clear
    if reason == "personal_data" or len(split_line(text, delimiter)) < field_count:
        keep = () if customer_position is None else (customer_position,)
    return mask_personal_text(text, delimiter, personal, keep)
