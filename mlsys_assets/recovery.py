"""Crash recovery: a run whose process died never keeps the warehouse.

Every warehouse-writing step claims the `warehouse` pool's one slot in the Dagster instance and frees it
when the step ends. A process killed with `kill -9` (or the machine losing power) never frees it, and
every later run then waits for that slot forever. The CLI's runs execute in the CLI's own process, so
`runs.run_job` tags each run with that process (`mlsys/pid`, `mlsys/pid_start`, `mlsys/host`);
`recover_dead_runs` finds the unfinished runs whose process is gone, marks them failed and frees their
pool claims, and also frees claims left by runs that have already finished. The daemon's runs carry no
such tag: Dagster's gRPC server marks a dead run worker failed, and the daemon's run monitoring
(`free_slots_after_run_end_seconds` in dagster.yaml) frees the claims of finished runs.

Readers (`mlsys sql`, `mlsys status`) cannot open the file while a writer holds it; `connect_reader` retries
briefly and then fails with one line naming the holder.

Only public names: DagsterInstance methods and `instance.event_log_storage`'s concurrency methods
(`get_concurrency_run_ids`, `get_concurrency_info`, `free_concurrency_slots_for_run`), which the
`dagster instance concurrency` CLI and the daemon use too; Dagster exports no wrapper for them.
"""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

import duckdb
from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter

PID_TAG = "mlsys/pid"
PID_START_TAG = "mlsys/pid_start"
HOST_TAG = "mlsys/host"
UNFINISHED = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
              DagsterRunStatus.STARTED]
# A finished run's step processes may still be stopping: its claims are freed this long after its end (as
# the daemon's `free_slots_after_run_end_seconds` does).
FINISHED_GRACE_SECONDS = 30


def _start_ticks(pid: int) -> str | None:
    """The process's start time (clock ticks since boot, /proc/PID/stat field 22), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces: count fields after its last ')'.
    return stat.rsplit(")", 1)[1].split()[19]


def process_tags() -> dict[str, str]:
    """Tags naming the current process, so a later command can tell whether the run's process still lives."""
    pid = os.getpid()
    return {PID_TAG: str(pid), PID_START_TAG: _start_ticks(pid) or "", HOST_TAG: socket.gethostname()}


def run_process_alive(run: DagsterRun) -> bool | None:
    """True/False for a run tagged by `process_tags` on this host; None when that cannot be told."""
    pid, host = run.tags.get(PID_TAG), run.tags.get(HOST_TAG)
    if not pid or host != socket.gethostname():
        return None
    started = _start_ticks(int(pid))
    # A pid that lives again under another process (pid reuse) does not count.
    expected = run.tags.get(PID_START_TAG)
    return started is not None and (not expected or started == expected)


def _free(instance: DagsterInstance, run_id: str) -> bool:
    """Free every pool claim and queued step of the run; True when it had any."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits or run_id not in storage.get_concurrency_run_ids():
        return False
    storage.free_concurrency_slots_for_run(run_id)
    return True


def recover_dead_runs(instance: DagsterInstance) -> list[str]:
    """Mark failed the unfinished CLI runs whose process is gone and free their pool claims; also free the
    claims of deleted runs and of runs that finished over FINISHED_GRACE_SECONDS ago.
    Returns one line per run recovered (empty: all is well)."""
    lines = []
    for run in instance.get_runs(RunsFilter(statuses=UNFINISHED)):
        if run_process_alive(run) is not False:
            continue
        pid = run.tags[PID_TAG]
        instance.report_run_failed(run, f"mlsys: the run's process (pid {pid}) is gone (killed or crashed); "
                                        "marked failed and its warehouse pool claims freed")
        freed = _free(instance, run.run_id)
        lines.append(f"run {run.run_id} ({run.job_name}, {run.status.value}): its process {pid} is gone; "
                     f"marked failed{', freed its warehouse pool claim' if freed else ''}")
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        for run_id in sorted(storage.get_concurrency_run_ids()):
            record = instance.get_run_record_by_id(run_id)
            run = record.dagster_run if record else None
            ended_long_ago = run and run.is_finished and (record.end_time or 0) < time.time() - FINISHED_GRACE_SECONDS
            if run is None or ended_long_ago:
                _free(instance, run_id)
                state = "deleted" if run is None else run.status.value
                lines.append(f"run {run_id} ({state}): freed the pool claim it left behind")
    return lines


def pool_holders(instance: DagsterInstance, pool: str = "warehouse") -> list[str]:
    """One line per run holding or waiting for the pool, with whether its process lives."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits or pool not in storage.get_concurrency_keys():
        return []
    info = storage.get_concurrency_info(pool)
    waiting = [(step.run_id, step.step_key, "waits for") for step in info.pending_steps if step.assigned_timestamp is None]
    lines = []
    for run_id, step_key, verb in [(s.run_id, s.step_key, "holds") for s in info.claimed_slots] + waiting:
        run = instance.get_run_by_id(run_id)
        alive = run_process_alive(run) if run else None
        process = {True: f"process {run.tags.get(PID_TAG)} running", False: "process gone",
                   None: "not a CLI run: the daemon watches it"}[alive]
        if run and run.is_finished:
            process = f"{run.status.value}: freed {FINISHED_GRACE_SECONDS} s after its end"
        lines.append(f"run {run_id} step {step_key} {verb} the {pool} pool ({process})")
    return lines


class WarehouseBusyError(RuntimeError):
    pass


_HOLDER = re.compile(r"Conflicting lock is held in (.*?) \(PID (\d+)\)")


def _holder(message: str) -> str:
    """'PID 123 (mlsys ingest)' from DuckDB's lock error, with the command line from /proc when readable."""
    match = _HOLDER.search(message)
    if not match:
        return "another process"
    pid = match.group(2)
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = ""
    command = " ".join(command.split())  # one line, however the process was started
    return f"PID {pid} ({(command[:200] + ' …') if len(command) > 200 else command or match.group(1)})"


def connect_reader(path: Path, timeout_seconds: float = 5.0) -> duckdb.DuckDBPyConnection:
    """A read-only connection; while a writer holds the file, retry for `timeout_seconds`, then raise
    WarehouseBusyError with one line naming the holder and what to do."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            return duckdb.connect(str(path), read_only=True)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            if time.monotonic() > deadline:
                raise WarehouseBusyError(
                    f"the warehouse {path} is being written by {_holder(str(exc))} (waited {timeout_seconds:g} s): "
                    "retry when it finishes; if that process hangs, stop it and run `mlsys doctor`") from exc
            time.sleep(0.2)
