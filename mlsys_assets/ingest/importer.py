"""`mlsys import`: split one historical export into daily landing files in the contract's layout.

The export is read with the same reader and mapping as daily deliveries; each row goes to the file of
its event day with the contract's column names and ISO timestamps. Values are otherwise passed through
as text, so ingestion still validates every row and quarantines what breaks the contract. Rows whose
date cannot be read have no day to go to: they are written, with line and reason, to
`landing/rejected/<export name>.csv` and counted in the summary.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import duckdb

from mlsys_assets.contract import FeedFormat
from mlsys_assets.ingest.reader import LandingFile, amount_text_sql, create_staging_tables, date_sql, stage_files
from mlsys_assets.settings import DataLayout

OUTPUT_COLUMNS = ("transaction_id", "customer_id", "event_time", "amount", "quantity")


class ImportConflictError(ValueError):
    pass


@dataclass(frozen=True)
class ImportSummary:
    rows: int
    days_written: list[dt.date]
    rejected_rows: int
    rejected_file: Path | None


def import_transactions(export: Path, fmt: FeedFormat, layout: DataLayout, replace: bool = False) -> ImportSummary:
    layout.ensure()
    con = duckdb.connect()
    try:
        create_staging_tables(con, "staged", "rejects", fmt)
        stage_files(con, [LandingFile(export, export.name)], fmt, "staged", "rejects")
        con.execute(
            f"""
            CREATE TEMP TABLE dated AS
            SELECT line, original_text, transaction_id, customer_id, amount, quantity, event_time AS event_text,
                   {date_sql('event_time', fmt)} AS event_ts
            FROM staged
            """
        )
        days = [row[0] for row in con.execute(
            "SELECT DISTINCT event_ts::DATE FROM dated WHERE event_ts IS NOT NULL ORDER BY 1"
        ).fetchall()]
        existing = [d for d in days if any((layout.transactions_landing / f"{d}{s}").exists() for s in (".csv", ".parquet"))]
        if existing and not replace:
            raise ImportConflictError(
                f"{len(existing)} day(s) already have a landing file ({existing[0]} … {existing[-1]}); "
                "pass --replace to overwrite them"
            )
        for day in days:
            target = layout.transactions_landing / f"{day}.csv"
            temporary = target.with_suffix(".csv.importing")
            con.execute(
                f"""
                COPY (
                    SELECT transaction_id, customer_id, strftime(event_ts, '%Y-%m-%d %H:%M:%S') AS event_time,
                           {amount_text_sql(fmt, 'amount')} AS amount, quantity
                    FROM dated WHERE event_ts::DATE = ? ORDER BY line
                ) TO '{temporary}' (HEADER, DELIMITER ',')
                """,
                [day],
            )
            os.replace(temporary, target)
        con.execute(
            """
            CREATE TEMP TABLE undated AS
            SELECT line, 'event_time' AS column_name, 'invalid_date' AS reason,
                   'cannot parse ' || coalesce('''' || event_text || '''', 'an empty value') AS detail, original_text
            FROM dated WHERE event_ts IS NULL
            UNION ALL
            SELECT line, column_name, reason, detail, original_text FROM rejects
            """
        )
        rejected = con.execute("SELECT count(*) FROM undated").fetchone()[0]
        rejected_file = None
        if rejected:
            rejected_file = layout.landing / "rejected" / f"{export.stem}.csv"
            rejected_file.parent.mkdir(parents=True, exist_ok=True)
            con.execute(f"COPY (SELECT * FROM undated ORDER BY line) TO '{rejected_file}' (HEADER, DELIMITER ',')")
        rows = con.execute("SELECT count(*) FROM dated WHERE event_ts IS NOT NULL").fetchone()[0]
        return ImportSummary(rows=rows, days_written=days, rejected_rows=rejected, rejected_file=rejected_file)
    finally:
        con.close()
