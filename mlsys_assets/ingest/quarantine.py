"""The quarantine rows of a run, shaped like raw.quarantine: the lines the parser rejected and the rows
validation judged, with personal fields of customer lines masked before they are stored."""

from __future__ import annotations

import duckdb
import pandas as pd

from mlsys_assets.contract import FeedFormat
from mlsys_assets.ingest.landing_file import StagedFile
from mlsys_assets.ingest.pii import clear_positions, mask_emails, mask_quarantined_line


def quarantine_rows(con: duckdb.DuckDBPyConnection, feed: str, checked_table: str, run_id: str) -> None:
    """`_quarantine_rows`: this run's rejected lines and failed rows, shaped like raw.quarantine."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _quarantine_rows AS
        SELECT '{feed}' AS feed, delivery_date, source_file, line, problem['column'] AS column_name,
               problem['reason'] AS reason, problem['detail'] AS detail, original_text,
               now() AS quarantined_at, ?::VARCHAR AS run_id
        FROM {checked_table} WHERE problem IS NOT NULL
        UNION ALL
        SELECT '{feed}', delivery_date, source_file, line, column_name, reason, detail, original_text, now(), ?
        FROM _rejects_{feed}
        """,
        [run_id, run_id],
    )


def mask_personal_fields(
    con: duckdb.DuckDBPyConnection, rows: pd.DataFrame, staged: list[StagedFile], fmt: FeedFormat
) -> pd.DataFrame:
    """Quarantined customer lines keep only their clear contract fields readable (pii.mask_quarantined_line):
    personal, extra and unmapped fields and e-mail-like text are masked; a shifted line keeps only its id."""
    named = set(rows["source_file"])  # only the files with a quarantined row are looked at again
    files = {s.file.source_name: (s.personal_positions, clear_positions(con, s.file.path, fmt))
             for s in staged if s.file.source_name in named}
    unknown = ((), ((), 0, None))  # a row from no staged file: mask every field
    rows["original_text"] = [
        mask_quarantined_line(text, fmt.delimiter, *files.get(name, unknown), reason)
        for text, name, reason in zip(rows["original_text"], rows["source_file"], rows["reason"])
    ]
    rows["detail"] = [mask_emails(detail) for detail in rows["detail"]]
    return rows
