"""The landing sensor: new or changed landing files start ingest runs for their partitions.

The cursor remembers each file's size, modification time and content hash. A file is hashed again only
when its size or time changed, and it counts as changed only when its content did, so touching or
re-dropping the same file starts nothing. Run keys carry the content hash, so Dagster itself refuses to
run the same content twice for the same day.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

from dagster import (
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    define_asset_job,
    in_process_executor,
    sensor,
)
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from mlsys_assets.ingest.assets import raw_customers, raw_transactions
from mlsys_assets.partitions import calendar_refusal, daily_partitions, outside_calendar
from mlsys_assets.resources import LandingZone

# Both jobs are one quick warehouse step: in-process avoids paying a process start-up per run.
ingest_transactions_job = define_asset_job(
    "ingest_transactions",
    selection=AssetSelection.assets(raw_transactions),
    partitions_def=daily_partitions,
    executor_def=in_process_executor,
    description="Load landing transaction files into raw.transactions for a day or a range of days.",
)
ingest_customers_job = define_asset_job(
    "ingest_customers",
    selection=AssetSelection.assets(raw_customers),
    executor_def=in_process_executor,
    description="Load the customer exports into raw.customers.",
)

# A backlog of more files than this (a first load, or a gap after downtime) goes in one range run
# per run of consecutive days instead of one run per file.
MAX_SINGLE_DAY_RUNS = 7


def _fingerprint(path: Path, previous: list | None) -> list:
    stat = path.stat()
    if previous and previous[0] == stat.st_size and previous[1] == stat.st_mtime_ns:
        return previous
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return [stat.st_size, stat.st_mtime_ns, digest]


def consecutive_ranges(days: list[dt.date]) -> list[tuple[dt.date, dt.date]]:
    ranges: list[tuple[dt.date, dt.date]] = []
    for day in sorted(days):
        if ranges and day == ranges[-1][1] + dt.timedelta(days=1):
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def _combined_hash(hashes: list[str]) -> str:
    return hashlib.sha256("".join(hashes).encode()).hexdigest()[:16]


@sensor(
    jobs=[ingest_transactions_job, ingest_customers_job],
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Watches data/landing/: a new or changed file starts an ingest run for its day; "
    "the same content twice starts nothing.",
)
def landing_sensor(context: SensorEvaluationContext, landing: LandingZone) -> SensorResult:
    previous: dict[str, list] = json.loads(context.cursor) if context.cursor else {}
    current: dict[str, list] = {}
    changed_days: dict[dt.date, str] = {}
    run_requests: list[RunRequest] = []

    try:
        transaction_files = landing.transaction_files()
    except ValueError as exc:
        return SensorResult(skip_reason=str(exc), cursor=context.cursor)
    # A day off the calendar is no partition: no run for it, and no cursor entry, so that it is picked up
    # once the definitions are reloaded with a calendar that holds it.
    off_calendar = {day: transaction_files.pop(day).name for day in outside_calendar(transaction_files)}
    refusal = calendar_refusal(off_calendar)
    for day, path in transaction_files.items():
        name = f"transactions/{path.name}"
        current[name] = _fingerprint(path, previous.get(name))
        if previous.get(name, [None] * 3)[2] != current[name][2]:
            changed_days[day] = current[name][2]

    if len(changed_days) <= MAX_SINGLE_DAY_RUNS:
        for day, digest in sorted(changed_days.items()):
            run_requests.append(
                RunRequest(
                    job_name=ingest_transactions_job.name,
                    partition_key=day.isoformat(),
                    run_key=f"transactions:{day}:{digest[:16]}",
                    tags={"mlsys/trigger": "landing_sensor"},
                )
            )
    else:
        for start, end in consecutive_ranges(list(changed_days)):
            digests = [changed_days[start + dt.timedelta(days=i)] for i in range((end - start).days + 1)]
            run_requests.append(
                RunRequest(
                    job_name=ingest_transactions_job.name,
                    run_key=f"transactions:{start}..{end}:{_combined_hash(digests)}",
                    tags={
                        ASSET_PARTITION_RANGE_START_TAG: start.isoformat(),
                        ASSET_PARTITION_RANGE_END_TAG: end.isoformat(),
                        "mlsys/trigger": "landing_sensor",
                    },
                )
            )

    customer_paths = landing.customer_files()
    customer_names = []
    for path in customer_paths:
        name = f"customers/{path.name}"
        customer_names.append(name)
        current[name] = _fingerprint(path, previous.get(name))
    customer_digests = [current[n][2] for n in customer_names]
    previous_digests = [v[2] for k, v in sorted(previous.items()) if k.startswith("customers/")]
    if customer_digests and customer_digests != previous_digests:
        # Customers first, so the transactions' known-customer check sees the newest export.
        run_requests.insert(
            0,
            RunRequest(
                job_name=ingest_customers_job.name,
                run_key=f"customers:{_combined_hash(customer_digests)}",
                tags={"mlsys/trigger": "landing_sensor"},
            )
        )

    if refusal:
        context.log.warning(refusal)
    cursor = json.dumps(current, sort_keys=True)
    if not run_requests:
        return SensorResult(skip_reason=refusal or "no new or changed landing files", cursor=cursor)
    return SensorResult(run_requests=run_requests, cursor=cursor)
