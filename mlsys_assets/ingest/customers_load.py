"""The customers export load of raw/customers: every file of `landing/customers/` staged, judged
(validate_customers.sql, personal fields hashed), and raw.customers replaced as a whole (a later file's
row wins for the same customer); plus its checks and metadata."""

from __future__ import annotations

from pathlib import Path

import duckdb
from dagster import AssetCheckResult, Failure, MetadataValue

from mlsys_assets.contract import FeedFormat
from mlsys_assets.ingest.checks import CUSTOMERS_SCHEMA, no_personal_data_check, schema_check
from mlsys_assets.ingest.landing_file import LandingFile, LandingFilesError, StagedFile
from mlsys_assets.ingest.pii import EMAIL_SQL_PATTERN
from mlsys_assets.ingest.quarantine import mask_personal_fields, quarantine_rows
from mlsys_assets.ingest.raw_tables import sql_template
from mlsys_assets.ingest.reader import create_staging_tables, stage_files
from mlsys_assets.ingest.value_sql import date_formats_text, date_sql, excluded_sql, register_exclusions
from mlsys_assets.metadata import markdown_table
from mlsys_assets.storage import transaction


def empty_export_checks(con: duckdb.DuckDBPyConnection) -> list[AssetCheckResult]:
    """The checks of a run without any customers file."""
    return [
        schema_check(con, "raw.customers", CUSTOMERS_SCHEMA),
        AssetCheckResult(check_name="keys", passed=True),
        no_personal_data_check(con),
        AssetCheckResult(check_name="reconciliation", passed=True, metadata={"files_checked": 0}),
    ]


def stage_customers(con: duckdb.DuckDBPyConnection, paths: list[Path], fmt: FeedFormat, landing_root: Path) -> list[StagedFile]:
    """Stage every customers file, or fail naming every unreadable one (before anything is written)."""
    create_staging_tables(con, "_staged_customers", "_rejects_customers", fmt)
    files = [LandingFile(p, str(p.relative_to(landing_root))) for p in paths]
    try:
        return stage_files(con, files, fmt, "_staged_customers", "_rejects_customers")
    except LandingFilesError as exc:
        raise Failure(
            description=f"{exc}\nNothing was written; earlier partitions are unchanged.",
            metadata={"unreadable_files": MetadataValue.json([str(e) for e in exc.errors])},
        ) from exc


def validate_customers(con: duckdb.DuckDBPyConnection, fmt: FeedFormat) -> None:
    """`_checked_customers`: every staged line typed and hashed, with the first rule it breaks as `problem`."""
    register_exclusions(con, fmt)
    con.execute(
        sql_template(
            "validate_customers.sql",
            excluded=excluded_sql(fmt),
            signup_date=f"{date_sql('s.signup_date', fmt)}::DATE",
            date_formats=date_formats_text(fmt),
        ),
        [EMAIL_SQL_PATTERN] * 3,
    )


def replace_customers(con: duckdb.DuckDBPyConnection, staged: list[StagedFile], fmt: FeedFormat, run_id: str) -> None:
    """Replace raw.customers and the customers' quarantine rows (masked) in one transaction."""
    quarantine_rows(con, "customers", "_checked_customers", run_id)
    masked_quarantine = mask_personal_fields(con, con.execute("SELECT * FROM _quarantine_rows").df(), staged, fmt)
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
            [run_id],
        )
        con.register("_masked_quarantine", masked_quarantine)
        con.execute("INSERT INTO raw.quarantine SELECT * FROM _masked_quarantine")
        con.unregister("_masked_quarantine")


def customer_checks_and_counts(con: duckdb.DuckDBPyConnection, staged: list[StagedFile]) -> tuple[list[AssetCheckResult], dict]:
    """The checks of a load, and its counts (loaded, quarantined, superseded by a later row)."""
    loaded = con.execute("SELECT count(*) FROM raw.customers").fetchone()[0]
    valid_rows = con.execute("SELECT count(*) FROM _checked_customers WHERE problem IS NULL").fetchone()[0]
    quarantined = con.execute("SELECT count(*) FROM raw.quarantine WHERE feed = 'customers'").fetchone()[0]
    null_or_duplicate = con.execute(
        "SELECT count(*) - count(DISTINCT customer_id) + count(*) FILTER (WHERE customer_id IS NULL) FROM raw.customers"
    ).fetchone()[0]
    data_lines = sum(s.data_lines for s in staged)
    superseded = valid_rows - loaded
    checks = [
        schema_check(con, "raw.customers", CUSTOMERS_SCHEMA),
        AssetCheckResult(check_name="keys", passed=null_or_duplicate == 0,
                         metadata={"null_or_duplicate_ids": null_or_duplicate}),
        no_personal_data_check(con),
        AssetCheckResult(
            check_name="reconciliation",
            passed=loaded + superseded + quarantined == data_lines,
            metadata={"data_lines": data_lines, "loaded": loaded, "superseded_by_a_later_row": superseded,
                      "quarantined": quarantined},
        ),
    ]
    return checks, {"dagster/row_count": loaded, "rows_quarantined": quarantined, "rows_superseded": superseded}


def customer_tables(con: duckdb.DuckDBPyConnection) -> dict[str, MetadataValue]:
    """The quarantine breakdown, customers by channel and a preview, e-mail-like values masked."""
    return {
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
