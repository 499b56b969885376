"""Read landing files into DuckDB staging tables, keeping every row's line number and original text.

Nothing here judges the values: files are staged as text, one row per data line, so that validation
(in SQL, next to the assets) can quarantine a bad row with its file, line, column and original text
while the good rows of the same file load. Only files that cannot be read at all raise
`LandingFileError`, naming each file and what is wrong, before anything is staged.

Files are grouped by layout (dialect.py: kind and header); each layout is staged in one statement per
step (parsers.py, split_lines.py), since a statement per file would cost more than the parsing.
"""

from __future__ import annotations

import duckdb

from mlsys_assets.contract import FeedFormat
from mlsys_assets.ingest.dialect import Layout, inspect_file, resolve_columns
from mlsys_assets.ingest.landing_file import (
    REJECT_COLUMNS,
    STAGED_COLUMNS,
    LandingFile,
    LandingFileError,
    LandingFilesError,
    StagedFile,
)
from mlsys_assets.ingest.parsers import stage_csv, stage_parquet, stage_whitespace

__all__ = [
    "LandingFile", "LandingFileError", "LandingFilesError", "StagedFile", "create_staging_tables", "stage_files",
    "stage_readable_files",
]


def create_staging_tables(con: duckdb.DuckDBPyConnection, staged_table: str, rejects_table: str, fmt: FeedFormat) -> None:
    """(Re)create the temp tables `stage_files` appends to."""
    typed = {"delivery_date": "DATE", "line": "BIGINT"}
    columns = ", ".join(f"{c} {typed.get(c, 'VARCHAR')}" for c in STAGED_COLUMNS + fmt.staged_columns)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {staged_table} ({columns})")
    reject_columns = ", ".join(f"{c} {typed.get(c, 'VARCHAR')}" for c in REJECT_COLUMNS)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {rejects_table} ({reject_columns})")


def stage_files(
    con: duckdb.DuckDBPyConnection, files: list[LandingFile], fmt: FeedFormat, staged_table: str, rejects_table: str
) -> list[StagedFile]:
    """Append the files' data lines to `staged_table` and their unparseable lines to `rejects_table`.

    `staged_table` has STAGED_COLUMNS followed by the feed's contract columns, all VARCHAR (NULL for a
    column a file does not have); `rejects_table` has REJECT_COLUMNS (see create_staging_tables).
    Raises LandingFilesError naming every file that cannot be read (the staging tables are then partial).
    """
    staged, errors = stage_readable_files(con, files, fmt, staged_table, rejects_table)
    if errors:
        raise LandingFilesError(errors)
    return staged


def stage_readable_files(
    con: duckdb.DuckDBPyConnection, files: list[LandingFile], fmt: FeedFormat, staged_table: str, rejects_table: str
) -> tuple[list[StagedFile], list[LandingFileError]]:
    """Stage every file that can be read; return them with one error per file that cannot.

    A file that fails only when parsed (random bytes after a valid header, say) does not take the
    others down: when a layout's one statement fails, its files are staged one by one.
    """
    layouts, errors = _layouts(con, files, fmt)
    readable = [f for layout in layouts for f in layout.files]
    con.execute("CREATE OR REPLACE TEMP TABLE _files (filename VARCHAR, source_name VARCHAR, delivery_date DATE)")
    if readable:
        con.executemany(
            "INSERT INTO _files VALUES (?, ?, ?)", [[str(f.path), f.source_name, f.delivery_date] for f in readable]
        )
    staged: list[StagedFile] = []
    for layout in layouts:
        staged += _stage_layout(con, layout, fmt, staged_table, rejects_table, errors)
    return staged, errors


def _layouts(con, files: list[LandingFile], fmt: FeedFormat) -> tuple[list[Layout], list[LandingFileError]]:
    """The files grouped by layout (kind and columns), and one error per file that cannot be read at all."""
    layouts: dict[tuple, Layout] = {}
    errors: list[LandingFileError] = []
    for file in files:
        try:
            kind, columns = inspect_file(file, fmt, con)
            layout = layouts.get((kind, columns))
            if layout is None:
                layout = layouts[(kind, columns)] = Layout(kind, columns, resolve_columns(file.path, fmt, list(columns)))
            layout.files.append(file)
        except LandingFileError as exc:
            errors.append(exc)
    return list(layouts.values()), errors


def _stage_layout(con, layout: Layout, fmt: FeedFormat, staged_table: str, rejects_table: str,
                  errors: list[LandingFileError]) -> list[StagedFile]:
    """Stage a layout in one statement; when that fails, file by file, appending the failures to `errors`."""
    stage = {"csv": stage_csv, "whitespace": stage_whitespace, "parquet": stage_parquet}[layout.kind]
    try:
        return stage(con, layout, fmt, staged_table, rejects_table)
    except duckdb.Error as exc:
        _unstage(con, layout.files, staged_table, rejects_table)
        if len(layout.files) == 1:
            problem = str(exc).splitlines()[0][:200]
            errors.append(LandingFileError(layout.files[0].path, f"cannot be parsed as {layout.kind} ({problem})"))
            return []
    staged: list[StagedFile] = []
    for file in layout.files:
        staged += _stage_layout(con, layout.with_files([file]), fmt, staged_table, rejects_table, errors)
    return staged


def _unstage(con, files: list[LandingFile], staged_table: str, rejects_table: str) -> None:
    """Take back whatever a failed statement staged of these files."""
    names = [f.source_name for f in files]
    for table in (staged_table, rejects_table):
        con.execute(f"DELETE FROM {table} WHERE list_contains(?, source_file)", [names])
