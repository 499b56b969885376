"""The landing sensor: new or changed landing files start ingest runs for their partitions.

The cursor remembers each file's size, modification time and content hash. A file is hashed again only
when its size or time changed, and it counts as changed only when its content did, so touching or
re-dropping the same file starts nothing. Run keys carry the content hash, so Dagster itself refuses to
run the same content twice for the same day.

A transactions file counts as seen only once its day really loaded: the files of a requested run wait
in the cursor's `pending` until the run finished; a day the run did not materialize (a corrupt file in
a range run, a run that failed) goes to `failed` and is requested again, MAX_ATTEMPTS times in all, then
named in the skip reason until its content changes. Landing entries that are no delivery file (a bad
name, two files for a day, a symbolic link, ...) are named with their reason in the skip reason.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from pathlib import Path

from dagster import (
    AssetSelection,
    DagsterEventType,
    DagsterInstance,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    define_asset_job,
    in_process_executor,
    sensor,
)
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG, RUN_KEY_TAG

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
# A transactions file whose day did not load is requested this many times in all (same content).
MAX_ATTEMPTS = 3
# A requested run that the instance still does not know after this long was dropped: request it again.
PENDING_TIMEOUT_SECONDS = 600


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


def _load_cursor(raw: str | None) -> tuple[dict, dict, dict]:
    """(settled files, pending run key -> {"since", "files"}, failed name -> {"fingerprint", "attempts"})."""
    state = json.loads(raw) if raw else {}
    if "files" not in state:  # an older cursor: name -> fingerprint of every file it requested
        return state, {}, {}
    return state["files"], state.get("pending", {}), state.get("failed", {})


def _loaded_partitions(instance: DagsterInstance, run_id: str) -> set[str]:
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records
    return {r.event_log_entry.dagster_event.partition for r in records if r.event_log_entry.dagster_event}


def _settle(instance: DagsterInstance, settled: dict, pending: dict, failed: dict) -> None:
    """Resolve the pending runs that finished: a file whose day the run materialized is settled, any
    other goes to `failed` (to be retried)."""
    for run_key, entry in list(pending.items()):
        runs = instance.get_runs(filters=RunsFilter(tags={RUN_KEY_TAG: run_key}), limit=1)
        if not runs:
            if time.time() - entry["since"] > PENDING_TIMEOUT_SECONDS:
                del pending[run_key]  # never launched: the files count as new again
            continue
        if not runs[0].is_finished:
            continue
        loaded = None if runs[0].is_success else _loaded_partitions(instance, runs[0].run_id)
        for name, fingerprint in entry["files"].items():
            if loaded is None or Path(name).stem in loaded:
                settled[name] = fingerprint
                failed.pop(name, None)
            else:
                attempts = failed.get(name, {}).get("attempts", 0) if _same(failed.get(name), fingerprint) else 0
                failed[name] = {"fingerprint": fingerprint, "attempts": attempts + 1, "run_id": runs[0].run_id}
        del pending[run_key]


def _same(failure: dict | None, fingerprint: list) -> bool:
    return bool(failure) and failure["fingerprint"][2] == fingerprint[2]


def _transaction_requests(changed: dict[dt.date, str]) -> list[tuple[RunRequest, list[dt.date]]]:
    """Run requests for the changed days (day -> run-key token), with the days each covers."""
    if len(changed) <= MAX_SINGLE_DAY_RUNS:
        return [
            (RunRequest(job_name=ingest_transactions_job.name, partition_key=day.isoformat(),
                        run_key=f"transactions:{day}:{token}", tags={"mlsys/trigger": "landing_sensor"}), [day])
            for day, token in sorted(changed.items())
        ]
    requests = []
    for start, end in consecutive_ranges(list(changed)):
        days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
        tags = {ASSET_PARTITION_RANGE_START_TAG: start.isoformat(), ASSET_PARTITION_RANGE_END_TAG: end.isoformat(),
                "mlsys/trigger": "landing_sensor"}
        run_key = f"transactions:{start}..{end}:{_combined_hash([changed[d] for d in days])}"
        requests.append((RunRequest(job_name=ingest_transactions_job.name, run_key=run_key, tags=tags), days))
    return requests


def _transactions_tick(context: SensorEvaluationContext, landing: LandingZone, state: tuple[dict, dict, dict]
                       ) -> tuple[list[RunRequest], list[str]]:
    """The transactions side of a tick: its run requests and what it refuses (one line each); updates `state`."""
    settled, pending, failed = state
    _settle(context.instance, settled, pending, failed)
    transaction_files = landing.transaction_files()
    notes = [f"transactions/{name}: {reason}" for name, reason in landing.transaction_refusals().items()]
    # A day off the calendar is no partition: no run for it, and no cursor entry, so that it is picked up
    # once the definitions are reloaded with a calendar that holds it.
    off_calendar = {day: transaction_files.pop(day).name for day in outside_calendar(transaction_files)}
    notes += filter(None, [calendar_refusal(off_calendar)])
    in_flight = {name: fp[2] for entry in pending.values() for name, fp in entry["files"].items()}
    current, changed = {}, {}
    for day, path in transaction_files.items():
        name = f"transactions/{path.name}"
        known = settled.get(name) or failed.get(name, {}).get("fingerprint")
        current[name] = fingerprint = _fingerprint(path, known)
        if in_flight.get(name) == fingerprint[2] or (settled.get(name) or [None] * 3)[2] == fingerprint[2]:
            continue
        attempts = failed[name]["attempts"] if _same(failed.get(name), fingerprint) else 0
        if attempts >= MAX_ATTEMPTS:
            notes.append(f"{name}: did not load in {attempts} attempts (last run {failed[name]['run_id']}); "
                         "fix or re-deliver it")
            continue
        changed[day] = fingerprint[2][:16] + (f"-retry{attempts}" if attempts else "")
    requests = []
    for request, days in _transaction_requests(changed):
        files = {f"transactions/{transaction_files[d].name}": current[f"transactions/{transaction_files[d].name}"]
                 for d in days}
        pending[request.run_key] = {"since": time.time(), "files": files}
        requests.append(request)
    # Files no longer in the landing zone are forgotten.
    for table in (settled, failed):
        for name in [n for n in table if n.startswith("transactions/") and n not in current]:
            del table[name]
    return requests, notes


@sensor(
    jobs=[ingest_transactions_job, ingest_customers_job],
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Watches data/landing/: a new or changed file starts an ingest run for its day; "
    "the same content twice starts nothing; a day that did not load is retried.",
)
def landing_sensor(context: SensorEvaluationContext, landing: LandingZone) -> SensorResult:
    settled, pending, failed = _load_cursor(context.cursor)
    run_requests, notes = _transactions_tick(context, landing, (settled, pending, failed))

    previous_digests = [v[2] for k, v in sorted(settled.items()) if k.startswith("customers/")]
    customer_names = []
    for path in landing.customer_files():
        name = f"customers/{path.name}"
        customer_names.append(name)
        settled[name] = _fingerprint(path, settled.get(name))
    for name in [n for n in settled if n.startswith("customers/") and n not in customer_names]:
        del settled[name]
    notes += [f"customers/{name}: {reason}" for name, reason in landing.customer_refusals().items()]
    customer_digests = [settled[n][2] for n in sorted(customer_names)]
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

    refusal = "; ".join(notes)
    if refusal:
        context.log.warning(refusal)
    cursor = json.dumps({"files": settled, "pending": pending, "failed": failed}, sort_keys=True)
    if not run_requests:
        return SensorResult(skip_reason=refusal or "no new or changed landing files", cursor=cursor)
    return SensorResult(run_requests=run_requests, cursor=cursor)
