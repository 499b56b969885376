"""The fast path for delimited files: a file whose every line is simple (no quote character, no carriage
return inside it, exactly the header's number of separators) is staged by splitting its physical lines.

One parallel scan reads the lines of all files as text. A table created from a scan keeps the scan's
order (DuckDB preserves insertion order), so a line's number is its row's position in its file's block
of rows: exact, with no second scan and no pairing. A file with any other line (quoted fields, a wrong
field count, bad encoding) is left to DuckDB's CSV parser (parsers.py), which judges such lines exactly.
For simple lines both give the same fields: the text between separators, an empty field as NULL.
"""

from __future__ import annotations

import duckdb

from mlsys_assets.contract import FeedFormat
from mlsys_assets.ingest.dialect import Layout, file_list_sql, sql_str
from mlsys_assets.ingest.landing_file import LandingFile, StagedFile
from mlsys_assets.ingest.raw_lines import UNIT_SEPARATOR


def stage_simple_files(
    con: duckdb.DuckDBPyConnection, layout: Layout, fmt: FeedFormat, staged_table: str
) -> tuple[list[StagedFile], list[LandingFile]]:
    """Stage the layout's files whose lines are all simple; return their summaries and the other files."""
    _scan_lines(con, layout, fmt)
    simple = _simple_files(con, layout, fmt)
    if simple:
        _insert_split_lines(con, layout, fmt, staged_table)
    staged = [layout.summary(f, simple[str(f.path)], 0) for f in layout.files if str(f.path) in simple]
    return staged, [f for f in layout.files if str(f.path) not in simple]


def _scan_lines(con: duckdb.DuckDBPyConnection, layout: Layout, fmt: FeedFormat) -> None:
    """`_split_scan(filename, text)`: every physical line in file order (blank: NULL), in one parallel scan."""
    con.execute("DROP TABLE IF EXISTS _split_rejects")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _split_scan AS
        SELECT filename, text
        FROM read_csv({file_list_sql(layout.files)}, header=false, auto_detect=false, columns={{'text': 'VARCHAR'}},
                      delim={UNIT_SEPARATOR}, quote='', escape='', encoding={sql_str(fmt.encoding)},
                      strict_mode=false, filename=true, store_rejects=true,
                      rejects_table='_split_rejects', rejects_scan='_split_scans')
        """
    )


def _simple_files(con: duckdb.DuckDBPyConnection, layout: Layout, fmt: FeedFormat) -> dict[str, int]:
    """filename -> data lines, for the files whose every line is simple; `_split_files` holds their first row."""
    separators = len(layout.source_columns) - 1
    delimiter = sql_str(fmt.delimiter)
    header_lines = 1 if fmt.header else 0
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _split_files AS
        SELECT filename, min(rowid) + {header_lines} AS first_data_row,
               count(text) - {header_lines} AS data_lines
        FROM _split_scan
        GROUP BY filename
        HAVING bool_and(text IS NULL OR (NOT contains(text, '"') AND NOT contains(text, chr(13))
                        AND length(text) - length(replace(text, {delimiter}, '')) = {separators}))
           AND filename NOT IN (SELECT s.file_path FROM _split_rejects JOIN _split_scans s USING (scan_id, file_id))
        """
    )
    return dict(con.execute("SELECT filename, data_lines FROM _split_files").fetchall())


def _insert_split_lines(con: duckdb.DuckDBPyConnection, layout: Layout, fmt: FeedFormat, staged_table: str) -> None:
    """Each data line of the simple files, split at the separator, with its line number and text."""
    values = ", ".join(
        f"nullif(fields[{layout.positions[c] + 1}], '')" if c in layout.positions else "NULL" for c in fmt.staged_columns
    )
    con.execute(
        f"""
        INSERT INTO {staged_table}
        SELECT f.source_name, f.delivery_date, s.row - k.first_data_row + 1 + {1 if fmt.header else 0}, s.text, {values}
        FROM (SELECT rowid AS row, filename, text, string_split(text, {sql_str(fmt.delimiter)}) AS fields
              FROM _split_scan WHERE text IS NOT NULL) s
        JOIN _split_files k ON k.filename = s.filename AND s.row >= k.first_data_row
        JOIN _files f ON f.filename = s.filename
        """
    )
