"""Ingest layer: landing files -> raw.transactions, raw.customers and raw.quarantine.

A run stages every file of its partitions as text (reader.py), judges each row in SQL
(validate_*.sql), and then replaces its partitions in one transaction: a file that cannot be read
fails the run before anything is written, and a failed write rolls back to the previous state.
The per-day load is in transactions_load.py (its checks and metadata in transactions_metadata.py),
the customers export in customers_load.py; this module holds the asset definitions.
"""

from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    BackfillPolicy,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from mlsys_assets.ingest import customers_load, transactions_load
from mlsys_assets.ingest.pii import LocalKeyRefused, pii_key, register_pii_hash
from mlsys_assets.ingest.checks import CUSTOMERS_SCHEMA, TRANSACTIONS_SCHEMA
from mlsys_assets.ingest.raw_tables import RAW_TABLES_DDL
from mlsys_assets.ingest.transactions_metadata import day_metadata, run_metadata, transaction_checks
from mlsys_assets.partitions import daily_partitions
from mlsys_assets.resources import WAREHOUSE_POOL, LandingZone, Warehouse, combined_digest, file_fingerprint


class TransactionsIngestConfig(Config):
    max_amount: float = Field(
        default=100_000.0, description="Largest plausible single transaction; above it a row is quarantined."
    )
    max_late_days: int = Field(
        default=365, description="Oldest event date a delivery may carry, in days before its delivery day."
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
    files, missing, fmt, refused = transactions_load.transaction_files(transactions_load.partition_days(context), landing)
    sources = transactions_load.source_fingerprints(files)
    with warehouse.connect() as con:
        con.execute(RAW_TABLES_DDL)
        staged, unloadable = transactions_load.stage_transactions(con, files, refused, fmt, landing.layout.landing)
        transactions_load.validate_transactions(con, fmt, config.max_amount, config.max_late_days)
        transactions_load.replace_delivery_days(con, staged, fmt, context.run_id)
        check_results = transaction_checks(con, staged, config.max_amount)
        metadata = run_metadata(con, staged, fmt, missing, unloadable, landing.transaction_refusals())
        by_day = day_metadata(con, sources)
    if unloadable:
        transactions_load.fail_unloaded_days(context, unloadable, by_day, metadata)
    transactions_load.record_day_metadata(context, by_day, missing)
    return MaterializeResult(metadata=metadata, check_results=check_results)


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
                check_results=customers_load.empty_export_checks(con),
            )
        try:
            simulated = (landing.layout.simulation / "ground_truth.parquet").exists()
            register_pii_hash(con, pii_key(landing.layout.secrets, context.log, simulated=simulated))
        except LocalKeyRefused as exc:
            raise Failure(description=f"{exc} Nothing was written.") from exc
        staged = customers_load.stage_customers(con, paths, fmt, landing_root)
        customers_load.validate_customers(con, fmt)
        customers_load.replace_customers(con, staged, fmt, context.run_id)
        check_results, counts = customers_load.customer_checks_and_counts(con, staged)
        metadata = {
            **counts,
            "source_digest": source_digest,
            "files": MetadataValue.json([str(p.relative_to(landing_root)) for p in paths]),
            **customers_load.customer_tables(con),
        }
    return MaterializeResult(metadata=metadata, check_results=check_results)
