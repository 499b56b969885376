"""Ingest layer: landing files -> raw.transactions, raw.customers and raw.quarantine.

A run stages every file of its partitions as text (reader.py), judges each row in SQL
(validate_*.sql), and then replaces its partitions in one transaction: a file that cannot be read
fails the run before anything is written, and a failed write rolls back to the previous state.
"""


import datetime as dt
from pathlib import Path
from string import Template

import duckdb
import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetMaterialization,
    BackfillPolicy,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from mlsys_assets.contract import EXCLUDED_REASON, FeedFormat
from mlsys_assets.ingest.checks import known_customers_check
from mlsys_assets.ingest.pii import (
    EMAIL_SQL_PATTERN,
    LocalKeyRefused,
    clear_positions,
    email_like_columns,
    mask_emails,
    mask_quarantined_line,
    pii_key,
    register_pii_hash,
)
from mlsys_assets.ingest.reader import (
    LandingFile,
    LandingFilesError,
    StagedFile,
    amount_text_sql,
    create_staging_tables,
    date_formats_text,
    date_sql,
    excluded_sql,
    register_exclusions,
    stage_files,
    stage_readable_files,
)
from mlsys_assets.metadata import ddl_column_schema, markdown_table, table_columns
from mlsys_assets.partitions import calendar_refusal, daily_partitions, outside_calendar
from mlsys_assets.resources import (
    WAREHOUSE_POOL,
    LandingZone,
    Warehouse,
    combined_digest,
    file_fingerprint,
)
from mlsys_assets.storage import transaction

SQL_DIR = Path(__file__).parent
RAW_TABLES_DDL = (SQL_DIR / "raw_tables.sql").read_text()
TRANSACTIONS_SCHEMA = ddl_column_schema(RAW_TABLES_DDL, "raw.transactions")
CUSTOMERS_SCHEMA = ddl_column_schema(RAW_TABLES_DDL, "raw.customers")


class TransactionsIngestConfig(Config):
    max_amount: float = Field(
        default=100_000.0, description="Largest plausible single transaction; above it a row is quarantined."
    )
    max_late_days: int = Field(
        default=365, description="Oldest event date a delivery may carry, in days before its delivery day."
    )


def _sql_template(name: str, **values: object) -> str:
    return Template((SQL_DIR / name).read_text()).substitute({k: str(v) for k, v in values.items()})


def _stage_all(
    con: duckdb.DuckDBPyConnection, files: list[LandingFile], fmt: FeedFormat, feed: str
) -> list[StagedFile]:
    """Stage every file, or fail naming every unreadable one (before anything is written)."""
    staged_table, rejects_table = f"_staged_{feed}", f"_rejects_{feed}"
    create_staging_tables(con, staged_table, rejects_table, fmt)
    try:
        return stage_files(con, files, fmt, staged_table, rejects_table)
    except LandingFilesError as exc:
        raise Failure(
            description=f"{exc}\nNothing was written; earlier partitions are unchanged.",
            metadata={"unreadable_files": MetadataValue.json([str(e) for e in exc.errors])},
        ) from exc


def _transaction_files(
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


def _stage_transactions(
    con: duckdb.DuckDBPyConnection, files: list[tuple[dt.date, Path]], refused: dict[str, str], fmt: FeedFormat,
    landing_root: Path,
) -> tuple[list[StagedFile], dict[str, str]]:
    """Stage every readable file; return them with the run's files that cannot load (path -> problem).
    Fails, before anything is written, when no file of the run can load."""
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
    return staged, unloadable


def _fail_unloaded_days(context: AssetExecutionContext, unloadable: dict[str, str], by_day: dict[dt.date, dict],
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


def _quarantine_rows(con: duckdb.DuckDBPyConnection, feed: str, checked_table: str, run_id: str) -> None:
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


def _mask_personal_fields(
    con: duckdb.DuckDBPyConnection, rows: pd.DataFrame, staged: list[StagedFile], fmt: FeedFormat
) -> pd.DataFrame:
    """Quarantined customer lines keep only their clear contract fields readable (pii.mask_quarantined_line):
    personal, extra and unmapped fields and e-mail-like text are masked; a shifted line keeps only its id."""
    files = {s.file.source_name: (s.personal_positions, clear_positions(con, s.file.path, fmt)) for s in staged}
    unknown = ((), ((), 0, None))  # a row from no staged file: mask every field
    rows["original_text"] = [
        mask_quarantined_line(text, fmt.delimiter, *files.get(name, unknown), reason)
        for text, name, reason in zip(rows["original_text"], rows["source_file"], rows["reason"])
    ]
    rows["detail"] = [mask_emails(detail) for detail in rows["detail"]]
    return rows


def _reconciliation(con: duckdb.DuckDBPyConnection, staged: list[StagedFile], table: str) -> AssetCheckResult:
    """Rows loaded + quarantined per file must equal the data lines read from it."""
    stored = dict(
        con.execute(
            f"""
            SELECT source_file, sum(n) FROM (
                SELECT source_file, count(*) AS n FROM {table} GROUP BY ALL
                UNION ALL
                SELECT source_file, count(*) FROM raw.quarantine GROUP BY ALL
            )
            WHERE source_file IN (SELECT source_name FROM _files)
            GROUP BY ALL
            """
        ).fetchall()
    )
    mismatches = {}
    for item in staged:
        name = item.file.source_name
        accounted = int(stored.get(name, 0))
        if accounted != item.data_lines:
            mismatches[name] = {"data_lines": item.data_lines, "loaded_plus_quarantined": accounted}
    return AssetCheckResult(
        check_name="reconciliation",
        passed=not mismatches,
        metadata={
            "files_checked": len(staged),
            "data_lines": sum(s.data_lines for s in staged),
            "mismatches": MetadataValue.json(mismatches),
        },
    )


def _schema_check(con: duckdb.DuckDBPyConnection, table: str, declared) -> AssetCheckResult:
    expected = [(c.name, c.type.replace(" NOT NULL", "")) for c in declared.columns]
    actual = table_columns(con, table)
    return AssetCheckResult(
        check_name="schema",
        passed=actual == expected,
        metadata={"expected": MetadataValue.json(expected), "actual": MetadataValue.json(actual)},
    )


@asset(
    key=["raw", "transactions"],
    group_name="ingest",
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    pool=WAREHOUSE_POOL,
    kinds={"duckdb"},
    description=(
        "Every valid sale the shop delivered, one daily partition per landing file "
        "(`landing/transactions/YYYY-MM-DD.csv|parquet`). Rows that break the data contract go to "
        "`raw.quarantine` with file, line, column and reason, as do rows the mapping excludes (cancelled "
        "orders, say); the rest of the file still loads. $0 sales load; refunds (negative amounts) are quarantined. "
        "Re-running a day replaces it; duplicate transaction ids load once."
    ),
    metadata={"dagster/column_schema": TRANSACTIONS_SCHEMA, "dagster/table_name": "raw.transactions"},
    check_specs=[
        AssetCheckSpec("schema", asset=["raw", "transactions"], blocking=True,
                       description="The table has exactly the declared columns and types."),
        AssetCheckSpec("keys", asset=["raw", "transactions"], blocking=True,
                       description="transaction_id, customer_id and event_time are never NULL; transaction_id is unique."),
        AssetCheckSpec("amount_rules", asset=["raw", "transactions"], blocking=True,
                       description="Amounts are non-negative (refunds are quarantined) and below the plausibility limit."),
        AssetCheckSpec("reconciliation", asset=["raw", "transactions"], blocking=True,
                       description="Rows loaded + rows quarantined = data lines in each file of the run."),
        AssetCheckSpec("known_customers", asset=["raw", "transactions"],
                       description="Warns when transactions name customers missing from raw.customers (they still load)."),
        AssetCheckSpec("no_personal_data", asset=["raw", "transactions"], blocking=True,
                       description="No e-mail address in clear in any text column of any warehouse table."),
    ],
)
def raw_transactions(
    context: AssetExecutionContext, config: TransactionsIngestConfig, warehouse: Warehouse, landing: LandingZone
) -> MaterializeResult:
    window = context.partition_time_window
    days = [window.start.date() + dt.timedelta(days=i) for i in range((window.end - window.start).days)]
    files, missing, fmt, refused = _transaction_files(days, landing)
    # Taken before the read: the landing sensor compares them with the files to tell whether they loaded.
    sources = {day: {"source_file": path.name, **file_fingerprint(path)} for day, path in files}
    landing_root = landing.layout.landing

    with warehouse.connect() as con:
        con.execute(RAW_TABLES_DDL)
        staged, unloadable = _stage_transactions(con, files, refused, fmt, landing_root)
        files = sorted((s.file.delivery_date, s.file.path) for s in staged)  # the days that load
        con.execute("CREATE OR REPLACE TEMP TABLE _delivery_days (day DATE)")
        con.executemany("INSERT INTO _delivery_days VALUES (?)", [[day] for day, _ in files])
        register_exclusions(con, fmt)
        con.execute(
            _sql_template(
                "validate_transactions.sql",
                excluded=excluded_sql(fmt),
                event_time=date_sql("s.event_time", fmt),
                amount_text=amount_text_sql(fmt),
                date_formats=date_formats_text(fmt),
                decimal_separator=fmt.decimal_separator,
                max_amount=config.max_amount,
                max_late_days=config.max_late_days,
            ),
            [EMAIL_SQL_PATTERN] * 2,
        )
        _quarantine_rows(con, "transactions", "_checked_transactions", context.run_id)
        # Extra columns of a bad line (an `email` column, say) are masked like customers' (pii.py).
        masked = _mask_personal_fields(con, con.execute("SELECT * FROM _quarantine_rows").df(), staged, fmt)
        con.register("_masked_quarantine", masked)
        con.execute("CREATE OR REPLACE TEMP TABLE _quarantine_rows AS SELECT * FROM _masked_quarantine")
        con.unregister("_masked_quarantine")

        with transaction(con):
            con.execute("DELETE FROM raw.transactions WHERE delivery_date IN (SELECT day FROM _delivery_days)")
            con.execute(
                "DELETE FROM raw.quarantine WHERE feed = 'transactions' "
                "AND delivery_date IN (SELECT day FROM _delivery_days)"
            )
            con.execute(
                """
                INSERT INTO raw.transactions
                SELECT txn_id, customer_key, event_ts, event_ts::DATE, round(amount_value, 2)::DECIMAL(18,2),
                       quantity_value, delivery_date, source_file, line, now(), ?
                FROM _checked_transactions WHERE problem IS NULL
                ORDER BY delivery_date, line
                """,
                [context.run_id],
            )
            con.execute("INSERT INTO raw.quarantine SELECT * FROM _quarantine_rows")

        in_run = "delivery_date IN (SELECT day FROM _delivery_days)"
        loaded, customers, zero_amount = con.execute(
            f"SELECT count(*), count(DISTINCT customer_id), count(*) FILTER (WHERE amount = 0) "
            f"FROM raw.transactions WHERE {in_run}"
        ).fetchone()
        quarantined, excluded = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE reason = ?) FROM raw.quarantine "
            f"WHERE feed = 'transactions' AND {in_run}", [EXCLUDED_REASON]
        ).fetchone()
        null_keys, duplicate_ids = con.execute(
            f"""
            SELECT (SELECT count(*) FROM raw.transactions WHERE {in_run}
                      AND (transaction_id IS NULL OR customer_id IS NULL OR event_time IS NULL)),
                   (SELECT count(*) FROM (SELECT transaction_id FROM raw.transactions GROUP BY ALL HAVING count(*) > 1))
            """
        ).fetchone()
        bad_amounts = con.execute(
            f"SELECT count(*) FROM raw.transactions WHERE {in_run} AND (amount < 0 OR amount > ?)",
            [config.max_amount],
        ).fetchone()[0]
        check_results = [
            _schema_check(con, "raw.transactions", TRANSACTIONS_SCHEMA),
            AssetCheckResult(check_name="keys", passed=null_keys == 0 and duplicate_ids == 0,
                             metadata={"null_keys": null_keys, "duplicate_transaction_ids": duplicate_ids}),
            AssetCheckResult(check_name="amount_rules", passed=bad_amounts == 0,
                             metadata={"rows_out_of_range": bad_amounts, "max_amount": config.max_amount}),
            _reconciliation(con, staged, "raw.transactions"),
            known_customers_check(con, in_run),
            _no_personal_data(con),
        ]
        metadata = {
            "dagster/row_count": loaded,
            "rows_quarantined": quarantined,
            # Part of rows_quarantined: rows the mapping's `exclude` filter took out (cancelled orders, say).
            "rows_excluded_by_mapping": excluded,
            "exclude_filter": fmt.exclude_text() or "none",
            # Sales of 0.00 are purchases with no spend: they load and count as a purchase day.
            "zero_amount_rows": zero_amount,
            "customers": customers,
            "files": len(files),
            "partitions": f"{files[0][0]} … {files[-1][0]} ({len(files)} days with a file)",
            # The run's total; each partition's own count is its dagster/row_count.
            "run_rows_loaded": loaded,
            "days_without_file": MetadataValue.json([str(d) for d in missing]),
            "quarantine_by_reason": markdown_table(
                con,
                f"""SELECT reason, column_name AS "column", count(*) AS rows FROM raw.quarantine
                    WHERE feed = 'transactions' AND {in_run} GROUP BY ALL ORDER BY rows DESC""",
            ),
            "quarantine_sample": markdown_table(
                con,
                f"""SELECT source_file, line, column_name AS "column", reason, detail FROM raw.quarantine
                    WHERE feed = 'transactions' AND {in_run} ORDER BY source_file, line LIMIT 10""",
            ),
            "preview": markdown_table(
                con,
                f"""SELECT transaction_id, customer_id, event_time, amount, quantity, delivery_date
                    FROM raw.transactions WHERE {in_run} ORDER BY delivery_date, source_line LIMIT 5""",
            ),
            "ignored_columns": MetadataValue.json(sorted({c for s in staged for c in s.ignored_columns})),
            "files_without_exact_line_numbers": MetadataValue.json(
                [s.file.source_name for s in staged if not s.lines_exact]
            ),
            "table_rows_total": con.execute("SELECT count(*) FROM raw.transactions").fetchone()[0],
            # Files of the run that did not load (their days are unchanged), and every landing entry refused.
            "unreadable_files": MetadataValue.json(sorted(f"{p}: {m}" for p, m in unloadable.items())),
            "landing_refusals": MetadataValue.json(
                [f"{name}: {reason}" for name, reason in landing.transaction_refusals().items()]),
        }
        by_day = _day_metadata(con, sources)
    if unloadable:
        _fail_unloaded_days(context, unloadable, by_day, metadata)
    for day, day_metadata in by_day.items():
        context.add_asset_metadata(day_metadata, partition_key=day.isoformat())
    for day in missing:  # a range run materializes its days without a file too: say so on each
        context.add_asset_metadata({"dagster/row_count": 0, "rows_quarantined": 0,
                                    "source_file": "none: no landing file for this day"}, partition_key=day.isoformat())
    return MaterializeResult(metadata=metadata, check_results=check_results)


def _day_metadata(con: duckdb.DuckDBPyConnection, sources: dict[dt.date, dict]) -> dict[dt.date, dict]:
    """Each loaded day's own figures and landing file: in a range run, one partition must not show the
    run's totals. Only the days of `_delivery_days` (the files that loaded) are returned."""
    rows = {day: counts for day, *counts in con.execute(
        """SELECT delivery_date, count(*), count(DISTINCT customer_id), count(*) FILTER (WHERE amount = 0)
           FROM raw.transactions WHERE delivery_date IN (SELECT day FROM _delivery_days) GROUP BY ALL""").fetchall()}
    quarantined = {day: counts for day, *counts in con.execute(
        """SELECT delivery_date, count(*), count(*) FILTER (WHERE reason = ?) FROM raw.quarantine
           WHERE feed = 'transactions' AND delivery_date IN (SELECT day FROM _delivery_days) GROUP BY ALL""",
        [EXCLUDED_REASON]).fetchall()}
    by_day = {}
    for (day,) in con.execute("SELECT day FROM _delivery_days ORDER BY day").fetchall():
        loaded, customers, zero_amount = rows.get(day, (0, 0, 0))
        bad, excluded = quarantined.get(day, (0, 0))
        by_day[day] = {"dagster/row_count": loaded, "customers": customers, "zero_amount_rows": zero_amount,
                       "rows_quarantined": bad, "rows_excluded_by_mapping": excluded, **sources[day]}
    return by_day


def _no_personal_data(con: duckdb.DuckDBPyConnection, check_name: str = "no_personal_data") -> AssetCheckResult:
    """Scans every VARCHAR column of every table of the warehouse, one column at a time
    (pii.email_like_columns); the metadata names the columns, never the values."""
    found = email_like_columns(con)
    return AssetCheckResult(
        check_name=check_name,
        passed=not found,
        metadata={"rows_with_an_email_address": sum(found.values()),
                  "columns_with_an_email_address": MetadataValue.json(found)},
    )


@asset(
    key=["raw", "customers"],
    group_name="ingest",
    pool=WAREHOUSE_POOL,
    kinds={"duckdb"},
    description=(
        "The shop's customers from `landing/customers/*.csv|parquet` (optional: without it the first "
        "purchase stands in for signup). E-mail and name are replaced by keyed hashes (HMAC-SHA256, key "
        "from MLSYS_PII_KEY; a shop that is not simulated refuses the local key unless "
        "MLSYS_ALLOW_LOCAL_PII_KEY=1) and never stored in clear; a line with an e-mail in a clear column is "
        "quarantined as `personal_data`. A later file's row wins for the same customer."
    ),
    metadata={"dagster/column_schema": CUSTOMERS_SCHEMA, "dagster/table_name": "raw.customers"},
    check_specs=[
        AssetCheckSpec("schema", asset=["raw", "customers"], blocking=True,
                       description="The table has exactly the declared columns and types."),
        AssetCheckSpec("keys", asset=["raw", "customers"], blocking=True,
                       description="customer_id is never NULL and unique."),
        AssetCheckSpec("no_personal_data", asset=["raw", "customers"], blocking=True,
                       description="No VARCHAR column of any table of the warehouse holds an e-mail address."),
        AssetCheckSpec("reconciliation", asset=["raw", "customers"], blocking=True,
                       description="Rows loaded + superseded + quarantined = data lines in the customer files."),
    ],
)
def raw_customers(context: AssetExecutionContext, warehouse: Warehouse, landing: LandingZone) -> MaterializeResult:
    paths = landing.customer_files()
    # Taken before the read: the landing sensor compares it with the files to tell whether they loaded.
    source_digest = combined_digest([file_fingerprint(path) for path in sorted(paths, key=lambda p: p.name)])
    fmt = landing.formats()["customers"]
    landing_root = landing.layout.landing
    with warehouse.connect() as con:
        con.execute(RAW_TABLES_DDL)
        if not paths:
            context.log.info("no customer export in %s: transactions alone drive the pipeline", landing.layout.customers_landing)
            rows = con.execute("SELECT count(*) FROM raw.customers").fetchone()[0]
            return MaterializeResult(
                metadata={"dagster/row_count": rows, "files": 0,
                          "note": "no customer export: the first purchase stands in for signup; country and channel are unknown"},
                check_results=[
                    _schema_check(con, "raw.customers", CUSTOMERS_SCHEMA),
                    AssetCheckResult(check_name="keys", passed=True),
                    _no_personal_data(con),
                    AssetCheckResult(check_name="reconciliation", passed=True, metadata={"files_checked": 0}),
                ],
            )
        try:
            simulated = (landing.layout.simulation / "ground_truth.parquet").exists()
            register_pii_hash(con, pii_key(landing.layout.secrets, context.log, simulated=simulated))
        except LocalKeyRefused as exc:
            raise Failure(description=f"{exc} Nothing was written.") from exc
        staged = _stage_all(con, [LandingFile(p, str(p.relative_to(landing_root))) for p in paths], fmt, "customers")
        register_exclusions(con, fmt)
        con.execute(
            _sql_template(
                "validate_customers.sql",
                excluded=excluded_sql(fmt),
                signup_date=f"{date_sql('s.signup_date', fmt)}::DATE",
                date_formats=date_formats_text(fmt),
            ),
            [EMAIL_SQL_PATTERN] * 3,
        )

        _quarantine_rows(con, "customers", "_checked_customers", context.run_id)
        masked_quarantine = _mask_personal_fields(con, con.execute("SELECT * FROM _quarantine_rows").df(), staged, fmt)

        with transaction(con):
            con.execute("DELETE FROM raw.customers")
            con.execute("DELETE FROM raw.quarantine WHERE feed = 'customers'")
            con.execute(
                """
                INSERT INTO raw.customers
                SELECT customer_key, signup_value, nullif(trim(country), ''), nullif(trim(acquisition_channel), ''),
                       email_hash, name_hash, source_file, line, now(), ?
                FROM _checked_customers WHERE problem IS NULL
                QUALIFY row_number() OVER (PARTITION BY customer_key ORDER BY source_file DESC, line DESC) = 1
                """,
                [context.run_id],
            )
            con.register("_masked_quarantine", masked_quarantine)
            con.execute("INSERT INTO raw.quarantine SELECT * FROM _masked_quarantine")
            con.unregister("_masked_quarantine")

        loaded = con.execute("SELECT count(*) FROM raw.customers").fetchone()[0]
        valid_rows = con.execute("SELECT count(*) FROM _checked_customers WHERE problem IS NULL").fetchone()[0]
        quarantined = con.execute("SELECT count(*) FROM raw.quarantine WHERE feed = 'customers'").fetchone()[0]
        null_or_duplicate = con.execute(
            "SELECT count(*) - count(DISTINCT customer_id) + count(*) FILTER (WHERE customer_id IS NULL) FROM raw.customers"
        ).fetchone()[0]
        data_lines = sum(s.data_lines for s in staged)
        superseded = valid_rows - loaded
        check_results = [
            _schema_check(con, "raw.customers", CUSTOMERS_SCHEMA),
            AssetCheckResult(check_name="keys", passed=null_or_duplicate == 0,
                             metadata={"null_or_duplicate_ids": null_or_duplicate}),
            _no_personal_data(con),
            AssetCheckResult(
                check_name="reconciliation",
                passed=loaded + superseded + quarantined == data_lines,
                metadata={"data_lines": data_lines, "loaded": loaded, "superseded_by_a_later_row": superseded,
                          "quarantined": quarantined},
            ),
        ]
        metadata = {
            "dagster/row_count": loaded,
            "rows_quarantined": quarantined,
            "rows_superseded": superseded,
            "source_digest": source_digest,
            "files": MetadataValue.json([str(p.relative_to(landing_root)) for p in paths]),
            "quarantine_by_reason": markdown_table(
                con,
                """SELECT reason, column_name AS "column", count(*) AS rows FROM raw.quarantine
                   WHERE feed = 'customers' GROUP BY ALL ORDER BY rows DESC""",
            ),
            "by_channel": markdown_table(
                con,
                # Masked again here: metadata lands in Dagster's event log, outside the warehouse's guard.
                """SELECT regexp_replace(coalesce(acquisition_channel, '(unknown)'), ?, '***', 'g') AS acquisition_channel,
                          count(*) AS customers
                   FROM raw.customers GROUP BY ALL ORDER BY customers DESC""",
                [EMAIL_SQL_PATTERN],
            ),
            "preview": markdown_table(
                con,
                """SELECT regexp_replace(customer_id, ?, '***', 'g') AS customer_id, signup_date,
                          regexp_replace(country, ?, '***', 'g') AS country,
                          regexp_replace(acquisition_channel, ?, '***', 'g') AS acquisition_channel,
                          left(email_hash, 12) || '…' AS email_hash
                   FROM raw.customers ORDER BY customer_id LIMIT 5""",
                [EMAIL_SQL_PATTERN] * 3,
            ),
        }
    return MaterializeResult(metadata=metadata, check_results=check_results)
