"""What a raw/transactions run reports: its in-run asset checks, the run's metadata and each loaded day's own
figures (in a range run, one partition must not show the run's totals)."""

from __future__ import annotations

import datetime as dt

import duckdb
from dagster import AssetCheckResult, MetadataValue

from mlsys_assets.contract import EXCLUDED_REASON, FeedFormat
from mlsys_assets.ingest.checks import (
    TRANSACTIONS_SCHEMA,
    known_customers_check,
    no_personal_data_check,
    reconciliation_check,
    schema_check,
)
from mlsys_assets.ingest.landing_file import StagedFile
from mlsys_assets.ingest.transactions_load import IN_RUN
from mlsys_assets.metadata import markdown_table


def transaction_checks(con: duckdb.DuckDBPyConnection, staged: list[StagedFile], max_amount: float) -> list[AssetCheckResult]:
    null_keys, run_rows, table_rows = con.execute(
        f"""
        SELECT (SELECT count(*) FROM raw.transactions WHERE {IN_RUN}
                  AND (transaction_id IS NULL OR customer_id IS NULL OR event_time IS NULL)),
               (SELECT count(*) FROM raw.transactions WHERE {IN_RUN}),
               (SELECT count(*) FROM raw.transactions)
        """
    ).fetchone()
    # Only the run's ids can have become duplicates. When the run holds every row of the table they are
    # grouped as they are; otherwise they are looked up in the table (a semi-join on the run's ids), so a
    # daily run does not group the whole history.
    ids = "run" if run_rows == table_rows else \
        "raw.transactions WHERE transaction_id IN (SELECT transaction_id FROM run)"
    duplicate_ids = con.execute(
        f"""
        WITH run AS (SELECT transaction_id FROM raw.transactions WHERE {IN_RUN})
        SELECT count(*) FROM (SELECT transaction_id FROM {ids} GROUP BY ALL HAVING count(*) > 1)
        """
    ).fetchone()[0]
    bad_amounts = con.execute(
        f"SELECT count(*) FROM raw.transactions WHERE {IN_RUN} AND (amount < 0 OR amount > ?)", [max_amount],
    ).fetchone()[0]
    return [
        schema_check(con, "raw.transactions", TRANSACTIONS_SCHEMA),
        AssetCheckResult(check_name="keys", passed=null_keys == 0 and duplicate_ids == 0,
                         metadata={"null_keys": null_keys, "duplicate_transaction_ids": duplicate_ids}),
        AssetCheckResult(check_name="amount_rules", passed=bad_amounts == 0,
                         metadata={"rows_out_of_range": bad_amounts, "max_amount": max_amount}),
        reconciliation_check(con, staged, "raw.transactions"),
        known_customers_check(con, IN_RUN),
        no_personal_data_check(con),
    ]


def run_metadata(con: duckdb.DuckDBPyConnection, staged: list[StagedFile], fmt: FeedFormat, missing: list[dt.date],
                 unloadable: dict[str, str], refusals: dict[str, str]) -> dict:
    """The run's totals, quarantine breakdown and sample, a preview, and what did not load."""
    days = sorted(s.file.delivery_date for s in staged)
    loaded, customers, zero_amount = con.execute(
        f"SELECT count(*), count(DISTINCT customer_id), count(*) FILTER (WHERE amount = 0) "
        f"FROM raw.transactions WHERE {IN_RUN}"
    ).fetchone()
    quarantined, excluded = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE reason = ?) FROM raw.quarantine "
        f"WHERE feed = 'transactions' AND {IN_RUN}", [EXCLUDED_REASON]
    ).fetchone()
    return {
        "dagster/row_count": loaded,
        "rows_quarantined": quarantined,
        # Part of rows_quarantined: rows the mapping's `exclude` filter took out (cancelled orders, say).
        "rows_excluded_by_mapping": excluded,
        "exclude_filter": fmt.exclude_text() or "none",
        # Sales of 0.00 are purchases with no spend: they load and count as a purchase day.
        "zero_amount_rows": zero_amount,
        "customers": customers,
        "files": len(days),
        "partitions": f"{days[0]} … {days[-1]} ({len(days)} days with a file)",
        # The run's total; each partition's own count is its dagster/row_count.
        "run_rows_loaded": loaded,
        "days_without_file": MetadataValue.json([str(d) for d in missing]),
        **_quarantine_tables(con),
        "ignored_columns": MetadataValue.json(sorted({c for s in staged for c in s.ignored_columns})),
        "files_without_exact_line_numbers": MetadataValue.json(
            [s.file.source_name for s in staged if not s.lines_exact]
        ),
        "table_rows_total": con.execute("SELECT count(*) FROM raw.transactions").fetchone()[0],
        # Files of the run that did not load (their days are unchanged), and every landing entry refused.
        "unreadable_files": MetadataValue.json(sorted(f"{p}: {m}" for p, m in unloadable.items())),
        "landing_refusals": MetadataValue.json([f"{name}: {reason}" for name, reason in refusals.items()]),
    }


def _quarantine_tables(con: duckdb.DuckDBPyConnection) -> dict[str, MetadataValue]:
    return {
        "quarantine_by_reason": markdown_table(
            con,
            f"""SELECT reason, column_name AS "column", count(*) AS rows FROM raw.quarantine
                WHERE feed = 'transactions' AND {IN_RUN} GROUP BY ALL ORDER BY rows DESC""",
        ),
        "quarantine_sample": markdown_table(
            con,
            f"""SELECT source_file, line, column_name AS "column", reason, detail FROM raw.quarantine
                WHERE feed = 'transactions' AND {IN_RUN} ORDER BY source_file, line LIMIT 10""",
        ),
        "preview": markdown_table(
            con,
            f"""SELECT transaction_id, customer_id, event_time, amount, quantity, delivery_date
                FROM raw.transactions WHERE {IN_RUN} ORDER BY delivery_date, source_line LIMIT 5""",
        ),
    }


def day_metadata(con: duckdb.DuckDBPyConnection, sources: dict[dt.date, dict]) -> dict[dt.date, dict]:
    """Each loaded day's own figures and landing file: in a range run, one partition must not show the
    run's totals. Only the days of `_delivery_days` (the files that loaded) are returned."""
    rows = {day: counts for day, *counts in con.execute(
        f"""SELECT delivery_date, count(*), count(DISTINCT customer_id), count(*) FILTER (WHERE amount = 0)
            FROM raw.transactions WHERE {IN_RUN} GROUP BY ALL""").fetchall()}
    quarantined = {day: counts for day, *counts in con.execute(
        f"""SELECT delivery_date, count(*), count(*) FILTER (WHERE reason = ?) FROM raw.quarantine
            WHERE feed = 'transactions' AND {IN_RUN} GROUP BY ALL""",
        [EXCLUDED_REASON]).fetchall()}
    by_day = {}
    for (day,) in con.execute("SELECT day FROM _delivery_days ORDER BY day").fetchall():
        loaded, customers, zero_amount = rows.get(day, (0, 0, 0))
        bad, excluded = quarantined.get(day, (0, 0))
        by_day[day] = {"dagster/row_count": loaded, "customers": customers, "zero_amount_rows": zero_amount,
                       "rows_quarantined": bad, "rows_excluded_by_mapping": excluded, **sources[day]}
    return by_day
