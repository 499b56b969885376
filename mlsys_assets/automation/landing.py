"""The landing sensor: new or changed landing files start ingest runs for their partitions.

What loaded is read from the Dagster instance, not kept in the cursor: each `raw/transactions` partition's
materialization records its landing file's size, modification time and content hash (`source_*`). A file
counts as loaded when its day's newest materialization saw the same size and time, or else the same content
(it is hashed again only then), so touching or re-dropping the same file starts nothing, and a sensor
started on an instance the CLI filled (`make demo`, then `make ui`) requests nothing either. Run keys
carry the content hash, so Dagster itself refuses to run the same content twice for the same day.

The cursor holds only what is in flight: the files of a requested run wait in `pending` until the run
finished; a file its run did not load (a corrupt file in a range run, a run that failed) goes to `failed`
and is requested again, MAX_ATTEMPTS times in all, then named in the skip reason until its content
changes; and the customer files' fingerprints. Landing entries that are no delivery file (a bad name, two
files for a day, a symbolic link, ...) are named with their reason in the skip reason.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from pathlib import Path

from dagster import (
    DagsterInstance,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from mlsys_assets.automation.jobs import ingest_customers_job, ingest_transactions_job
from mlsys_assets.automation.tags import RUN_KEY_TAG, TRIGGER_TAG, range_tags
from mlsys_assets.ingest.assets import raw_customers, raw_transactions
from mlsys_assets.partitions import calendar_refusal, outside_calendar
from mlsys_assets.resources import SOURCE_KEYS, LandingZone, combined_digest, file_fingerprint

# A backlog of more files than this (a first load, or a gap after downtime) goes in one range run
# per run of consecutive days instead of one run per file.
MAX_SINGLE_DAY_RUNS = 7
# A transactions file whose day did not load is requested this many times in all (same content).
MAX_ATTEMPTS = 3
# A requested run that the instance still does not know after this long was dropped: request it again.
PENDING_TIMEOUT_SECONDS = 600


def consecutive_ranges(days: list[dt.date]) -> list[tuple[dt.date, dt.date]]:
    ranges: list[tuple[dt.date, dt.date]] = []
    for day in sorted(days):
        if ranges and day == ranges[-1][1] + dt.timedelta(days=1):
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def _load_cursor(raw: str | None) -> tuple[dict, dict, dict | None]:
    """(pending run key -> {"since", "files"}, failed name -> {"fingerprint", "attempts", "run_id"},
    customer file name -> fingerprint, or None when the cursor has not seen the customer files yet)."""
    state = json.loads(raw) if raw else {}
    if "files" in state:  # an older cursor that kept every file: what loaded is in the instance
        return {}, {}, None
    return state.get("pending", {}), state.get("failed", {}), state.get("customers")


def _loaded_sources(instance: DagsterInstance, days: set[str]) -> dict[str, dict]:
    """Day -> the landing file fingerprint its newest raw/transactions materialization recorded (empty
    when it recorded none), for the given days; reads newest first and stops once every day is found."""
    found: dict[str, dict] = {}
    cursor = None
    while days - found.keys():
        page = instance.fetch_materializations(raw_transactions.key, limit=1000, cursor=cursor)
        for record in page.records:
            event = record.asset_materialization
            if event and event.partition in days and event.partition not in found:
                found[event.partition] = {k: event.metadata[k].value for k in SOURCE_KEYS if k in event.metadata}
        if not page.has_more:
            break
        cursor = page.cursor
    return found


def _loaded(loaded: dict[str, dict], name: str, fingerprint: dict) -> bool:
    """Whether the newest load of the file's day read this content."""
    return loaded.get(Path(name).stem, {}).get("source_sha256") == fingerprint["source_sha256"]


def _finished_runs(instance: DagsterInstance, pending: dict) -> dict[str, str]:
    """Pending run key -> run id of the requested runs that finished; drops requests never launched."""
    finished = {}
    for run_key, entry in list(pending.items()):
        runs = instance.get_runs(filters=RunsFilter(tags={RUN_KEY_TAG: run_key}), limit=1)
        if not runs:
            if time.time() - entry["since"] > PENDING_TIMEOUT_SECONDS:
                del pending[run_key]  # never launched: the files count as new again
        elif runs[0].is_finished:
            finished[run_key] = runs[0].run_id
    return finished


def _settle(finished: dict[str, str], loaded: dict[str, dict], pending: dict, failed: dict) -> None:
    """Resolve the finished runs: a file whose day's newest load read its content is done, any other goes
    to `failed` (to be retried). `loaded` is read after the runs were seen finished, so it holds their loads."""
    for run_key, run_id in finished.items():
        for name, fingerprint in pending.pop(run_key)["files"].items():
            if _loaded(loaded, name, fingerprint):
                failed.pop(name, None)
            else:
                attempts = failed.get(name, {}).get("attempts", 0) if _same(failed.get(name), fingerprint) else 0
                failed[name] = {"fingerprint": fingerprint, "attempts": attempts + 1, "run_id": run_id}


def _same(failure: dict | None, fingerprint: dict) -> bool:
    return bool(failure) and failure["fingerprint"]["source_sha256"] == fingerprint["source_sha256"]


def _transaction_requests(changed: dict[dt.date, str]) -> list[tuple[RunRequest, list[dt.date]]]:
    """Run requests for the changed days (day -> run-key token), with the days each covers."""
    if len(changed) <= MAX_SINGLE_DAY_RUNS:
        return [
            (RunRequest(job_name=ingest_transactions_job.name, partition_key=day.isoformat(),
                        run_key=f"transactions:{day}:{token}", tags={TRIGGER_TAG: "landing_sensor"}), [day])
            for day, token in sorted(changed.items())
        ]
    requests = []
    for start, end in consecutive_ranges(list(changed)):
        days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
        tags = {**range_tags(start, end), TRIGGER_TAG: "landing_sensor"}
        tokens = "".join(changed[d] for d in days)
        run_key = f"transactions:{start}..{end}:{hashlib.sha256(tokens.encode()).hexdigest()[:16]}"
        requests.append((RunRequest(job_name=ingest_transactions_job.name, run_key=run_key, tags=tags), days))
    return requests


def _transactions_tick(context: SensorEvaluationContext, landing: LandingZone, pending: dict, failed: dict
                       ) -> tuple[list[RunRequest], list[str]]:
    """The transactions side of a tick: its run requests and what it refuses (one line each); updates
    `pending` and `failed`."""
    finished = _finished_runs(context.instance, pending)
    transaction_files = landing.transaction_files()
    notes = [f"transactions/{name}: {reason}" for name, reason in landing.transaction_refusals().items()]
    # A day off the calendar is no partition: no run for it, and nothing remembered, so that it is picked
    # up once the calendar holds it (tomorrow, for today's file; after a reload, for an earlier start).
    off_calendar = {day: transaction_files.pop(day).name for day in outside_calendar(transaction_files)}
    notes += filter(None, [calendar_refusal(off_calendar)])
    loaded = _loaded_sources(context.instance, {day.isoformat() for day in transaction_files})
    _settle(finished, loaded, pending, failed)
    in_flight = {name: fp["source_sha256"] for entry in pending.values() for name, fp in entry["files"].items()}
    current, changed = {}, {}
    for day, path in transaction_files.items():
        name = f"transactions/{path.name}"
        known = loaded.get(day.isoformat()) or failed.get(name, {}).get("fingerprint")
        current[name] = fingerprint = file_fingerprint(path, known)
        if in_flight.get(name) == fingerprint["source_sha256"] or _loaded(loaded, name, fingerprint):
            failed.pop(name, None)
            continue
        attempts = failed[name]["attempts"] if _same(failed.get(name), fingerprint) else 0
        if attempts >= MAX_ATTEMPTS:
            notes.append(f"{name}: did not load in {attempts} attempts (last run {failed[name]['run_id']}); "
                         "fix or re-deliver it")
            continue
        changed[day] = fingerprint["source_sha256"][:16] + (f"-retry{attempts}" if attempts else "")
    requests = []
    for request, days in _transaction_requests(changed):
        files = {f"transactions/{transaction_files[d].name}": current[f"transactions/{transaction_files[d].name}"]
                 for d in days}
        pending[request.run_key] = {"since": time.time(), "files": files}
        requests.append(request)
    for name in [n for n in failed if n not in current]:  # files no longer in the landing zone are forgotten
        del failed[name]
    return requests, notes


def _recorded_customers_digest(instance: DagsterInstance) -> str | None:
    """The customer files' digest the newest raw/customers materialization recorded, if any."""
    event = instance.get_latest_materialization_event(raw_customers.key)
    entry = event.asset_materialization.metadata.get("source_digest") if event and event.asset_materialization else None
    return entry.value if entry else None


def _customers_tick(context: SensorEvaluationContext, landing: LandingZone, known: dict | None
                    ) -> tuple[RunRequest | None, dict, list[str]]:
    """A customers run when the customer files' content changed (since the cursor, or else since the
    newest load the instance recorded); the files' fingerprints; what the landing zone refuses."""
    fingerprints = {f"customers/{path.name}": file_fingerprint(path, (known or {}).get(f"customers/{path.name}"))
                    for path in landing.customer_files()}
    notes = [f"customers/{name}: {reason}" for name, reason in landing.customer_refusals().items()]
    if not fingerprints:
        return None, fingerprints, notes
    digest = combined_digest([fingerprints[name] for name in sorted(fingerprints)])
    if known is not None:
        previous = combined_digest([known[name] for name in sorted(known)]) if known else None
    else:
        previous = _recorded_customers_digest(context.instance)
    if digest == previous:
        return None, fingerprints, notes
    request = RunRequest(job_name=ingest_customers_job.name, run_key=f"customers:{digest}",
                         tags={TRIGGER_TAG: "landing_sensor"})
    return request, fingerprints, notes


@sensor(
    jobs=[ingest_transactions_job, ingest_customers_job],
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Watches data/landing/: a new or changed file starts an ingest run for its day; "
    "the same content twice starts nothing (what loaded is read from the instance); a day that did not load "
    "is retried.",
)
def landing_sensor(context: SensorEvaluationContext, landing: LandingZone) -> SensorResult:
    pending, failed, customers = _load_cursor(context.cursor)
    run_requests, notes = _transactions_tick(context, landing, pending, failed)
    customers_request, customers, customer_notes = _customers_tick(context, landing, customers)
    if customers_request:
        # Customers first, so the transactions' known-customer check sees the newest export.
        run_requests.insert(0, customers_request)
    refusal = "; ".join(notes + customer_notes)
    if refusal:
        context.log.warning(refusal)
    cursor = json.dumps({"pending": pending, "failed": failed, "customers": customers}, sort_keys=True)
    if not run_requests:
        return SensorResult(skip_reason=refusal or "no new or changed landing files", cursor=cursor)
    return SensorResult(run_requests=run_requests, cursor=cursor)
