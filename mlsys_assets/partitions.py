"""The daily partition calendar shared by every partitioned asset."""

import datetime as dt

from dagster import AssetExecutionContext, AutomationCondition, DailyPartitionsDefinition

from mlsys_assets.settings import partitions_start

# end_offset=1 admits today's delivery: a shop may drop today's file before the day is over.
daily_partitions = DailyPartitionsDefinition(start_date=partitions_start().isoformat(), end_offset=1)


def partition_days(context: AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """First and last day of the run's partition range (one day, or a single-run backfill)."""
    window = context.partition_time_window
    return window.start.date(), window.end.date() - dt.timedelta(days=1)


# Follow upstream updates of the last few days, once every blocking check upstream passed. Plain eager()
# looks at the newest partition only, which (end_offset=1) is today's, while deliveries carry yesterday.
recent_days_eager = (
    AutomationCondition.eager().without(AutomationCondition.in_latest_time_window())
    & AutomationCondition.in_latest_time_window(lookback_delta=dt.timedelta(days=3))
    & AutomationCondition.all_deps_blocking_checks_passed()
)
