"""The per-day load of raw/transactions: find the run's landing files, stage them, judge every row
(validate_transactions.sql), and replace the run's delivery days in one transaction.

A file that cannot be read fails only its own day (the run then fails naming it, after the other days
loaded); when no file of the run can be read, nothing is written.
"""

from __future__ import annotations

import datetime as dt
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
from dagster import AssetExecutionContext, AssetMaterialization, Failure, MetadataValue

from mlsys_assets.contract import FeedFormat
from mlsys_assets.ingest.landing_file import LandingFile, StagedFile
from mlsys_assets.ingest.pii import EMAIL_SQL_PATTERN
from mlsys_assets.ingest.quarantine import mask_personal_fields, quarantine_rows
from mlsys_assets.ingest.raw_tables import sql_template
from mlsys_assets.ingest.reader import create_staging_tables, stage_readable_files
from mlsys_assets.ingest.value_sql import amount_text_sql, date_formats_text, date_sql, excluded_sql, register_exclusions
from mlsys_assets.partitions import calendar_refusal, outside_calendar
from mlsys_assets.resources import LandingZone, file_fingerprint
from mlsys_assets.storage import transaction

# The SQL condition on raw.transactions / raw.quarantine that selects the run's delivery days.
IN_RUN = "delivery_date IN (SELECT day FROM _delivery_days)"


def partition_days(context: AssetExecutionContext) -> list[dt.date]:
    window = context.partition_time_window
    return [window.start.date() + dt.timedelta(days=i) for i in range((window.end - window.start).days)]


def transaction_files(
    days: list[dt.date], landing: LandingZone
) -> tuple[list[tuple[dt.date, Path]], list[dt.date], FeedFormat, dict[str, str]]:
    """The run's landing files, its days without a file, the feed format and the run's refused files
    (path -> reason: a day whose only entries the landing zone refuses, e.g. two files for the day);
    fails before anything is read when a day is not on the partition calendar (Dagster would fail the
    run after the write)."""
    try:
        available = landing.transaction_files()
        fmt = landing.formats()["transactions"]
    except ValueError as exc:
        raise Failure(description=str(exc)) from exc
    refusal = calendar_refusal(
        {day: available[day].name if day in available else f"delivery day {day}" for day in outside_calendar(days)}
    )
    if refusal:
        raise Failure(description=f"{refusal}. Nothing was written.")
    folder = landing.layout.transactions_landing
    refused = {
        str(folder / name): reason for name, reason in landing.transaction_refusals().items()
        if _named_day(name) in days and _named_day(name) not in available and not name.endswith(".importing")
    }
    refused_days = {_named_day(Path(path).name) for path in refused}
    files = [(day, available[day]) for day in days if day in available]
    if not files and not refused:
        raise Failure(
            description=f"no landing file for {days[0]}{' … ' + str(days[-1]) if len(days) > 1 else ''} in "
            f"{folder} (expected YYYY-MM-DD.csv or YYYY-MM-DD.parquet)"
        )
    return files, [day for day in days if day not in available and day not in refused_days], fmt, refused


def _named_day(name: str) -> dt.date | None:
    """The day a landing entry's name starts with (`2024-09-02.csv`, `2024-09-02.CSV`), if any."""
    try:
        return dt.date.fromisoformat(name[:10]) if name[10:11] == "." else None
    except ValueError:
        return None


def source_fingerprints(files: list[tuple[dt.date, Path]]) -> dict[dt.date, dict]:
    """Each day's landing file name, size, time and content hash (resources.file_fingerprint). Taken before
    the read: the landing sensor compares them with the files to tell whether they loaded."""
    # Hashing reads every byte of the run's files: a few threads (hashlib releases the GIL) read them at once.
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        fingerprints = list(pool.map(file_fingerprint, [path for _, path in files]))
    return {day: {"source_file": path.name, **fingerprint} for (day, path), fingerprint in zip(files, fingerprints)}


def stage_transactions(
    con: duckdb.DuckDBPyConnection, files: list[tuple[dt.date, Path]], refused: dict[str, str], fmt: FeedFormat,
    landing_root: Path,
) -> tuple[list[StagedFile], dict[str, str]]:
    """Stage every readable file; return them with the run's files that cannot load (path -> problem), and
    fill `_delivery_days` with the days that load. Fails, before anything is written, when no file of the
    run can load."""
    create_staging_tables(con, "_staged_transactions", "_rejects_transactions", fmt)
    landing_files = [LandingFile(path, str(path.relative_to(landing_root)), day) for day, path in files]
    staged, errors = stage_readable_files(con, landing_files, fmt, "_staged_transactions", "_rejects_transactions")
    unloadable = {**refused, **{str(e.path): e.problem for e in errors}}
    if not staged:
        lines = "\n- ".join(f"{path}: {problem}" for path, problem in sorted(unloadable.items()))
        raise Failure(
            description=f"{len(unloadable)} landing file(s) cannot be read:\n- {lines}\n"
            "Nothing was written; earlier partitions are unchanged.",
            metadata={"unreadable_files": MetadataValue.json(sorted(f"{p}: {m}" for p, m in unloadable.items()))},
        )
    con.execute("CREATE OR REPLACE TEMP TABLE _delivery_days (day DATE)")
    con.executemany("INSERT INTO _delivery_days VALUES (?)", [[s.file.delivery_date] for s in staged])
    return staged, unloadable


def validate_transactions(
    con: duckdb.DuckDBPyConnection, fmt: FeedFormat, max_amount: float, max_late_days: int
) -> None:
    """`_checked_transactions`: every staged row typed, with the first rule it breaks as its `problem`."""
    register_exclusions(con, fmt)
    con.execute(
        sql_template(
            "validate_transactions.sql",
            excluded=excluded_sql(fmt),
            event_time=date_sql("s.event_time", fmt),
            amount_text=amount_text_sql(fmt),
            date_formats=date_formats_text(fmt),
            decimal_separator=fmt.decimal_separator,
            max_amount=max_amount,
            max_late_days=max_late_days,
        ),
        [EMAIL_SQL_PATTERN] * 2,
    )


def replace_delivery_days(
    con: duckdb.DuckDBPyConnection, staged: list[StagedFile], fmt: FeedFormat, run_id: str
) -> None:
    """Replace the run's delivery days (rows and quarantine rows) in one transaction."""
    quarantine_rows(con, "transactions", "_checked_transactions", run_id)
    # Extra columns of a bad line (an `email` column, say) are masked like customers' (pii.py).
    masked = mask_personal_fields(con, con.execute("SELECT * FROM _quarantine_rows").df(), staged, fmt)
    con.register("_masked_quarantine", masked)
    con.execute("CREATE OR REPLACE TEMP TABLE _quarantine_rows AS SELECT * FROM _masked_quarantine")
    con.unregister("_masked_quarantine")

    with transaction(con):
        con.execute(f"DELETE FROM raw.transactions WHERE {IN_RUN}")
        con.execute(f"DELETE FROM raw.quarantine WHERE feed = 'transactions' AND {IN_RUN}")
        con.execute(
            """
            INSERT INTO raw.transactions
            SELECT txn_id, customer_key, event_ts, event_ts::DATE, round(amount_value, 2)::DECIMAL(18,2),
                   quantity_value, delivery_date, source_file, line, now(), ?
            FROM _checked_transactions WHERE problem IS NULL
            ORDER BY delivery_date, line
            """,
            [run_id],
        )
        con.execute("INSERT INTO raw.quarantine SELECT * FROM _quarantine_rows")


def fail_unloaded_days(context: AssetExecutionContext, unloadable: dict[str, str], by_day: dict[dt.date, dict],
                       metadata: dict) -> None:
    """The run's other days loaded: record them as materialized, one event per day, then fail naming each
    file that did not load (its day keeps what it had, and the landing sensor retries it)."""
    loaded_days = sorted(by_day)
    for day in loaded_days:
        context.log_event(AssetMaterialization(asset_key=context.asset_key, partition=day.isoformat(),
                                               metadata={**metadata, **by_day[day]}))
    lines = "\n- ".join(f"{path}: {problem}" for path, problem in sorted(unloadable.items()))
    raise Failure(
        description=f"{len(unloadable)} landing file(s) cannot be read, their days are unchanged:\n- {lines}\n"
        f"The run's other {len(loaded_days)} day(s) loaded ({loaded_days[0]} … {loaded_days[-1]}).",
        metadata={"unreadable_files": MetadataValue.json(sorted(f"{p}: {m}" for p, m in unloadable.items()))},
    )


def record_day_metadata(context: AssetExecutionContext, by_day: dict[dt.date, dict], missing: list[dt.date]) -> None:
    """Each partition's own figures; a range run materializes its days without a file too: say so on each."""
    for day, day_metadata in by_day.items():
        context.add_asset_metadata(day_metadata, partition_key=day.isoformat())
    for day in missing:
        context.add_asset_metadata({"dagster/row_count": 0, "rows_quarantined": 0,
                                    "source_file": "none: no landing file for this day"}, partition_key=day.isoformat())
