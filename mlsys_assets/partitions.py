"""The daily partition calendar shared by every partitioned asset.

The calendar fits the data (settings.partitions_start): it starts at `MLSYS_PARTITIONS_START` when set,
else at the first landing file, as found when these definitions are loaded. A day outside it is not a
partition, so ingest refuses its file up front with `calendar_refusal` instead of letting Dagster fail
after the rows were written.
"""

import datetime as dt
from collections.abc import Mapping

from dagster import AssetExecutionContext, AutomationCondition, DailyPartitionsDefinition

from mlsys_assets.settings import PARTITIONS_START_SETTING, partitions_start, partitions_start_setting

# Whether the calendar's start came from the setting (for the refusal's advice).
_START_SETTING = partitions_start_setting()
# The last partition is yesterday (UTC), the last day that is over: "Latest" in the UI then names a day a
# shop can have delivered, and today's partition is not shown missing all day. A file dated today waits
# (named in the landing sensor's skip reason) and loads from tomorrow on.
daily_partitions = DailyPartitionsDefinition(start_date=partitions_start().isoformat())


def calendar_bounds() -> tuple[dt.date, dt.date]:
    """The calendar's first and last day (yesterday, UTC)."""
    return daily_partitions.start.date(), dt.date.fromisoformat(daily_partitions.get_last_partition_key())


def outside_calendar(days) -> list[dt.date]:
    first, last = calendar_bounds()
    return sorted(day for day in days if day < first or day > last)


def _listed(names: Mapping[dt.date, str], days: list[dt.date]) -> str:
    shown = ", ".join(names[day] for day in days[:5])
    return shown + (f" and {len(days) - 5} more" if len(days) > 5 else "")


def calendar_refusal(names: Mapping[dt.date, str]) -> str | None:
    """One line refusing the days (named, e.g. by their landing file) that are not partitions; None if all are."""
    first, last = calendar_bounds()
    early = sorted(day for day in names if day < first)
    late = sorted(day for day in names if day > last)
    parts = []
    if early:
        if _START_SETTING:
            origin = f"{PARTITIONS_START_SETTING}={_START_SETTING}"
            fix = (f"set {PARTITIONS_START_SETTING}={early[0]} (or unset it: the calendar then starts at the first "
                   "landing file) and run again (restart `dagster dev` for the UI and sensors)")
        else:
            origin = f"the first landing file when the definitions were loaded; {PARTITIONS_START_SETTING} is not set"
            fix = (f"run again, or restart `dagster dev` / reload the code location, and the calendar starts at "
                   f"{early[0]} (or set {PARTITIONS_START_SETTING}={early[0]})")
        parts.append(f"{len(early)} landing day(s) ({_listed(names, early)}) predate the partition calendar, which "
                     f"starts at {first} ({origin}): not ingested; {fix}")
    if late:
        parts.append(f"{len(late)} landing day(s) ({_listed(names, late)}) are not over yet: the calendar's last "
                     f"day is {last} (yesterday, UTC); not ingested now, the landing sensor loads a day once it is over")
    return "; ".join(parts) or None


def partition_days(context: AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """First and last day of the run's partition range (one day, or a single-run backfill)."""
    window = context.partition_time_window
    return window.start.date(), window.end.date() - dt.timedelta(days=1)


# eager() without its latest-window restriction, and without its reaction to the first evaluation: when
# automation first looks at an instance (the daemon's first tick after `make demo`, or after this condition
# changed), what is there was built on purpose, so only what changes from then on starts runs. Re-deliveries
# of older days flow on too: customer_daily must reflect every raw partition. A failed blocking check
# upstream holds a partition back.
flow_on_new_data = (
    ((AutomationCondition.newly_missing() | AutomationCondition.any_deps_updated())
     & ~AutomationCondition.initial_evaluation()).since_last_handled()
    & ~AutomationCondition.any_deps_missing()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
    & AutomationCondition.all_deps_blocking_checks_passed()
).with_label("on new data")

# The same for the daily outputs (snapshots, predictions, reports), limited to the last few days: a
# re-delivery of an old day rebuilds customer_daily, not two years of snapshots and reports.
recent_days_eager = (
    AutomationCondition.in_latest_time_window(lookback_delta=dt.timedelta(days=3)) & flow_on_new_data
).with_label("on new data, last 3 days")
