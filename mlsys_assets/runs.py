"""Launch the project's jobs from the `mlsys` CLI, recorded in the Dagster instance the UI shows.

With DAGSTER_HOME set (the Makefile sets it to .dagster/), runs land in the same instance as
`make ui`, so everything the CLI did is visible there afterwards.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable

from dagster import AssetKey, DagsterInstance, ExecuteInProcessResult, JobDefinition
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from mlsys_assets.definitions import defs
from mlsys_assets.ingest.sensors import consecutive_ranges
from mlsys_assets.resources import LandingZone, Warehouse

# The CLI prints one line per run; Dagster's per-event debug log stays in the instance for the UI.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
Echo = Callable[[str], None]


def instance() -> DagsterInstance:
    return DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()


def _range_tags(start: dt.date, end: dt.date) -> dict[str, str]:
    return {ASSET_PARTITION_RANGE_START_TAG: start.isoformat(), ASSET_PARTITION_RANGE_END_TAG: end.isoformat()}


def run_job(dagster_instance: DagsterInstance, job: JobDefinition, label: str, echo: Echo, tags=None) -> ExecuteInProcessResult:
    result = job.execute_in_process(
        instance=dagster_instance, raise_on_error=False, run_config=QUIET_RUN_CONFIG,
        tags={"mlsys/trigger": "cli", **(tags or {})},
    )
    echo(f"{label}: {'success' if result.success else 'FAILED'} (run {result.run_id})")
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.error:
            echo(event.step_failure_data.error.message.strip())
    return result


def _landing_days(first: dt.date | None, last: dt.date | None) -> list[dt.date]:
    landing: LandingZone = defs.resources["landing"]
    return [d for d in landing.transaction_files() if (first is None or d >= first) and (last is None or d <= last)]


def ingest_landing_zone(first: dt.date | None, last: dt.date | None, echo: Echo = print) -> bool:
    """Ingest customers, then every landing day in [first, last]; True when every run succeeded."""
    landing: LandingZone = defs.resources["landing"]
    days = _landing_days(first, last)
    ok = True
    with instance() as dagster_instance:
        if landing.customer_files():
            ok &= run_job(dagster_instance, defs.resolve_job_def("ingest_customers"), "ingest_customers", echo).success
        for start, end in consecutive_ranges(days):
            ok &= run_job(dagster_instance, defs.resolve_job_def("ingest_transactions"),
                          f"ingest_transactions {start} … {end}", echo, _range_tags(start, end)).success
    if not days:
        echo(f"no transaction files in {landing.layout.transactions_landing}")
    return ok


def refresh_features(echo: Echo = print) -> bool:
    """customer_daily over every loaded delivery day, then the feature snapshot of the newest day."""
    warehouse: Warehouse = defs.resources["warehouse"]
    with warehouse.connect(read_only=True) as con:
        first, last = con.execute("SELECT min(delivery_date), max(delivery_date) FROM raw.transactions").fetchone()
    if first is None:
        echo("raw.transactions is empty: run `mlsys ingest` first")
        return False
    job = defs.resolve_job_def("refresh_features")
    steps = (
        (AssetKey(["features", "customer_daily"]), f"customer_daily {first} … {last}", first),
        (AssetKey(["features", "customer_features"]), f"customer_features {last}", last),
    )
    with instance() as dagster_instance:
        for key, label, start in steps:
            subset = job.get_subset(asset_selection={key})
            if not run_job(dagster_instance, subset, label, echo, _range_tags(start, last)).success:
                return False
    return True


def retrain(echo: Echo = print) -> bool:
    with instance() as dagster_instance:
        return run_job(dagster_instance, defs.resolve_job_def("weekly_retraining"), "weekly_retraining", echo).success


def score_newest_day(echo: Echo = print) -> dt.date | None:
    """Predictions and retention targets for the newest snapshot, then the online store export."""
    warehouse: Warehouse = defs.resources["warehouse"]
    with warehouse.connect(read_only=True) as con:
        newest = con.execute("SELECT max(as_of) FROM features.customer_features").fetchone()[0]
    if newest is None:
        echo("no feature snapshot yet: run `mlsys features` first")
        return None
    scoring = defs.resolve_job_def("daily_scoring").get_subset(
        asset_selection={AssetKey(["predictions", "customer_predictions"]), AssetKey(["predictions", "retention_targets"])}
    )
    with instance() as dagster_instance:
        if not run_job(dagster_instance, scoring, f"daily_scoring {newest}", echo, _range_tags(newest, newest)).success:
            return None
        if not run_job(dagster_instance, defs.resolve_job_def("export_online_store"), "export_online_store", echo).success:
            return None
    return newest
