"""Predictions layer: daily scores for every customer, the retention action list, and the online store.

Every row is scored by the production models named in the registry's pointer (never the newest file),
through `ProductionModels.score`, the same function the API uses.
"""

import datetime as dt
import time
from pathlib import Path

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
import numpy as np
import pandas as pd
from pydantic import Field

from mlsys_assets.metadata import ddl_column_schema, markdown_table
from mlsys_assets.ml import registry
from mlsys_assets.ml.model_store import NoProductionModelError
from mlsys_assets.ml.scoring import ProductionModels
from mlsys_assets.partitions import daily_partitions, flow_on_new_data, partition_days, recent_days_eager
from mlsys_assets.resources import WAREHOUSE_POOL, ForecastSettings, LandingZone, Warehouse
from mlsys_assets.storage import atomic_path, transaction

PREDICTION_TABLES_DDL = (Path(__file__).parent / "prediction_tables.sql").read_text()
CUSTOMER_FEATURES, MODEL_REGISTRY = ["features", "customer_features"], ["ml", "model_registry"]
CUSTOMER_PREDICTIONS = ["predictions", "customer_predictions"]

def load_production(warehouse: Warehouse, landing: LandingZone, horizon_days: int, run_id: str) -> ProductionModels:
    """The production models; where nothing has passed a gate yet, BG/NBD + Gamma-Gamma serves."""
    layout = landing.layout
    with warehouse.connect() as con:
        registry.ensure_tables(con)
        registry.ensure_every_target_served(con, layout.models, layout.serving, horizon_days, run_id)
    try:
        return ProductionModels.load(layout.serving)
    except NoProductionModelError as exc:
        raise Failure(description=str(exc)) from exc


@asset(
    key=CUSTOMER_PREDICTIONS,
    group_name="predictions",
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[AssetDep(CUSTOMER_FEATURES), AssetDep(MODEL_REGISTRY)],
    automation_condition=recent_days_eager,
    pool=WAREHOUSE_POOL,
    kinds={"duckdb", "catboost"},
    description=(
        "Every customer known as of the day, scored by the production models: forecast spend and churn "
        "probability over the horizon, a churn-risk segment, the value decile, and the model versions that "
        "made the row. Re-running a day replaces it."
    ),
    metadata={"dagster/column_schema": ddl_column_schema(PREDICTION_TABLES_DDL, "predictions.customer_predictions"),
              "dagster/table_name": "predictions.customer_predictions"},
    check_specs=[AssetCheckSpec("prediction_sanity", asset=CUSTOMER_PREDICTIONS, blocking=True,
                                description="Spend >= 0, churn probability in [0, 1], one row per customer and day, "
                                            "every customer of the snapshot scored.")],
)
def customer_predictions(
    context: AssetExecutionContext, warehouse: Warehouse, landing: LandingZone, forecast: ForecastSettings
) -> MaterializeResult:
    start, end = partition_days(context)
    models = load_production(warehouse, landing, forecast.horizon_days, context.run_id)
    _require_models_for_the_horizon(models, forecast.horizon_days)
    with warehouse.connect() as con:
        con.execute(PREDICTION_TABLES_DDL)
        features = con.execute(
            "SELECT * FROM features.customer_features WHERE as_of BETWEEN ? AND ? ORDER BY as_of, customer_id",
            [start, end],
        ).df()
        if features.empty:
            raise Failure(description=f"no feature snapshot for {start} … {end}: materialize features/customer_features first")
        started = time.perf_counter()
        scored = _scored_rows(models, features)
        score_seconds = time.perf_counter() - started
        _replace_predictions(con, scored, start, end, [forecast.horizon_days, models.ltv.version.version,
                                                       models.churn.version.version, context.run_id])
        bad_values, duplicates, missing = con.execute(PREDICTION_SANITY_SQL, [start, end]).fetchone()
        segments = markdown_table(con, SEGMENTS_SQL, [end])
    return MaterializeResult(
        metadata={
            "dagster/row_count": len(scored),
            "as_of": f"{start} … {end}",
            "ltv_version": models.ltv.version.version,
            "churn_version": models.churn.version.version,
            # The model calls alone, for bench/pipeline.py's comparison with CatBoost called directly.
            "score_seconds": round(score_seconds, 4),
            "forecast_spend_total": float(scored["predicted_spend"].sum()),
            "mean_churn_probability": float(scored["churn_probability"].mean()),
            "by_risk_segment": segments,
        },
        check_results=[AssetCheckResult(
            check_name="prediction_sanity", passed=bad_values == 0 and duplicates == 0 and missing == 0,
            metadata={"out_of_range": bad_values, "duplicates": duplicates, "unscored_customers": missing},
        )],
    )


def _require_models_for_the_horizon(models: ProductionModels, horizon_days: int) -> None:
    trained_for = {m.version.card().get("label_window_days") for m in (models.ltv, models.churn)} - {None}
    if trained_for and trained_for != {horizon_days}:
        raise Failure(description=f"the production models forecast {sorted(trained_for)} days but the horizon is "
                                  f"{horizon_days} (MLSYS_HORIZON_DAYS): retrain with it, or set it back")


def _scored_rows(models: ProductionModels, features: pd.DataFrame) -> pd.DataFrame:
    """The snapshot's rows scored, with each day's value decile (1 = lowest forecast spend)."""
    scored = features[["as_of", "customer_id"]].join(models.score(features))
    scored["as_of"] = scored["as_of"].dt.date
    share = scored.groupby("as_of")["predicted_spend"].rank(method="first", pct=True)
    scored["value_decile"] = np.ceil(share * 10).astype(int)
    return scored


def _replace_predictions(con, scored: pd.DataFrame, start, end, provenance: list) -> None:
    """The days' rows replaced in one transaction; `provenance`: horizon, both versions, run id."""
    con.register("_scored", scored)
    with transaction(con):
        con.execute("DELETE FROM predictions.customer_predictions WHERE as_of BETWEEN ? AND ?", [start, end])
        con.execute(
            """
            INSERT INTO predictions.customer_predictions
            SELECT as_of, customer_id, predicted_spend, churn_probability, risk_segment, value_decile,
                   ?, ?, ?, now(), ? FROM _scored
            """,
            provenance,
        )
    con.unregister("_scored")


# prediction_sanity: values out of range, duplicate rows, snapshot customers left unscored.
PREDICTION_SANITY_SQL = """
    SELECT (SELECT count(*) FROM predictions.customer_predictions WHERE as_of BETWEEN $1 AND $2
              AND (predicted_spend < 0 OR churn_probability NOT BETWEEN 0 AND 1 OR isnan(predicted_spend))),
           (SELECT count(*) - count(DISTINCT (as_of, customer_id)) FROM predictions.customer_predictions
              WHERE as_of BETWEEN $1 AND $2),
           (SELECT count(*) FROM features.customer_features f WHERE f.as_of BETWEEN $1 AND $2
              AND NOT EXISTS (SELECT 1 FROM predictions.customer_predictions p
                              WHERE p.as_of = f.as_of AND p.customer_id = f.customer_id))
"""
SEGMENTS_SQL = """
    SELECT risk_segment, count(*) AS customers, round(avg(churn_probability), 3) AS mean_churn,
           round(sum(predicted_spend), 2) AS forecast_spend
    FROM predictions.customer_predictions WHERE as_of = ? GROUP BY ALL ORDER BY mean_churn
"""


class RetentionTargetsConfig(Config):
    min_value_decile: int = Field(default=10, description="Only customers in this predicted-spend decile or above.")
    min_churn_probability: float = Field(default=0.5, description="Only customers at least this likely to churn.")


@asset(
    key=["predictions", "retention_targets"],
    group_name="predictions",
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[AssetDep(CUSTOMER_PREDICTIONS)],
    automation_condition=recent_days_eager,
    pool=WAREHOUSE_POOL,
    kinds={"duckdb", "csv"},
    description=(
        "The retention team's action list: customers in the top predicted-spend decile whose churn probability "
        "is at least 0.5 (both configurable), ranked by value at risk (forecast spend x churn probability). "
        "Also exported as `data/exports/retention_targets/<day>.csv`."
    ),
    metadata={"dagster/column_schema": ddl_column_schema(PREDICTION_TABLES_DDL, "predictions.retention_targets"),
              "dagster/table_name": "predictions.retention_targets"},
)
def retention_targets(
    context: AssetExecutionContext, config: RetentionTargetsConfig, warehouse: Warehouse, landing: LandingZone
) -> MaterializeResult:
    start, end = partition_days(context)
    with warehouse.connect() as con:
        con.execute(PREDICTION_TABLES_DDL)
        with transaction(con):
            con.execute("DELETE FROM predictions.retention_targets WHERE as_of BETWEEN ? AND ?", [start, end])
            con.execute(
                """
                INSERT INTO predictions.retention_targets
                SELECT as_of, customer_id, predicted_spend, churn_probability, value_decile,
                       predicted_spend * churn_probability AS value_at_risk,
                       row_number() OVER (PARTITION BY as_of ORDER BY predicted_spend * churn_probability DESC, customer_id),
                       ltv_version, churn_version
                FROM predictions.customer_predictions
                WHERE as_of BETWEEN ? AND ? AND value_decile >= ? AND churn_probability >= ?
                """,
                [start, end, config.min_value_decile, config.min_churn_probability],
            )
        counts = dict(con.execute(
            "SELECT as_of, count(*) FROM predictions.retention_targets WHERE as_of BETWEEN ? AND ? GROUP BY ALL",
            [start, end]).fetchall())
        day = start
        while day <= end:
            with atomic_path(landing.layout.retention_export(day)) as temporary:
                con.execute(
                    f"COPY (SELECT * FROM predictions.retention_targets WHERE as_of = ? ORDER BY priority) "
                    f"TO '{temporary}' (HEADER, DELIMITER ',')",
                    [day],
                )
            day += dt.timedelta(days=1)
        preview = markdown_table(
            con, "SELECT priority, customer_id, round(predicted_spend, 2) AS predicted_spend, "
                 "round(churn_probability, 3) AS churn_probability, round(value_at_risk, 2) AS value_at_risk "
                 "FROM predictions.retention_targets WHERE as_of = ? ORDER BY priority LIMIT 10", [end])
    return MaterializeResult(
        metadata={
            "dagster/row_count": sum(counts.values()),
            "targets_on_newest_day": counts.get(end, 0),
            "csv": MetadataValue.path(str(landing.layout.retention_export(end))),
            "rule": f"value decile >= {config.min_value_decile} and churn probability >= {config.min_churn_probability}",
            "top_targets": preview,
        }
    )


@asset(
    key=["predictions", "online_features"],
    group_name="predictions",
    deps=[AssetDep(CUSTOMER_FEATURES), AssetDep(MODEL_REGISTRY)],
    automation_condition=flow_on_new_data,
    pool=WAREHOUSE_POOL,
    kinds={"parquet"},
    description=(
        "The online store: the newest feature snapshot exported to the serving folder (`DataLayout.online_store`) for the "
        "REST API, written to a temporary file and renamed (a reader never sees half a file). The API reads it "
        "and the production pointer; it never opens the warehouse."
    ),
)
def online_features(context: AssetExecutionContext, warehouse: Warehouse, landing: LandingZone) -> MaterializeResult:
    target = landing.layout.online_store
    with warehouse.connect() as con:
        newest = con.execute("SELECT max(as_of) FROM features.customer_features").fetchone()[0]
        if newest is None:
            raise Failure(description="features.customer_features is empty: materialize a snapshot first")
        with atomic_path(target) as temporary:
            con.execute(
                f"COPY (SELECT * FROM features.customer_features WHERE as_of = ? ORDER BY customer_id) "
                f"TO '{temporary}' (FORMAT parquet)",
                [newest],
            )
            rows = con.execute(f"SELECT count(*) FROM read_parquet('{temporary}')").fetchone()[0]
    return MaterializeResult(
        metadata={"dagster/row_count": rows, "as_of": str(newest), "path": MetadataValue.path(str(target))}
    )
