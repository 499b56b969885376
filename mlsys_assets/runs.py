"""Launch the project's jobs from the `mlsys` CLI, recorded in the Dagster instance the UI shows.

With DAGSTER_HOME set (the Makefile sets it to .dagster/), runs land in the same instance as
`make ui`, so everything the CLI did is visible there afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from pathlib import Path

import duckdb
from dagster import AssetCheckEvaluation, AssetKey, DagsterInstance, ExecuteInProcessResult, JobDefinition

from mlsys_assets.automation.drift import evaluate_drift, past_current_alerts
from mlsys_assets.automation.landing import consecutive_ranges
from mlsys_assets.automation.tags import TRIGGER_TAG, range_tags
from mlsys_assets.definitions import defs
from mlsys_assets.monitoring.report_index import refresh_existing_index
from mlsys_assets.partitions import calendar_bounds, calendar_refusal, outside_calendar
from mlsys_assets.recovery import process_tags, recover_dead_runs
from mlsys_assets.resources import LandingZone, Warehouse
from mlsys_assets.settings import PARTITIONS_START_SETTING

# The CLI prints one line per run; Dagster's per-event debug log stays in the instance for the UI.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
Echo = Callable[[str], None]


def instance() -> DagsterInstance:
    return DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()


def run_job(dagster_instance: DagsterInstance, job: JobDefinition, label: str, echo: Echo, tags=None,
            ops_config: dict | None = None) -> ExecuteInProcessResult:
    run_config = {**QUIET_RUN_CONFIG, **({"ops": ops_config} if ops_config else {})}
    # A run killed earlier (kill -9, a crash) still holds its warehouse pool slot: free it, or this run
    # would wait for it forever. The process tags let a later command tell that this run's process died.
    for line in recover_dead_runs(dagster_instance):
        echo(f"recovered: {line}")
    result = job.execute_in_process(
        instance=dagster_instance, raise_on_error=False, run_config=run_config,
        tags={TRIGGER_TAG: "cli", **process_tags(), **(tags or {})},
    )
    echo(f"{label}: {'success' if result.success else 'FAILED'} (run {result.run_id})")
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.error:
            error = event.step_failure_data.error
            # A Failure raised on purpose carries a message for the user: without Dagster's class path.
            echo(error.message.split(": ", 1)[-1].strip() if error.cls_name == "Failure" else error.message.strip())
    return result


def check_line(evaluation: AssetCheckEvaluation) -> str:
    """`check <asset> <check>: passed`, or `FAILED (<severity>)` with one line saying why: the result's own
    description, else what the check asserts."""
    line = f"check {evaluation.asset_key.to_user_string()} {evaluation.check_name}: "
    if evaluation.passed:
        return line + "passed"
    why = evaluation.description or defs.resolve_asset_graph().get_check_spec(evaluation.asset_check_key).description
    return line + f"FAILED ({evaluation.severity.value})" + (f" — {' '.join(why.split())}" if why else "")


def echo_checks(result: ExecuteInProcessResult, echo: Echo) -> None:
    """Every asset check the run evaluated, one line each, so a failed WARN check is never silent."""
    for evaluation in result.get_asset_check_evaluations():
        echo(f"  {check_line(evaluation)}")


def _landing_files(first: dt.date | None, last: dt.date | None) -> dict[dt.date, str]:
    """Delivery day -> landing file name, for the days in [first, last]."""
    landing: LandingZone = defs.resources["landing"]
    return {d: p.name for d, p in landing.transaction_files().items()
            if (first is None or d >= first) and (last is None or d <= last)}


def ingest_landing_zone(first: dt.date | None, last: dt.date | None, echo: Echo = print) -> bool:
    """Ingest customers, then every landing day in [first, last]; True when every run succeeded.

    Days off the partition calendar are refused up front (one line naming the files and the setting),
    the others are ingested, and the result is False.
    """
    landing: LandingZone = defs.resources["landing"]
    files = _landing_files(first, last)
    # Entries that are no delivery file (a bad name, a directory, a symlink, two files for a day) block only
    # themselves: each is named with its reason, the other days ingest, and the command reports failure.
    entries = landing.transaction_refusals()
    for name, reason in entries.items():
        echo(f"not ingested: {name}: {reason}")
    refused = outside_calendar(files)
    if refused:
        echo(calendar_refusal({day: files[day] for day in refused}))
    days = [day for day in files if day not in refused]
    ok = not refused and not entries
    with instance() as dagster_instance:
        if landing.customer_files():
            customers = run_job(dagster_instance, defs.resolve_job_def("ingest_customers"), "ingest_customers", echo)
            echo_checks(customers, echo)
            ok &= customers.success
        for start, end in consecutive_ranges(days):
            loaded = run_job(dagster_instance, defs.resolve_job_def("ingest_transactions"),
                             f"ingest_transactions {start} … {end}", echo, range_tags(start, end))
            echo_checks(loaded, echo)
            ok &= loaded.success
    if not files:
        between = f" between {first or '…'} and {last or '…'}" if first or last else ""
        echo(f"no transaction files{between} in {landing.layout.transactions_landing} (YYYY-MM-DD.csv|parquet): "
             "drop them there or run `mlsys import FILE` first")
        ok &= bool(landing.customer_files())
    return ok


def _warehouse_row(sql: str, missing: str, echo: Echo, params: list | None = None) -> tuple | None:
    """One row of a read-only warehouse query, or None after one line naming the command to run first:
    `mlsys ingest` without a warehouse; `missing` when the table does not exist yet or the row's first
    value is NULL (the table is empty)."""
    warehouse: Warehouse = defs.resources["warehouse"]
    if not Path(warehouse.path).exists():
        echo(f"no warehouse at {warehouse.path} yet: run `mlsys ingest` first")
        return None
    try:
        with warehouse.connect(read_only=True) as con:
            row = con.execute(sql, params or []).fetchone()
    except duckdb.CatalogException:
        row = None
    if row is None or row[0] is None:
        echo(missing)
        return None
    return row


def refresh_features(echo: Echo = print) -> bool:
    """customer_daily over every loaded delivery day, then the feature snapshot of the newest day."""
    not_loaded = "no transactions loaded yet (raw.transactions is empty): run `mlsys ingest` first"
    row = _warehouse_row("SELECT min(delivery_date), max(delivery_date) FROM raw.transactions", not_loaded, echo)
    if row is None:
        return False
    first, last = row
    calendar_start = calendar_bounds()[0]
    if first < calendar_start:
        echo(f"raw.transactions holds delivery days from {first}, before the partition calendar's start "
             f"{calendar_start} (its landing files were removed, or {PARTITIONS_START_SETTING} is later): "
             f"set {PARTITIONS_START_SETTING}={first} and run `mlsys features` again")
        return False
    job = defs.resolve_job_def("refresh_features")
    steps = (
        (AssetKey(["features", "customer_daily"]), f"customer_daily {first} … {last}", first),
        (AssetKey(["features", "customer_features"]), f"customer_features {last}", last),
    )
    with instance() as dagster_instance:
        for key, label, start in steps:
            subset = job.get_subset(asset_selection={key})
            if not run_job(dagster_instance, subset, label, echo, range_tags(start, last)).success:
                return False
    return True


def retrain(echo: Echo = print, examples_config: dict | None = None) -> bool:
    """weekly_retraining now; `examples_config` sets ml/training_examples' config (grid, history, cutoffs)."""
    ops = {"ml__training_examples": {"config": examples_config}} if examples_config else None
    not_built = "no features yet (features.customer_daily): run `mlsys features` first"
    if _warehouse_row("SELECT max(delivery_date) FROM features.customer_daily", not_built, echo) is None:
        return False
    with instance() as dagster_instance:
        ok = run_job(dagster_instance, defs.resolve_job_def("weekly_retraining"), "weekly_retraining", echo,
                     ops_config=ops).success
    refresh_report_index()
    return ok


def score_recent_days(echo: Echo = print, days: int = 1) -> dt.date | None:
    """Predictions and retention targets for the newest snapshot's day, or for the `days` days up to it in one
    range run (the scoring assets take a range), then the online store export; returns the newest day."""
    no_snapshot = "no feature snapshot yet (features.customer_features): run `mlsys features` first"
    row = _warehouse_row("SELECT max(as_of) FROM features.customer_features", no_snapshot, echo)
    if row is None:
        return None
    newest = row[0]
    first = max(newest - dt.timedelta(days=days - 1), calendar_bounds()[0])
    assets = {AssetKey(["predictions", "customer_predictions"]), AssetKey(["predictions", "retention_targets"])}
    if first < newest:  # `mlsys features` built the newest snapshot only: the earlier days need theirs
        assets.add(AssetKey(["features", "customer_features"]))
    # No production model yet is fine: BG/NBD + Gamma-Gamma serves until a model passes the gate.
    scoring = defs.resolve_job_def("daily_scoring").get_subset(asset_selection=assets)
    label = f"daily_scoring {first} … {newest}" if first < newest else f"daily_scoring {newest}"
    with instance() as dagster_instance:
        if not run_job(dagster_instance, scoring, label, echo, range_tags(first, newest)).success:
            return None
        if not run_job(dagster_instance, defs.resolve_job_def("export_online_store"), "export_online_store", echo).success:
            return None
    return newest


MONITORING_REPORTS = ("data_quality_report", "feature_drift_report", "prediction_drift_report", "model_performance_report")


def _scored_days(first: dt.date, last: dt.date) -> set[dt.date]:
    """The days in [first, last] that have predictions."""
    warehouse: Warehouse = defs.resources["warehouse"]
    with warehouse.connect(read_only=True) as con:
        return {day for (day,) in con.execute(
            "SELECT DISTINCT as_of FROM predictions.customer_predictions WHERE as_of BETWEEN ? AND ?",
            [first, last]).fetchall()}


def _days_to_monitor(newest: dt.date, days: int, every: int) -> list[dt.date]:
    """The scored days among the `days` days up to `newest`, every `every`-th counted back from it, oldest first."""
    scored = _scored_days(newest - dt.timedelta(days=days - 1), newest)
    wanted = [newest - dt.timedelta(days=offset) for offset in range(0, days, every)]
    return sorted(day for day in wanted if day in scored)


def _backfill_matured(dagster_instance: DagsterInstance, days: list[dt.date], echo: Echo) -> bool:
    """The forecasts made H days before each monitored day, for its performance report, where there are none:
    one range run of the snapshots and predictions from the first such day to the last."""
    horizon = defs.resources["forecast"].horizon_days
    # Before the calendar's first day there is no partition to backfill: those performance reports wait.
    matured = [day - dt.timedelta(days=horizon) for day in days]
    matured = [day for day in matured if day >= calendar_bounds()[0]]
    if not matured:
        return True
    scored = _scored_days(min(matured), max(matured))
    missing = [day for day in matured if day not in scored]
    if not missing:
        return True
    backfill = defs.resolve_job_def("daily_scoring").get_subset(asset_selection={
        AssetKey(["features", "customer_features"]), AssetKey(["predictions", "customer_predictions"])})
    span = f"{missing[0]} … {missing[-1]}" if len(missing) > 1 else str(missing[0])
    return run_job(dagster_instance, backfill, f"daily_scoring {span} (for the performance report)", echo,
                   range_tags(missing[0], missing[-1])).success


def monitor_recent_days(echo: Echo = print, days: int = 1, every: int = 1) -> tuple[bool, bool]:
    """Monitoring reports for the newest prediction day (and every `every`-th scored day of the `days` days up
    to it, one run per day: a report describes one day), then drift_retraining's decision on their alerts.

    Returns (success, retrained). The performance report needs the forecasts made H days earlier; where
    there are none (a fresh demo), those days' snapshots and predictions are backfilled first with the
    current production model.
    """
    no_predictions = "no predictions yet (predictions.customer_predictions): run `mlsys predict` first"
    row = _warehouse_row("SELECT max(as_of) FROM predictions.customer_predictions", no_predictions, echo)
    if row is None:
        return False, False
    monitored = _days_to_monitor(row[0], days, every)
    with instance() as dagster_instance:
        if not _backfill_matured(dagster_instance, monitored, echo):
            return False, False
        # Judge these runs' alerts only (the daemon's sensor keeps its own cursor).
        cursor = past_current_alerts(dagster_instance)
        reports = defs.resolve_job_def("monitoring_reports")
        ok = True
        for day in monitored:
            result = run_job(dagster_instance, reports, f"monitoring_reports {day}", echo, range_tags(day, day))
            ok &= result.success
            for evaluation in result.get_asset_check_evaluations():
                if day == monitored[-1] or not evaluation.passed:  # older days: only what failed
                    echo(f"  {check_line(evaluation)}")
        _echo_headlines(defs.resources["warehouse"], monitored[-1], echo)
        decision = evaluate_drift(dagster_instance, cursor, defs.resources["settings"].retraining_cooldown_hours)
        if decision.retrain:
            echo("drift_retraining: an alert was raised, retraining now (the gate decides what serves)")
            retraining = run_job(dagster_instance, defs.resolve_job_def("weekly_retraining"), "weekly_retraining", echo,
                                 decision.tags)
            refresh_report_index()
            return retraining.success and ok, True
        echo(f"drift_retraining: {decision.reason}")
    return ok, False


def refresh_report_index() -> None:
    """The index is rewritten by each report; after a retraining it is rewritten once more (when there is one),
    so its dashboard shows the gate's new decisions and what serves now."""
    warehouse: Warehouse = defs.resources["warehouse"]
    layout = defs.resources["landing"].layout
    with warehouse.connect(read_only=True) as con:
        refresh_existing_index(con, layout.reports, layout.serving, defs.resources["settings"].drift_share_threshold)


def _echo_headlines(warehouse: Warehouse, day: dt.date, echo: Echo) -> None:
    with warehouse.connect(read_only=True) as con:
        rows = con.execute(
            """
            SELECT kind, passed, headline FROM monitoring.reports WHERE partition_day = ?
            QUALIFY row_number() OVER (PARTITION BY kind ORDER BY created_at DESC) = 1 ORDER BY kind
            """,
            [day],
        ).fetchall()
    for kind, passed, headline in rows:
        numbers = json.loads(headline)
        if "drifted_column_names" in numbers:
            drifted = ", ".join(numbers["drifted_column_names"]) or "none"
            detail = f"{numbers['drifted_columns']}/{numbers['columns']} tested columns drifted ({drifted})"
        else:
            detail = ", ".join(f"{k} {numbers[k]:.3f}" for k in ("rmse", "baseline_rmse", "roc_auc")
                               if numbers.get(k) is not None)
        echo(f"  {kind:<18} {'pass' if passed else 'FAIL'}  {detail}")
