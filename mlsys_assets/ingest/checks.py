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
from mlsys_assets.resources import LandingZone


class FreshnessConfig(Config):
    max_unloaded_days: int = Field(
        default=0, description="How many delivered days (landing files) may wait unloaded before it warns.")


@asset_check(
    asset=raw_transactions,
    description="Every delivered day is loaded: the landing zone's newest day is the data's today, and no landing "
                "day waits unloaded (evaluated daily at 09:00 UTC; the wall-clock age of the data is shown, not judged).",
    automation_condition=AutomationCondition.cron_tick_passed("0 9 * * *", cron_timezone="UTC"),
)
def transactions_freshness(
    context: AssetCheckExecutionContext, config: FreshnessConfig, landing: LandingZone
) -> AssetCheckResult:
    # Partition status lives in the Dagster instance, so this check never opens the warehouse.
    loaded = set(context.instance.get_materialized_partitions(raw_transactions.key))
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
