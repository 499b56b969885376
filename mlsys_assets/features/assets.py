"""Features layer: customer x day aggregates and point-in-time as-of snapshots (the offline feature store)."""

import datetime as dt
from pathlib import Path
from string import Template

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    BackfillPolicy,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
import pandas as pd
from pydantic import Field

from mlsys_assets.features.snapshot import FEATURES, build_snapshot
from mlsys_assets.metadata import ddl_column_schema, markdown_table, table_columns
from mlsys_assets.partitions import daily_partitions, flow_on_new_data, partition_days, recent_days_eager
from mlsys_assets.resources import WAREHOUSE_POOL, ForecastSettings, Warehouse
from mlsys_assets.storage import transaction

SQL_DIR = Path(__file__).parent
FEATURE_TABLES_DDL = (SQL_DIR / "feature_tables.sql").read_text()

@asset(
    key=["features", "customer_daily"],
    group_name="features",
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[AssetDep(["raw", "transactions"])],
    automation_condition=flow_on_new_data,
    pool=WAREHOUSE_POOL,
    kinds={"duckdb"},
    description=(
        "Customer x day aggregates (transactions, spend, items, largest sale) per delivery day: the compact "
        "history every feature snapshot is computed from. Incremental: a partition reads only its own "
        "delivery days of raw.transactions."
    ),
    metadata={"dagster/column_schema": ddl_column_schema(FEATURE_TABLES_DDL, "features.customer_daily"),
              "dagster/table_name": "features.customer_daily"},
    check_specs=[AssetCheckSpec("matches_raw", asset=["features", "customer_daily"], blocking=True,
                                description="Spend and transaction totals equal raw.transactions for the partitions written.")],
)
def customer_daily(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
    start, end = partition_days(context)
    with warehouse.connect() as con:
        con.execute(FEATURE_TABLES_DDL)

        with transaction(con):
            con.execute("DELETE FROM features.customer_daily WHERE delivery_date BETWEEN ? AND ?", [start, end])
            con.execute(Template((SQL_DIR / "customer_daily.sql").read_text()).substitute(start=start, end=end))

        rows, customers, spend, transactions = con.execute(
            "SELECT count(*), count(DISTINCT customer_id), coalesce(sum(spend), 0), coalesce(sum(transactions), 0) "
            "FROM features.customer_daily WHERE delivery_date BETWEEN ? AND ?", [start, end]
        ).fetchone()
        raw_spend, raw_transactions = con.execute(
            "SELECT coalesce(sum(amount), 0), count(*) FROM raw.transactions WHERE delivery_date BETWEEN ? AND ?",
            [start, end],
        ).fetchone()
        return MaterializeResult(
            metadata={
                "dagster/row_count": rows,
                "customers": customers,
                "days": f"{start} … {end}",
                "spend": float(spend),
                "preview": markdown_table(
                    con, "SELECT * FROM features.customer_daily WHERE delivery_date BETWEEN ? AND ? "
                    "ORDER BY delivery_date, customer_id LIMIT 5", [start, end]),
            },
            check_results=[AssetCheckResult(
                check_name="matches_raw",
                passed=spend == raw_spend and transactions == raw_transactions,
                metadata={"spend": float(spend), "raw_spend": float(raw_spend),
                          "transactions": int(transactions), "raw_transactions": int(raw_transactions)},
            )],
        )


def _newest_delivery(con, end: dt.date) -> dt.date:
    """The data's clock: "today" is the newest delivered day. A snapshot after it would describe days the
    shop has not delivered (every customer's recency growing with the wall clock), so it is refused."""
    newest = con.execute("SELECT max(delivery_date) FROM raw.transactions").fetchone()[0]
    if newest is None:
        raise Failure(description="raw.transactions is empty: run `mlsys ingest` first")
    if end > newest:
        raise Failure(description=f"no snapshot as of {end}: the newest delivered day is {newest}, and a snapshot "
                                  "is taken only for days the data has reached (materialize up to that day)")
    return newest


class CustomerFeaturesConfig(Config):
    retention_days: int = Field(
        default=35, description="Daily snapshots kept; older ones are deleted (training grids live in ml.training_examples)."
    )


@asset(
    key=["features", "customer_features"],
    group_name="features",
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[AssetDep(["features", "customer_daily"]), AssetDep(["raw", "customers"])],
    automation_condition=recent_days_eager,
    pool=WAREHOUSE_POOL,
    kinds={"duckdb"},
    description=(
        "As-of feature snapshots, one row per customer known by the end of the day (signed up or bought by "
        "then), from data delivered by then only: recency, counts/spend/items over 30/90/180/365 days and "
        "lifetime, tenure, purchase gaps and trend, basket, signup age, country and channel, and the "
        "BG/NBD + Gamma-Gamma baseline's forecasts. The newest days are kept (retention_days)."
    ),
    metadata={"dagster/table_name": "features.customer_features"},
    check_specs=[AssetCheckSpec("point_in_time", asset=["features", "customer_features"], blocking=True,
                                description="No snapshot row uses a purchase after its as-of day; one row per customer and day.")],
)
def customer_features(
    context: AssetExecutionContext, config: CustomerFeaturesConfig, warehouse: Warehouse, forecast: ForecastSettings
) -> MaterializeResult:
    start, end = partition_days(context)
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    with warehouse.connect() as con:
        newest = _newest_delivery(con, end)
        snapshot = build_snapshot(con, days, forecast.horizon_days)
        rebuilt = _store_snapshot(con, snapshot, start, end, newest, config.retention_days)
        leaks, duplicates = con.execute(POINT_IN_TIME_SQL, [start, end]).fetchone()
        kept = con.execute("SELECT min(as_of), max(as_of), count(DISTINCT as_of) FROM features.customer_features").fetchone()
        return MaterializeResult(
            metadata={
                "dagster/row_count": len(snapshot),
                "as_of_days": f"{start} … {end}",
                "customers_per_day": int(snapshot.groupby("as_of").size().mean()) if len(snapshot) else 0,
                "buyers_share": float(snapshot["purchase_days"].gt(0).mean()) if len(snapshot) else 0.0,
                "snapshots_kept": f"{kept[0]} … {kept[1]} ({kept[2]} days)",
                "rebuilt_for_new_feature_definition": rebuilt,
                "features": MetadataValue.json(list(FEATURES)),
                "preview": markdown_table(
                    con, "SELECT * EXCLUDE (rfm_frequency, rfm_recency, rfm_age, rfm_repeat_spend) "
                    "FROM features.customer_features WHERE as_of = ? ORDER BY spend_lifetime DESC LIMIT 5", [end]),
            },
            check_results=[AssetCheckResult(
                check_name="point_in_time", passed=leaks == 0 and duplicates == 0,
                metadata={"rows_with_future_activity": leaks, "duplicate_rows": duplicates},
            )],
        )


def _store_snapshot(con, snapshot: pd.DataFrame, start, end, newest, retention_days: int) -> bool:
    """Replace the days' snapshot rows and prune old days, in one transaction; True when the table was
    rebuilt because the feature definition (its columns) changed."""
    con.register("_snapshot_frame", snapshot)
    stored = [name for name, _ in table_columns(con, "features.customer_features")]
    rebuilt = bool(stored) and stored != list(snapshot.columns)
    with transaction(con):
        if rebuilt:
            # The feature definition changed: old snapshots cannot sit beside new ones.
            con.execute("DROP TABLE features.customer_features")
        con.execute("CREATE TABLE IF NOT EXISTS features.customer_features AS "
                    "SELECT * REPLACE (as_of::DATE AS as_of) FROM _snapshot_frame LIMIT 0")
        con.execute("DELETE FROM features.customer_features WHERE as_of BETWEEN ? AND ?", [start, end])
        con.execute("INSERT INTO features.customer_features BY NAME SELECT * REPLACE (as_of::DATE AS as_of) FROM _snapshot_frame")
        # Days this run just wrote stay until the next run, so an old day can be backfilled and scored.
        # Counted from the newest snapshot that has data (never a day past the newest delivery), so a
        # stray snapshot dated after the data cannot push the real newest one out.
        con.execute(
            "DELETE FROM features.customer_features WHERE as_of <= "
            "least((SELECT max(as_of) FROM features.customer_features), ?::DATE) - ?::INTEGER "
            "AND as_of NOT BETWEEN ? AND ?",
            [newest, retention_days, start, end],
        )
    con.unregister("_snapshot_frame")
    return rebuilt


# point_in_time: rows that describe activity after their as-of day, duplicate rows.
POINT_IN_TIME_SQL = """
    SELECT (SELECT count(*) FROM features.customer_features WHERE as_of BETWEEN $1 AND $2
              AND (recency_days < 0 OR tenure_days < 0)),
           (SELECT count(*) - count(DISTINCT (as_of, customer_id)) FROM features.customer_features
              WHERE as_of BETWEEN $1 AND $2)
"""
