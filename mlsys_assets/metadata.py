"""Helpers that turn warehouse facts into Dagster metadata, so the UI tells the story."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb
from dagster import MetadataValue, TableColumn, TableSchema

from mlsys_assets.settings import reports_url


def markdown_table(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence | None = None) -> MetadataValue:
    """The result of a query as a Markdown table (for previews and breakdowns in the UI)."""
    result = con.execute(sql, params or [])
    names = [d[0] for d in result.description]
    rows = result.fetchall()
    if not rows:
        return MetadataValue.md("_(no rows)_")
    cell = lambda v: "" if v is None else str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return MetadataValue.md("\n".join(lines))


def column_schema(columns: Sequence[tuple[str, str, str]]) -> TableSchema:
    """A declared table schema (name, type, description) shown on the asset's page."""
    return TableSchema(columns=[TableColumn(name, type_, description) for name, type_, description in columns])


def table_columns(con: duckdb.DuckDBPyConnection, qualified_table: str) -> list[tuple[str, str]]:
    schema, table = qualified_table.split(".")
    return con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [schema, table],
    ).fetchall()


def ddl_column_schema(ddl: str, qualified_table: str) -> TableSchema:
    """The column schema declared by a CREATE TABLE statement, with its `--` comments as descriptions.

    Keeps one source of truth: the DDL that creates the table also documents it in the UI.
    """
    start = ddl.index(f"CREATE TABLE IF NOT EXISTS {qualified_table} (")
    body = ddl[ddl.index("\n", start) + 1 : ddl.index("\n);", start)]
    columns = []
    for line in body.splitlines():
        definition, _, comment = line.partition("--")
        parts = definition.strip().rstrip(",").split()
        if len(parts) >= 2:
            columns.append((parts[0], " ".join(parts[1:]), comment.strip()))
    return column_schema(columns)


def report_link(path: Path, reports_root: Path) -> MetadataValue:
    """A clickable link (in the UI) to a file below data/reports/, as served by `mlsys reports serve`."""
    relative = Path(path).resolve().relative_to(Path(reports_root).resolve()).as_posix()
    return MetadataValue.url(f"{reports_url()}/{relative}")
