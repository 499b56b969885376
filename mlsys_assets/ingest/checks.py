"""Checks on the raw layer that run on their own clock rather than with a materialization."""

import datetime as dt

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AutomationCondition,
    Config,
    asset_check,
)
from pydantic import Field

from mlsys_assets.ingest.assets import raw_transactions


class FreshnessConfig(Config):
    max_lag_days: int = Field(
        default=1, description="How many days the newest loaded delivery may trail yesterday before it warns."
    )


@asset_check(
    asset=raw_transactions,
    description="The newest loaded delivery day is at most `max_lag_days` behind yesterday (evaluated daily at 09:00 UTC).",
    automation_condition=AutomationCondition.cron_tick_passed("0 9 * * *", cron_timezone="UTC"),
)
def transactions_freshness(context: AssetCheckExecutionContext, config: FreshnessConfig) -> AssetCheckResult:
    # Partition status lives in the Dagster instance, so this check never opens the warehouse.
    loaded = context.instance.get_materialized_partitions(raw_transactions.key)
    newest = max((dt.date.fromisoformat(key) for key in loaded), default=None)
    yesterday = dt.date.today() - dt.timedelta(days=1)
    lag = (yesterday - newest).days if newest else None
    return AssetCheckResult(
        passed=lag is not None and lag <= config.max_lag_days,
        severity=AssetCheckSeverity.WARN,
        metadata={"newest_partition": str(newest), "days_behind_yesterday": lag if lag is not None else -1},
    )
