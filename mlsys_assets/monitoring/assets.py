"""Monitoring layer: Evidently reports as assets, their history in DuckDB, the report index, and alerts.

Each report asset compares a reference with the current data for its day, saves the HTML under
data/reports/<kind>/<day>.html, stores the run (with the full Evidently snapshot) in monitoring.reports
and one row per metric and test in monitoring.metrics, rewrites data/reports/index.html, and raises its
alert as an asset check. The drift_retraining sensor reacts to those checks.
"""

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from mlsys_assets.features.snapshot import CATEGORICAL_FEATURES, NUMERIC_FEATURES, WINDOWS_DAYS
from mlsys_assets.ml.metrics import churn_metrics, spend_metrics
from mlsys_assets.ml.model_store import ModelVersion, NoProductionModelError, production_version
from mlsys_assets.monitoring.report_index import prune_reports, refresh_index
from mlsys_assets.monitoring.report_metadata import number, report_day, report_metadata, rounded
from mlsys_assets.partitions import daily_partitions, recent_days_eager
from mlsys_assets.resources import (
    WAREHOUSE_POOL,
    ForecastSettings,
    LandingZone,
    MonitoringSettings,
    Warehouse,
)
from mlsys_assets.storage import transaction

if TYPE_CHECKING:
    from mlsys_assets.monitoring.evidently_reports import ReportResult

MONITORING_TABLES_DDL = (Path(__file__).parent / "monitoring_tables.sql").read_text()
# The season features are the same for every customer of a day and move with the calendar by design.
DRIFT_NUMERIC = [f for f in NUMERIC_FEATURES if not f.startswith("season_")]
# Activity within a fixed window keeps its distribution over all customers while the business is stable, as
# long as the shop had existed for that window at the earliest training day; the training rows span a year of
# as-of days, so the season is in the reference too. The same holds for per-purchase averages and the
# segment mix. Tenure, recency, lifetime totals and maxima, gap statistics, the BTYD state, and windows
# longer than the shop's history at training time all grow with the shop's and its customers' age: a year
# of training rows against today's snapshot differs in them in any shop younger than its customers'
# lifetimes (measured on the stable demo: normed Wasserstein 0.2 to 1.0), so they are shown with their
# scores but raise no alert.
STATIONARY_FEATURES = ("avg_basket", "avg_items", *CATEGORICAL_FEATURES)


def _evidently():
    """The report engine, imported on first use: Evidently takes ~3 s to import and only report runs need it."""
    from mlsys_assets.monitoring import evidently_reports

    return evidently_reports


def _production(landing: LandingZone) -> dict[str, ModelVersion]:
    try:
        return {name: production_version(landing.layout.serving, name) for name in ("ltv", "churn")}
    except NoProductionModelError as exc:
        raise Failure(description=str(exc)) from exc


def _reference(version: ModelVersion, split: str) -> pd.DataFrame:
    """The production model's training rows ("train") or its holdout day ("holdout"), with its predictions."""
    reference = pd.read_parquet(version.reference_file) if version.reference_file.exists() else None
    if reference is None or "split" not in reference.columns:
        raise Failure(description=f"{version.version} has no reference sample by split ({version.reference_file}): "
                                  "it predates monitoring; retrain (`mlsys train`) so the production model carries one")
    return reference[reference["split"] == split]


def _store(
    context: AssetExecutionContext, warehouse: Warehouse, landing: LandingZone, settings: MonitoringSettings,
    result: "ReportResult", day: dt.date, model_version: str | None,
) -> str:
    """Record the run and its metrics, prune old HTML, rewrite the index and its dashboard; returns the report id."""
    report_id = f"{result.kind}:{day}:{context.run_id[:8]}"
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    metric_rows = [
        (report_id, now, result.kind, day, model_version, m["metric"], m.get("column"), m.get("value"))
        for m in result.metrics
    ] + [
        (report_id, now, result.kind, day, model_version, f"test: {t['test']}", t.get("column"),
         1.0 if t["status"] == "SUCCESS" else 0.0)
        for t in result.tests
    ]
    with warehouse.connect() as con:
        con.execute(MONITORING_TABLES_DDL)
        with transaction(con):
            con.execute(
                "INSERT INTO monitoring.reports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [report_id, result.kind, day, model_version, result.reference_rows, result.current_rows, result.passed,
                 json.dumps(result.headline, default=float), str(result.html_path), result.snapshot_json, now,
                 context.run_id],
            )
            if metric_rows:
                con.executemany("INSERT INTO monitoring.metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?)", metric_rows)
        # Pruned first, so the index marks a pruned report as such; written on this connection, which sees
        # the report just stored and the registry, evaluations and predictions the dashboard shows.
        prune_reports(landing.layout.reports, result.kind, settings.report_retention_days)
        refresh_index(con, landing.layout.reports, landing.layout.serving, settings.drift_share_threshold)
    return report_id


def default_alert_features(history_days: int) -> list[str]:
    """The stationary features, with the activity windows the shop had fully lived at the earliest training day."""
    windows = [f"{kind}_{days}" for days in WINDOWS_DAYS if days <= history_days for kind in ("tx", "spend", "qty")]
    return [*windows, *STATIONARY_FEATURES]


def _alert_features(settings: MonitoringSettings, history_days: int) -> tuple[list[str], list[str], list[str]]:
    """(numerical, categorical) features that raise the alert, and the numerical ones shown for context."""
    chosen = default_alert_features(history_days) if settings.alert_features is None else list(settings.alert_features)
    unknown = sorted(set(chosen) - set(DRIFT_NUMERIC) - set(CATEGORICAL_FEATURES))
    if unknown:
        raise Failure(description=f"MonitoringSettings.alert_features names unknown feature(s) {unknown}; "
                                  f"choose from {DRIFT_NUMERIC + list(CATEGORICAL_FEATURES)}")
    numerical = [f for f in DRIFT_NUMERIC if f in chosen]
    categorical = [f for f in CATEGORICAL_FEATURES if f in chosen]
    return numerical, categorical, [f for f in DRIFT_NUMERIC if f not in chosen]


def _drift_options(settings: MonitoringSettings) -> dict:
    # Fixed methods: Evidently would otherwise switch to p-value tests below 1,000 reference rows.
    return {"num_method": "wasserstein", "num_threshold": settings.numeric_drift_threshold,
            "cat_method": "jensenshannon", "cat_threshold": settings.categorical_drift_threshold,
            "row_cap": settings.row_cap, "seed": settings.seed}


def _drift_check(name: str, result: "ReportResult", settings: MonitoringSettings, watched: list[str]) -> AssetCheckResult:
    drifted = set(result.headline.get("drifted_column_names", []))
    share = float(result.headline.get("drift_share", 0.0))
    watched_drifted = sorted(drifted & set(watched))
    return AssetCheckResult(
        check_name=name,
        passed=share <= settings.drift_share_threshold and not watched_drifted,
        severity=AssetCheckSeverity(settings.alert_severity),
        metadata={"drift_share": number(share),
                  "threshold": MetadataValue.float(settings.drift_share_threshold),
                  "watched_columns_drifted": MetadataValue.json(watched_drifted),
                  "drifted_columns": MetadataValue.json(sorted(drifted))},
    )


def report_asset(name: str, *, deps: list[list[str]], description: str, check: str, check_description: str):
    """The shape every report asset shares: `monitoring/<name>`, daily, one partition per run (each day links its
    own report), a warehouse step, following new data for the recent days, and one alert check."""
    return asset(
        key=["monitoring", name], group_name="monitoring", partitions_def=daily_partitions,
        backfill_policy=BackfillPolicy.multi_run(1), deps=[AssetDep(dep) for dep in deps], pool=WAREHOUSE_POOL,
        kinds={"evidently"}, automation_condition=recent_days_eager, description=description,
        check_specs=[AssetCheckSpec(check, asset=["monitoring", name], description=check_description)],
    )


@report_asset(
    "feature_drift_report", deps=[["features", "customer_features"], ["ml", "model_registry"]],
    description="Evidently data drift: the production LTV model's training features (its reference sample) against "
    "the day's feature snapshot; the alert features are tested, the age-like ones shown untested. "
    "HTML under `data/reports/feature_drift/<day>.html`.",
    check="feature_drift", check_description="Share of drifted features at most drift_share_threshold, and none of "
    "the production model's most important features drifted.",
)
def feature_drift_report(
    context: AssetExecutionContext, warehouse: Warehouse, landing: LandingZone, settings: MonitoringSettings
) -> MaterializeResult:
    day = report_day(context)
    versions = _production(landing)
    reference = _reference(versions["ltv"], "train")
    with warehouse.connect(read_only=True) as con:
        current = con.execute("SELECT * FROM features.customer_features WHERE as_of = ?", [day]).df()
        first_day = con.execute("SELECT min(event_date) FROM raw.transactions").fetchone()[0]
    if current.empty:
        raise Failure(description=f"no feature snapshot as of {day}: materialize features/customer_features for it first")
    history_days = (pd.Timestamp(reference["as_of"].min()).date() - first_day).days + 1
    numerical, categorical, untested = _alert_features(settings, history_days)
    importance = versions["ltv"].card().get("feature_importance", {})
    ranked = [f for f in sorted(importance, key=importance.get, reverse=True) if f in numerical + categorical]
    watched = sorted(set(ranked[: settings.watched_top_features]) | set(categorical))
    columns = numerical + categorical + untested
    result = _evidently().drift_report(
        "feature_drift", reference[columns], current[columns], numerical, categorical,
        landing.layout.reports / "feature_drift" / f"{day}.html", context_numerical=untested,
        title=f"Feature drift {day}: training sample of {versions['ltv'].version} vs the day's snapshot "
              f"(alert features tested; {len(untested)} age-like features shown untested)",
        **_drift_options(settings),
    )
    report_id = _store(context, warehouse, landing, settings, result, day, versions["ltv"].version)
    return MaterializeResult(
        metadata={**report_metadata(result, report_id, landing.layout.reports, len(current)),
                  "watched_features": MetadataValue.json(watched)},
        check_results=[_drift_check("feature_drift", result, settings, watched)],
    )


@report_asset(
    "prediction_drift_report", deps=[["predictions", "customer_predictions"]],
    description="Evidently drift of the forecasts: the production models' predictions on their newest backtest "
    "cutoff (the holdout day) against the day's predictions (predicted spend and churn probability). "
    "HTML under `data/reports/prediction_drift/<day>.html`.",
    check="prediction_drift", check_description="Neither forecast's distribution drifted from the holdout day's.",
)
def prediction_drift_report(
    context: AssetExecutionContext, warehouse: Warehouse, landing: LandingZone, settings: MonitoringSettings
) -> MaterializeResult:
    day = report_day(context)
    versions = _production(landing)
    # The holdout day is one cross-section like the day's, and the newest the models were validated on:
    # forecasts already account for the season, while a year of training rows mixes shop ages (the churn
    # probability rises as lapsed customers accumulate).
    ltv_reference = _reference(versions["ltv"], "holdout")[["as_of", "customer_id", "prediction"]]
    churn_reference = _reference(versions["churn"], "holdout")[["as_of", "customer_id", "prediction"]]
    reference = ltv_reference.merge(churn_reference, on=["as_of", "customer_id"], suffixes=("_spend", "_churn")).rename(
        columns={"prediction_spend": "predicted_spend", "prediction_churn": "churn_probability"})
    cutoff = reference["as_of"].max()
    with warehouse.connect(read_only=True) as con:
        current = con.execute(
            "SELECT predicted_spend, churn_probability FROM predictions.customer_predictions WHERE as_of = ?", [day]
        ).df()
    if current.empty:
        raise Failure(description=f"no predictions as of {day}: materialize predictions/customer_predictions for it first")
    columns = ["predicted_spend", "churn_probability"]
    result = _evidently().drift_report(
        "prediction_drift", reference[columns], current[columns], columns, [],
        landing.layout.reports / "prediction_drift" / f"{day}.html",
        title=f"Prediction drift {day}: forecasts on the holdout day {pd.Timestamp(cutoff).date()} vs the day's",
        **_drift_options(settings),
    )
    version = f"{versions['ltv'].version},{versions['churn'].version}"
    report_id = _store(context, warehouse, landing, settings, result, day, version)
    return MaterializeResult(
        metadata=report_metadata(result, report_id, landing.layout.reports, len(current)),
        check_results=[_drift_check("prediction_drift", result, settings, columns)],
    )


@report_asset(
    "model_performance_report", deps=[["predictions", "customer_predictions"], ["raw", "transactions"]],
    description="Evidently regression and classification quality of the forecasts made H days before the day, "
    "against what those customers actually did since: runs once labels have matured. It has no "
    "reference dataset: its check compares the matured metrics with the models' own holdout "
    "evaluation. HTML under `data/reports/model_performance/<day>.html`.",
    check="performance_drop", check_description="Matured churn AUC and spend Gini within performance_tolerance of the "
    "model's own holdout evaluation.",
)
def model_performance_report(
    context: AssetExecutionContext, warehouse: Warehouse, landing: LandingZone, settings: MonitoringSettings,
    forecast: ForecastSettings,
) -> MaterializeResult:
    day = report_day(context)
    made_on = day - dt.timedelta(days=forecast.horizon_days)
    with warehouse.connect(read_only=True) as con:
        frame = con.execute(
            """
            SELECT p.customer_id, p.predicted_spend, p.churn_probability, p.ltv_version, p.churn_version,
                   coalesce(sum(t.amount), 0)::DOUBLE AS actual_spend, (count(t.transaction_id) = 0)::INTEGER AS churned
            FROM predictions.customer_predictions p
            LEFT JOIN raw.transactions t
              ON t.customer_id = p.customer_id AND t.event_date > p.as_of AND t.event_date <= ?
            WHERE p.as_of = ?
            GROUP BY ALL
            """,
            [day, made_on],
        ).df()
    if frame.empty:
        context.log.info("no predictions made on %s: labels for %s have not matured yet", made_on, day)
        return MaterializeResult(
            metadata={"status": f"waiting: no predictions as of {made_on} (H = {forecast.horizon_days} days before)"},
            check_results=[AssetCheckResult(check_name="performance_drop", passed=True,
                                            metadata={"status": "labels not matured"})],
        )
    result = _evidently().performance_report(
        frame, landing.layout.reports / "model_performance" / f"{day}.html",
        spend_actual="actual_spend", spend_predicted="predicted_spend", churn_actual="churned",
        churn_probability="churn_probability", row_cap=settings.row_cap, seed=settings.seed,
    )
    ltv_version, churn_version = frame["ltv_version"].iloc[0], frame["churn_version"].iloc[0]
    report_id = _store(context, warehouse, landing, settings, result, day, f"{ltv_version},{churn_version}")
    matured = {**spend_metrics(frame["actual_spend"], frame["predicted_spend"]),
               **churn_metrics(frame["churned"], frame["churn_probability"])}
    expected = _holdout_metrics(landing, {"ltv": ltv_version, "churn": churn_version})
    return MaterializeResult(
        metadata={**report_metadata(result, report_id, landing.layout.reports, len(frame)),
                  "predictions_made_on": str(made_on),
                  "compared_with": "no reference dataset: the check compares the matured gini and roc_auc with "
                                   "the models' holdout evaluation (expected_metrics)",
                  "matured_metrics": MetadataValue.json(rounded(matured)),
                  "expected_metrics": MetadataValue.json(rounded(expected))},
        check_results=[_performance_check(matured, expected, settings)],
    )


def _holdout_metrics(landing: LandingZone, versions: dict[str, str]) -> dict[str, float]:
    """Each model's evaluation at its newest backtest cutoff (`metrics.holdout` of its card), merged."""
    expected = {}
    for name, version in versions.items():
        path = landing.layout.models / name / version / "card.json"
        if path.exists():
            expected.update(json.loads(path.read_text())["metrics"]["holdout"])
    return expected


def _performance_check(matured: dict, expected: dict, settings: MonitoringSettings) -> AssetCheckResult:
    drops = {m: expected[m] - matured[m] for m in ("gini", "roc_auc") if m in expected and not pd.isna(matured[m])}
    return AssetCheckResult(
        check_name="performance_drop",
        passed=all(drop <= settings.performance_tolerance for drop in drops.values()),
        severity=AssetCheckSeverity(settings.alert_severity),
        metadata={"drop_vs_evaluation": MetadataValue.json(rounded(drops)),
                  "tolerance": MetadataValue.float(settings.performance_tolerance)},
    )


@report_asset(
    "data_quality_report", deps=[["raw", "transactions"]],
    description="Evidently data summary and drift of the newest week of raw transactions against the four weeks "
    "before it (amount, quantity, hour and weekday of purchase). "
    "HTML under `data/reports/data_quality/<day>.html`.",
    check="data_quality", check_description="Warns when the newest week's transactions drift from the previous weeks.",
)
def data_quality_report(
    context: AssetExecutionContext, warehouse: Warehouse, landing: LandingZone, settings: MonitoringSettings
) -> MaterializeResult:
    day = report_day(context)
    query = """
        SELECT amount::DOUBLE AS amount, coalesce(quantity, 1)::DOUBLE AS quantity,
               hour(event_time)::DOUBLE AS hour_of_day, dayname(event_date) AS weekday, delivery_date
        FROM raw.transactions WHERE delivery_date > ? AND delivery_date <= ?
    """
    with warehouse.connect(read_only=True) as con:
        current = con.execute(query, [day - dt.timedelta(days=7), day]).df()
        reference = con.execute(query, [day - dt.timedelta(days=35), day - dt.timedelta(days=7)]).df()
    result = _evidently().data_quality_report(
        reference, current, ["amount", "quantity", "hour_of_day"], ["weekday"],
        landing.layout.reports / "data_quality" / f"{day}.html", row_cap=settings.row_cap, seed=settings.seed,
    )
    report_id = _store(context, warehouse, landing, settings, result, day, None)
    # The report compares a week, but the partition is the day: its row count is the day's delivery.
    day_rows = int((current["delivery_date"] == pd.Timestamp(day)).sum())
    return MaterializeResult(
        metadata=report_metadata(result, report_id, landing.layout.reports, day_rows),
        check_results=[AssetCheckResult(check_name="data_quality", passed=result.passed, severity=AssetCheckSeverity.WARN,
                                        metadata={"headline": MetadataValue.json(rounded(result.headline))})],
    )
