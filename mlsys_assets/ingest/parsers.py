"""Stage one layout's files (dialect.Layout) into the staging tables: CSV files whose lines are all simple
by splitting their lines (split_lines.py), the other CSV files through DuckDB's parser with each accepted row
paired to its physical line, whitespace-separated text split by a regular expression, Parquet rows numbered.
Each function appends to `staged_table` / `rejects_table` and returns one StagedFile per file.

The CSV pairing: a file's accepted rows, in order, are its raw lines (raw_lines.py) that are neither blank
nor rejected by the parser; both scans run on one thread so that rows keep file order. When a quoted field
spans lines that pairing breaks; the file still loads and its rows carry no line number (`lines_exact` is
false in its summary).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from mlsys_assets.contract import FeedFormat
from mlsys_assets.ingest.dialect import Layout, file_list_sql, quote_ident, sql_str
from mlsys_assets.ingest.landing_file import StagedFile
from mlsys_assets.ingest.raw_lines import scan_raw_lines
from mlsys_assets.ingest.split_lines import stage_simple_files

# DuckDB's reject error types, as the reasons a quarantined row carries.
PARSER_REASONS = {
    "TOO MANY COLUMNS": "malformed_line",
    "MISSING COLUMNS": "malformed_line",
    "UNQUOTED VALUE": "malformed_line",
    "LINE SIZE OVER MAXIMUM": "malformed_line",
    "INVALID ENCODING": "invalid_encoding",
    "INVALID UNICODE": "invalid_encoding",
}


def stage_whitespace(con, layout: Layout, fmt: FeedFormat, staged_table: str, rejects_table: str) -> list[StagedFile]:
    # DuckDB's CSV reader takes a single-character separator; runs of blanks (tabs too) are split here.
    with single_thread(con):
        scan_raw_lines(con, layout, fmt)
    first_data_line = 2 if fmt.header else 1
    expected = len(layout.source_columns)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _parsed AS
        SELECT filename, line, text, regexp_split_to_array(regexp_replace(text, '^\\s+|\\s+$', '', 'g'), '\\s+') AS fields
        FROM _raw_lines WHERE line >= {first_data_line} AND regexp_matches(coalesce(text, ''), '\\S')
        """
    )
    con.execute(
        f"""
        INSERT INTO {rejects_table}
        SELECT f.source_name, f.delivery_date, line, NULL, 'malformed_line',
               'expected {expected} fields, found ' || len(fields), text
        FROM _parsed JOIN _files f USING (filename) WHERE len(fields) <> {expected}
        UNION ALL
        SELECT f.source_name, f.delivery_date, r.line, NULL, 'invalid_encoding', any_value(r.error_message), any_value(r.csv_line)
        FROM _raw_line_rejected r JOIN _files f USING (filename) WHERE r.line >= {first_data_line}
        GROUP BY ALL
        """
    )
    values = ", ".join(
        f"fields[{layout.positions[c] + 1}]" if c in layout.positions else "NULL" for c in fmt.staged_columns
    )
    con.execute(
        f"""
        INSERT INTO {staged_table}
        SELECT f.source_name, f.delivery_date, line, text, {values}
        FROM _parsed JOIN _files f USING (filename) WHERE len(fields) = {expected}
        """
    )
    counts = {
        name: (good, bad)
        for name, good, bad in con.execute(
            f"""
            SELECT f.filename,
                   (SELECT count(*) FROM _parsed p WHERE p.filename = f.filename AND len(p.fields) = {expected}),
                   (SELECT count(*) FROM _parsed p WHERE p.filename = f.filename AND len(p.fields) <> {expected})
                   + (SELECT count(DISTINCT line) FROM _raw_line_rejected r WHERE r.filename = f.filename AND r.line >= {first_data_line})
            FROM _files f
            """
        ).fetchall()
    }
    return [layout.summary(f, *counts[str(f.path)]) for f in layout.files]


@contextmanager
def single_thread(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Run the block on one thread, so that `row_number() OVER ()` numbers a scan's rows in file order."""
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    con.execute("SET threads = 1")
    try:
        yield
    finally:
        con.execute(f"SET threads = {int(threads)}")


def stage_csv(con, layout: Layout, fmt: FeedFormat, staged_table: str, rejects_table: str) -> list[StagedFile]:
    """Files whose lines are all simple are split (split_lines.py); the others go through DuckDB's parser."""
    staged, others = stage_simple_files(con, layout, fmt, staged_table)
    if others:
        with single_thread(con):
            staged += parse_csv(con, layout.with_files(others), fmt, staged_table, rejects_table)
    order = {f.path: i for i, f in enumerate(layout.files)}
    return sorted(staged, key=lambda s: order[s.file.path])


def parse_csv(con, layout: Layout, fmt: FeedFormat, staged_table: str, rejects_table: str) -> list[StagedFile]:
    """Parse the files with DuckDB's CSV parser and pair each accepted row with its physical line; the
    lines the parser rejects go to `rejects_table` with DuckDB's reason. Needs a single thread."""
    scan_raw_lines(con, layout, fmt)
    names = [f"c{i}" for i in range(len(layout.source_columns))]
    _parse_rows(con, layout, fmt, names)
    counts = _pair_accepted_lines(con, fmt)
    inexact = [name for name, (parsed, accepted, _) in counts.items() if parsed != accepted]
    con.execute("CREATE OR REPLACE TEMP TABLE _inexact (filename VARCHAR)")
    if inexact:
        con.executemany("INSERT INTO _inexact VALUES (?)", [[name] for name in inexact])
    _insert_parsed_rows(con, layout, fmt, names, staged_table)
    _insert_parse_rejects(con, layout, names, rejects_table)
    return [
        layout.summary(f, counts[str(f.path)][0], counts[str(f.path)][2], str(f.path) not in inexact)
        for f in layout.files
    ]


def _parse_rows(con, layout: Layout, fmt: FeedFormat, names: list[str]) -> None:
    """`_parsed`: the parser's rows with their ordinal in their file; `_parse_rejected`: the lines it rejected."""
    columns_sql = "{" + ", ".join(f"'{n}': 'VARCHAR'" for n in names) + "}"
    con.execute("DROP TABLE IF EXISTS _parse_rejects")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _parsed AS
        SELECT filename, ordinal - min(ordinal) OVER (PARTITION BY filename) + 1 AS ordinal, * EXCLUDE (filename, ordinal)
        FROM (
            SELECT row_number() OVER () AS ordinal, *
            FROM read_csv({file_list_sql(layout.files)}, header={str(fmt.header).lower()}, auto_detect=false,
                          columns={columns_sql}, delim={sql_str(fmt.delimiter)}, quote='"', escape='"',
                          encoding={sql_str(fmt.encoding)}, parallel=false, strict_mode=true, filename=true,
                          store_rejects=true, rejects_table='_parse_rejects', rejects_scan='_parse_scans')
        )
        """
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _parse_rejected AS "
        "SELECT s.file_path AS filename, r.* FROM _parse_rejects r JOIN _parse_scans s USING (scan_id, file_id)"
    )


def _pair_accepted_lines(con, fmt: FeedFormat) -> dict[str, tuple[int, int, int]]:
    """`_accepted_lines`: a file's accepted rows pair, in order, with its raw lines that are neither blank nor
    rejected. Returns filename -> (rows parsed, lines paired, lines rejected)."""
    first_data_line = 2 if fmt.header else 1
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _accepted_lines AS
        SELECT filename, row_number() OVER (PARTITION BY filename ORDER BY line) AS ordinal, line, text
        FROM _raw_lines
        WHERE line >= {first_data_line} AND text IS NOT NULL
          AND (filename, line) NOT IN (SELECT (filename, line) FROM _parse_rejected)
        """
    )
    return {
        name: (parsed, accepted, rejected)
        for name, parsed, accepted, rejected in con.execute(
            """
            SELECT f.filename,
                   (SELECT count(*) FROM _parsed p WHERE p.filename = f.filename),
                   (SELECT count(*) FROM _accepted_lines a WHERE a.filename = f.filename),
                   (SELECT count(DISTINCT line) FROM _parse_rejected r WHERE r.filename = f.filename)
            FROM _files f
            """
        ).fetchall()
    }


def _insert_parsed_rows(con, layout: Layout, fmt: FeedFormat, names: list[str], staged_table: str) -> None:
    """The parsed rows with their line and text (a file in `_inexact`: no line, the fields joined as text)."""
    positions = layout.positions
    values = ", ".join(f"p.c{positions[c]}" if c in positions else "NULL" for c in fmt.staged_columns)
    reconstructed = ", ".join(f"coalesce(p.{n}, '')" for n in names)
    delimiter = sql_str(fmt.delimiter)
    con.execute(
        f"""
        INSERT INTO {staged_table}
        SELECT f.source_name, f.delivery_date,
               CASE WHEN i.filename IS NULL THEN a.line END,
               CASE WHEN i.filename IS NULL THEN a.text ELSE concat_ws({delimiter}, {reconstructed}) END,
               {values}
        FROM _parsed p
        JOIN _files f USING (filename)
        LEFT JOIN _inexact i USING (filename)
        LEFT JOIN _accepted_lines a ON a.filename = p.filename AND a.ordinal = p.ordinal AND i.filename IS NULL
        """
    )


def _insert_parse_rejects(con, layout: Layout, names: list[str], rejects_table: str) -> None:
    """One quarantine row per rejected line, even when DuckDB reports several errors on it."""
    reason_cases = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in PARSER_REASONS.items())
    column_cases = " ".join(f"WHEN '{n}' THEN {sql_str(c)}" for n, c in zip(names, layout.source_columns))
    con.execute(
        f"""
        INSERT INTO {rejects_table}
        SELECT any_value(f.source_name), any_value(f.delivery_date), r.line,
               any_value(CASE r.column_name {column_cases} END) FILTER (WHERE r.error_type LIKE 'INVALID%'),
               any_value(CASE r.error_type {reason_cases} ELSE 'malformed_line' END),
               arg_min(r.error_message, r.column_idx),
               any_value(r.csv_line)
        FROM _parse_rejected r JOIN _files f USING (filename)
        GROUP BY r.filename, r.line
        """
    )


def stage_parquet(con, layout: Layout, fmt: FeedFormat, staged_table: str, rejects_table: str) -> list[StagedFile]:
    columns, positions = layout.source_columns, layout.positions
    values = ", ".join(
        f"CAST({quote_ident(columns[positions[c]])} AS VARCHAR)" if c in positions else "NULL"
        for c in fmt.staged_columns
    )
    shown = [f"coalesce(CAST({quote_ident(name)} AS VARCHAR), '')" for name in columns]
    # Parquet has rows, not lines: the row number (1-based) stands in for the line.
    con.execute(
        f"""
        INSERT INTO {staged_table}
        SELECT f.source_name, f.delivery_date, file_row_number + 1, concat_ws(',', {', '.join(shown)}), {values}
        FROM read_parquet({file_list_sql(layout.files)}, filename=true, file_row_number=true) JOIN _files f USING (filename)
        """
    )
    rows = dict(con.execute(
        f"SELECT filename, count(*) FROM read_parquet({file_list_sql(layout.files)}, filename=true) GROUP BY ALL"
    ).fetchall())
    return [layout.summary(f, rows.get(str(f.path), 0), 0) for f in layout.files]
