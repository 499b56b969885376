"""`mlsys import`: split one historical export into daily landing files in the contract's layout.

The export is read with the same reader and mapping as daily deliveries; each row goes to the file of
its event day with the contract's column names and ISO timestamps. Values are otherwise passed through
as text, so ingestion still validates every row and quarantines what breaks the contract. Rows whose
date cannot be read have no day to go to, and rows the mapping's `exclude` filter matches (cancelled
orders, say) are not sales: both are written, with line and reason, to `landing/rejected/<export name>.csv`
and counted in the summary (the excluded ones separately).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb

from mlsys_assets.contract import EXCLUDED_REASON, FeedFormat
from mlsys_assets.ingest.reader import LandingFile, create_staging_tables, stage_files
from mlsys_assets.ingest.value_sql import amount_text_sql, date_sql, excluded_sql, register_exclusions
from mlsys_assets.storage import DataLayout, atomic_path

OUTPUT_COLUMNS = ("transaction_id", "customer_id", "event_time", "amount", "quantity")


class ImportConflictError(ValueError):
    pass


@dataclass(frozen=True)
class ImportSummary:
    rows: int
    days_written: list[dt.date]
    rejected_rows: int  # no readable date or line structure
    rejected_file: Path | None
    excluded_rows: int = 0  # taken out by the mapping's `exclude` filter (also listed in rejected_file)


def import_transactions(export: Path, fmt: FeedFormat, layout: DataLayout, replace: bool = False) -> ImportSummary:
    layout.ensure()
    con = duckdb.connect()
    try:
        _stage_export(con, export, fmt)
        days = [row[0] for row in con.execute(
            "SELECT DISTINCT event_ts::DATE FROM dated WHERE event_ts IS NOT NULL AND excluded IS NULL ORDER BY 1"
        ).fetchall()]
        existing = [d for d in days if any((layout.transactions_landing / f"{d}{s}").exists() for s in (".csv", ".parquet"))]
        if existing and not replace:
            raise ImportConflictError(
                f"{len(existing)} day(s) already have a landing file ({existing[0]} … {existing[-1]}); "
                "pass --replace to overwrite them"
            )
        for day in days:
            _write_day(con, layout.transactions_landing / f"{day}.csv", day, fmt)
        rejected, excluded, rejected_file = _write_rejected(con, layout.landing / "rejected" / f"{export.stem}.csv")
        rows = con.execute("SELECT count(*) FROM dated WHERE event_ts IS NOT NULL AND excluded IS NULL").fetchone()[0]
        return ImportSummary(rows=rows, days_written=days, rejected_rows=rejected, rejected_file=rejected_file,
                             excluded_rows=excluded)
    finally:
        con.close()


def _stage_export(con: duckdb.DuckDBPyConnection, export: Path, fmt: FeedFormat) -> None:
    """`dated`: the export's rows with their parsed event time and exclusion; `rejects`: its unparseable lines."""
    create_staging_tables(con, "staged", "rejects", fmt)
    # The export is named on the command line, so a symbolic link to it is followed (in the landing zone
    # a link is refused unread).
    stage_files(con, [LandingFile(export.resolve(), export.name)], fmt, "staged", "rejects")
    register_exclusions(con, fmt)
    con.execute(
        f"""
        CREATE TEMP TABLE dated AS
        SELECT line, original_text, transaction_id, customer_id, amount, quantity, event_time AS event_text,
               {date_sql('event_time', fmt)} AS event_ts, {excluded_sql(fmt, 'staged')} AS excluded
        FROM staged
        """
    )


def _write_day(con: duckdb.DuckDBPyConnection, target: Path, day: dt.date, fmt: FeedFormat) -> None:
    """One contract-layout landing file: written to a name the landing zone knows as unfinished, then renamed."""
    with atomic_path(target, target.with_suffix(".csv.importing")) as temporary:
        con.execute(
            f"""
            COPY (
                SELECT transaction_id, customer_id, strftime(event_ts, '%Y-%m-%d %H:%M:%S') AS event_time,
                       {amount_text_sql(fmt, 'amount')} AS amount, quantity
                FROM dated WHERE event_ts::DATE = ? AND excluded IS NULL ORDER BY line
            ) TO '{temporary}' (HEADER, DELIMITER ',')
            """,
            [day],
        )


def _write_rejected(con: duckdb.DuckDBPyConnection, target: Path) -> tuple[int, int, Path | None]:
    """Rows that go to no day file, with line and reason: (without a date or structure, excluded, file or None)."""
    con.execute(
        """
        CREATE TEMP TABLE undated AS
        SELECT line, excluded['column'] AS column_name, excluded['reason'] AS reason, excluded['detail'] AS detail,
               original_text
        FROM dated WHERE excluded IS NOT NULL
        UNION ALL
        SELECT line, 'event_time', 'invalid_date',
               'cannot parse ' || coalesce('''' || event_text || '''', 'an empty value'), original_text
        FROM dated WHERE event_ts IS NULL AND excluded IS NULL
        UNION ALL
        SELECT line, column_name, reason, detail, original_text FROM rejects
        """
    )
    rejected, excluded = con.execute(
        "SELECT count(*) FILTER (WHERE reason <> ?), count(*) FILTER (WHERE reason = ?) FROM undated",
        [EXCLUDED_REASON, EXCLUDED_REASON],
    ).fetchone()
    if not rejected + excluded:
        return 0, 0, None
    target.parent.mkdir(parents=True, exist_ok=True)
    con.execute(f"COPY (SELECT * FROM undated ORDER BY line) TO '{target}' (HEADER, DELIMITER ',')")
    return rejected, excluded, target
