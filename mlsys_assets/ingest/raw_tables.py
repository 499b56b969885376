"""The raw layer's DDL (raw_tables.sql) and the SQL files of ingest as templates (plain: no Dagster)."""

from __future__ import annotations

from pathlib import Path
from string import Template

SQL_DIR = Path(__file__).parent
RAW_TABLES_DDL = (SQL_DIR / "raw_tables.sql").read_text()


def sql_template(name: str, **values: object) -> str:
    """An ingest SQL file (next to this module) with its `$name` placeholders filled in."""
    return Template((SQL_DIR / name).read_text()).substitute({k: str(v) for k, v in values.items()})
