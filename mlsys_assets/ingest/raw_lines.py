"""Every physical line of a set of files with its 1-based number, as text: the record the quarantine's line
numbers and original text come from. DuckDB's CSV parser does not report the line numbers of the rows it
accepts, so the parsers (parsers.py) pair their rows with these lines."""

from __future__ import annotations

import duckdb

from mlsys_assets.contract import FeedFormat
from mlsys_assets.ingest.dialect import Layout, file_list_sql, sql_str

# A field separator that never occurs in text, so the raw-line scan yields whole lines.
UNIT_SEPARATOR = "chr(31)"


def scan_raw_lines(con: duckdb.DuckDBPyConnection, layout: Layout, fmt: FeedFormat) -> None:
    """`_raw_lines(filename, line, text)`: every physical line with its 1-based number (blank: NULL text);
    `_raw_line_rejected`: the lines the scan itself rejected (bad encoding), with DuckDB's error."""
    con.execute("DROP TABLE IF EXISTS _raw_line_rejects")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _raw_scan AS
        SELECT filename, row_number() OVER () AS ordinal, text
        FROM read_csv({file_list_sql(layout.files)}, header=false, auto_detect=false, columns={{'text': 'VARCHAR'}},
                      delim={UNIT_SEPARATOR}, quote='', escape='', encoding={sql_str(fmt.encoding)},
                      parallel=false, strict_mode=false, filename=true, store_rejects=true,
                      rejects_table='_raw_line_rejects', rejects_scan='_raw_line_scans')
        """
    )
    # Lines the raw scan itself rejected (bad encoding) are missing from _raw_scan; number the others
    # by walking each file's line numbers that were not rejected.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _raw_line_rejected AS "
        "SELECT s.file_path AS filename, r.* FROM _raw_line_rejects r JOIN _raw_line_scans s USING (scan_id, file_id)"
    )
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _raw_lines AS
        WITH rejected AS (SELECT DISTINCT filename, line FROM _raw_line_rejected),
        scanned AS (
            SELECT filename, ordinal - min(ordinal) OVER (PARTITION BY filename) + 1 AS ordinal, text FROM _raw_scan
        ),
        totals AS (
            SELECT filename, count(*) + coalesce(any_value(n_rejected), 0) AS n
            FROM scanned LEFT JOIN (SELECT filename, count(*) AS n_rejected FROM rejected GROUP BY ALL) USING (filename)
            GROUP BY ALL
        ),
        kept AS (
            SELECT filename, line, row_number() OVER (PARTITION BY filename ORDER BY line) AS ordinal
            FROM (SELECT filename, unnest(range(1, n + 1)) AS line FROM totals)
            ANTI JOIN rejected USING (filename, line)
        )
        SELECT filename, kept.line, scanned.text
        FROM scanned JOIN kept USING (filename, ordinal)
        """
    )
