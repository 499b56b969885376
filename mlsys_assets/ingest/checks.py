"""Checks on the raw layer: the freshness check runs on its own clock; the other checks here are evaluated by
raw_transactions and raw_customers with each load (this module does not import the assets, so they can import it)."""

import datetime as dt

import duckdb
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    AutomationCondition,
    Config,
    MetadataValue,
    asset_check,
)
from pydantic import Field

from mlsys_assets.ingest.landing_file import StagedFile
from mlsys_assets.ingest.pii import email_like_columns
from mlsys_assets.ingest.raw_tables import RAW_TABLES_DDL
from mlsys_assets.metadata import ddl_column_schema, table_columns
from mlsys_assets.resources import LandingZone

RAW_TRANSACTIONS = AssetKey(["raw", "transactions"])
# The declared schemas: the assets' column schema in the UI and what the schema checks compare with.
TRANSACTIONS_SCHEMA = ddl_column_schema(RAW_TABLES_DDL, "raw.transactions")
CUSTOMERS_SCHEMA = ddl_column_schema(RAW_TABLES_DDL, "raw.customers")


class FreshnessConfig(Config):
    max_unloaded_days: int = Field(
        default=0, description="How many delivered days (landing files) may wait unloaded before it warns.")


@asset_check(
    asset=RAW_TRANSACTIONS,
    description="Every delivered day is loaded: the landing zone's newest day is the data's today, and no landing "
                "day waits unloaded (evaluated daily at 09:00 UTC; the wall-clock age of the data is shown, not judged).",
    automation_condition=AutomationCondition.cron_tick_passed("0 9 * * *", cron_timezone="UTC"),
)
def transactions_freshness(
    context: AssetCheckExecutionContext, config: FreshnessConfig, landing: LandingZone
) -> AssetCheckResult:
    # Partition status lives in the Dagster instance, so this check never opens the warehouse.
    loaded = set(context.instance.get_materialized_partitions(RAW_TRANSACTIONS))
    try:
        delivered = sorted(landing.transaction_files())
    except ValueError as exc:  # the landing zone itself is broken: say so instead of crashing
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.WARN, metadata={"problem": str(exc)})
    waiting = [day for day in delivered if day.isoformat() not in loaded]
    newest = delivered[-1] if delivered else None
    return AssetCheckResult(
        passed=bool(delivered) and len(waiting) <= config.max_unloaded_days,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "newest_delivered_day": str(newest),
            "newest_loaded_day": max(loaded, default="none"),
            "delivered_days_not_loaded": len(waiting),
            "first_waiting_days": ", ".join(map(str, waiting[:5])) or "none",
            "wall_clock_days_since_newest_delivery": (dt.date.today() - newest).days if newest else -1,
        },
    )


def known_customers_check(con: duckdb.DuckDBPyConnection, in_run: str) -> AssetCheckResult:
    """WARN when the run's transactions name customers missing from raw.customers, saying why they are missing.

    `in_run` is the SQL condition on raw.transactions that selects the run's rows. Such rows still load (a
    sale is a sale), but those customers have no signup date, country or channel. A customer is missing either
    because its row in the customers export was quarantined (raw.quarantine names its id), or because no
    export lists it at all (an id the shop's customer system does not know; the demo simulator writes a few
    such rows on purpose, as it writes unparseable signup dates).
    """
    if not con.execute("SELECT count(*) FROM raw.customers").fetchone()[0]:
        return AssetCheckResult(check_name="known_customers", passed=True, severity=AssetCheckSeverity.WARN,
                                description="no customers export loaded: nothing to check against",
                                metadata={"unknown_customers": 0, "note": "no customers export loaded"})
    rows, customers, quarantined = con.execute(
        f"""
        WITH unknown AS (
            SELECT customer_id, count(*) AS n FROM raw.transactions
            WHERE {in_run} AND customer_id NOT IN (SELECT customer_id FROM raw.customers) GROUP BY ALL
        ), quarantined AS (  -- ids named by a quarantined customers line (its fields, split on any separator)
            SELECT DISTINCT unnest(regexp_split_to_array(original_text, '[^A-Za-z0-9_-]+')) AS customer_id
            FROM raw.quarantine WHERE feed = 'customers'
        )
        SELECT coalesce(sum(n), 0)::BIGINT, count(*),
               count(*) FILTER (WHERE customer_id IN (SELECT customer_id FROM quarantined))
        FROM unknown
        """
    ).fetchone()
    never = customers - quarantined
    description = (
        f"{_count(rows, 'row')} for {_count(customers, 'customer')} not in raw.customers ({quarantined:,} whose "
        f"customers-export row is quarantined, {never:,} in no customers export); the rows load, these "
        "customers' signup, country and channel are unknown"
    ) if customers else "every customer of the run's transactions is in raw.customers"
    return AssetCheckResult(
        check_name="known_customers",
        passed=customers == 0,
        severity=AssetCheckSeverity.WARN,
        description=description,
        metadata={"unknown_customers": customers, "rows_of_unknown_customers": rows,
                  "customer_row_quarantined": quarantined, "in_no_customers_export": never,
                  "note": "checked against raw.customers"},
    )


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def schema_check(con: duckdb.DuckDBPyConnection, table: str, declared) -> AssetCheckResult:
    """The table has exactly the declared columns and types."""
    expected = [(c.name, c.type.replace(" NOT NULL", "")) for c in declared.columns]
    actual = table_columns(con, table)
    return AssetCheckResult(
        check_name="schema",
        passed=actual == expected,
        metadata={"expected": MetadataValue.json(expected), "actual": MetadataValue.json(actual)},
    )


def reconciliation_check(con: duckdb.DuckDBPyConnection, staged: list[StagedFile], table: str) -> AssetCheckResult:
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


def no_personal_data_check(con: duckdb.DuckDBPyConnection, check_name: str = "no_personal_data") -> AssetCheckResult:
    """Scans every VARCHAR column of every table of the warehouse, one column at a time
    (pii.email_like_columns); the metadata names the columns, never the values."""
    found = email_like_columns(con)
    return AssetCheckResult(
        check_name=check_name,
        passed=not found,
        metadata={"rows_with_an_email_address": sum(found.values()),
                  "columns_with_an_email_address": MetadataValue.json(found)},
    )
