"""What does the Dagster instance storage cost mlsys: the SQLite files of `.dagster/` against Postgres?

    .venv/bin/python bench/dagster_instance.py [--repeats 3] [--customers 5000] [--work-dir DIR] [--keep]

Needs the `postgres` extra (`.tools/bin/uv sync --frozen --extra postgres`; plain `make install` removes it) and
PostgreSQL's server binaries (`initdb`, `postgres`: Debian's `postgresql` package).

What it does, in a work directory under /tmp (never the repo's data/ or .dagster/):
  1. Starts a throwaway PostgreSQL server: `initdb` in a temp dir (as the `postgres` user when run as
     root, since the server refuses to run as root), listening on 127.0.0.1 on a free port and on a
     socket in that dir, in its own process group; stopped by that group (SIGINT, then SIGKILL; and its
     backends, which leave the group) and deleted at the end, on failure and on SIGTERM too. Default
     server settings (fsync on, synchronous_commit on), like Dagster's SQLite files (default pragmas).
  2. Simulates one shop (`mlsys simulate`, N customers, 731 days ending END_DAY, no dirty rows) and trains
     its models once (`mlsys ingest`, `features`, `train` with a SQLite instance): every trial scores with
     these models, so no trial trains.
  3. Trials, SQLite and Postgres alternately (sqlite, postgres, sqlite, ...), each with a copy of the
     shop's landing zone, a new warehouse and a new instance: `.dagster/dagster.yaml` as it is (SQLite
     under DAGSTER_HOME), or the same file plus a `storage: postgres:` block naming a new database of the
     server (runs, event log, schedules and sensors, pool slots). `warehouse` pool = 1, as `make pool`.
     In each trial, one command after the other:
       a. `mlsys ingest --to <day 730>`: the customers run and one 730-partition range run;
       b. `mlsys features`: customer_daily over 730 partitions (one range run) and the newest snapshot;
       c. the one-day update: day 731's file has landed; ingest_transactions, customer_daily,
          customer_features and customer_predictions for that day, single-partition runs in one process
          (the project's `run_job`, as the automation's runs would be);
       d. `mlsys ingest --to <day 730>` again: the same range run on an instance that has history, quiet;
       e. the same command with the UI and the daemon running on the same instance: `dagster-webserver`
          answering a client that polls GraphQL back to back (the runs list, raw/transactions'
          partition statuses), `dagster-daemon` with the project's sensors (landing_sensor, the
          automation sensor, drift_retraining) ticking; started and settled before the command, left
          running 15 s after it. Errors are looked for in every log ("database is locked", tracebacks),
          in failed sensor ticks and in the runs the daemon launched.
     Every `mlsys` command runs as a fresh process (this script in child mode, which calls the `mlsys`
     entry point) whose instance event storage is timed: seconds inside `store_event`/`store_event_batch`
     by event type, the write side of the instance. Wall times include Python and Dagster start-up.
  4. The event writes alone: the events of trial sqlite_0's 730-day ingest range run (planned events,
     materializations, check evaluations, logs) stored again into a new SQLite instance and a new Postgres
     database, alternating every 50 events so both see the same machine load; wall and CPU seconds
     inside store_event, and the server's CPU. Once per repeat. (`--events-only DAGSTER_HOME` does only
     this, from any instance that holds an ingest_transactions run.)
  5. Prints one table of medians (with n and min-max) per measure and backend, and the CPU share other
     processes used meanwhile ("others", /proc/stat: the machine is shared; compare only figures taken in
     the same window).
Results also go to <work dir>/results.json (`--report FILE` prints its tables again).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCAL_INSTANCE = REPO / ".dagster" / "dagster.yaml"

END_DAY = dt.date(2025, 12, 31)   # the one-day update's day; 730 days of history end the day before
HISTORY_DAYS = 730
BACKENDS = ("sqlite", "postgres")
ERROR_PATTERN = re.compile(r"database is locked|OperationalError|Traceback|DagsterError|psycopg2\.\w*Error")
UI_QUERIES = {
    "runs": "{ runsOrError(limit: 20) { __typename ... on Runs { results { runId status } } } }",
    "partitions": """{ assetNodeOrError(assetKey: {path: ["raw", "transactions"]}) { __typename
        ... on AssetNode { assetPartitionStatuses { __typename
          ... on TimePartitionStatuses { ranges { status startKey endKey } } } } } }""",
}


# --- measuring ----------------------------------------------------------------------------------------

def _busy_jiffies() -> int:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[:8]) - fields[3] - fields[4]


class Window:
    """Wall time of a block and the share of all cores that other processes used meanwhile.

    `own` is a callable giving the CPU seconds of our own processes (this one and its children)."""

    def __init__(self) -> None:
        self.seconds, self.others = 0.0, 0.0

    def __enter__(self) -> Window:
        self._busy, self._own, self._start = _busy_jiffies(), _own_cpu(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._start
        others = (_busy_jiffies() - self._busy) / os.sysconf("SC_CLK_TCK") - (_own_cpu() - self._own)
        self.others = max(0.0, others / (self.seconds * os.cpu_count()))


_EXTRA_PIDS: set[int] = set()   # process groups we started and must count as ours (webserver, daemon, postgres)


def _own_cpu() -> float:
    import resource

    usage = [resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)]
    total = sum(u.ru_utime + u.ru_stime for u in usage)
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in _group_members():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks   # utime, stime of live group members
        except (OSError, IndexError):
            pass
    return total


def _group_members() -> list[int]:
    if not _EXTRA_PIDS:
        return []
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) in _EXTRA_PIDS:   # pgrp
                members.append(int(entry.name))
    return members


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (by parent pid, from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                parents[int(entry.name)] = int(Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = set(), [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent and child not in found]
        found.update(children)
        frontier += children
    return found


def stop_group(process: subprocess.Popen, first: int = signal.SIGINT, grace: float = 20.0) -> None:
    """Stop a process started with start_new_session=True: its process group, and its descendants that left
    the group (PostgreSQL's backends each call setsid(); they also exit when the postmaster dies)."""
    below = descendants(process.pid)
    try:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, first)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(grace)
    finally:   # also when a signal interrupts the wait: nothing of the group survives
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)   # the leader if it is still up, and children it left
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        for pid in below | descendants(process.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        _EXTRA_PIDS.discard(process.pid)


# --- a throwaway PostgreSQL server ---------------------------------------------------------------------

def postgres_bin_dir() -> Path:
    found = shutil.which("pg_ctl")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    raise SystemExit("PostgreSQL server binaries not found (initdb, postgres): apt-get install postgresql")


def server_user(folder: Path) -> list[str]:
    """The command prefix that runs the server binaries, and `folder` made theirs: as root, the `postgres`
    user (the server refuses to run as root); otherwise ourselves."""
    if os.geteuid() != 0:
        return []
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        account = pwd.getpwnam("nobody")
    os.chown(folder, account.pw_uid, account.pw_gid)
    return ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups"]


def _initdb(bin_dir: Path, as_user: list[str], data: Path, *extra: str) -> None:
    done = subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", PostgresServer.USER, "-A", "trust",
                           "-E", "UTF8", "--no-instructions", *extra], capture_output=True, text=True, cwd="/")
    if done.returncode != 0:   # as root, every folder above `data` must be searchable by the server's user
        raise RuntimeError(f"initdb {data} failed{' (as uid ' + as_user[1].split('=')[1] + ')' if as_user else ''}: "
                           f"{done.stderr.strip()[-1000:]}")


def psql(bin_dir: Path, port: int, database: str, sql: str) -> str:
    """Run SQL with the server's own psql client (no Python driver needed); its output."""
    done = subprocess.run([str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", PostgresServer.USER,
                           "-d", database, "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
                          capture_output=True, text=True, timeout=30, env={**os.environ, "PGCONNECT_TIMEOUT": "3"})
    if done.returncode != 0:
        raise RuntimeError(f"psql: {done.stderr.strip()}")
    return done.stdout.strip()


def postgres_url(port: int, database: str) -> str:
    # The driver dagster-postgres installs (psycopg2-binary), named: SQLAlchemy 2.1 maps a bare
    # postgresql:// to psycopg 3, which is not installed.
    return f"postgresql+psycopg2://{PostgresServer.USER}@127.0.0.1:{port}/{database}"


class PostgresServer:
    """initdb + postgres in a temp dir, on 127.0.0.1:<free port>, one process group; `stop()` removes all."""

    USER = "dagster"

    def __init__(self, root: Path | None = None, port: int | None = None) -> None:
        self.bin = postgres_bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="mlsys-pg-", dir=root))
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self._as_user = server_user(self.root)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str) -> str:
        return postgres_url(self.port, database)

    def start(self) -> PostgresServer:
        _initdb(self.bin, self._as_user, self.data, "--no-sync")
        with self.log.open("wb") as log:   # created by us, written through the inherited descriptor
            self.process = subprocess.Popen(
                [*self._as_user, str(self.bin / "postgres"), "-D", str(self.data), "-h", "127.0.0.1",
                 "-p", str(self.port), "-k", str(self.root), "-c", "max_connections=200"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.root)
        _EXTRA_PIDS.add(self.process.pid)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.execute("postgres", "SELECT 1")
                return self
            except Exception:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start; {self.log}:\n{self.log.read_text()[-2000:]}")
                time.sleep(0.2)

    def execute(self, database: str, sql: str) -> str:
        return psql(self.bin, self.port, database, sql)

    def create_database(self, name: str) -> str:
        self.execute("postgres", f'CREATE DATABASE "{name}"')
        return name

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process, signal.SIGINT)   # SIGINT: postgres' "fast" shutdown
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def instance_yaml(postgres_url: str | None) -> str:
    """The project's instance file; with a URL, plus Postgres storage for runs, events, schedules, slots."""
    text = LOCAL_INSTANCE.read_text()
    if postgres_url is None:
        return text
    text = text.split("\n", 1)[1] if text.startswith("# The Dagster instance used by") else text
    storage = {"storage": {"postgres": {"postgres_url": postgres_url}}}
    return ("# Written by bench/dagster_instance.py: .dagster/dagster.yaml with the instance storage (runs, event log,\n"
            "# schedules and sensors, pool slots) in PostgreSQL. Needs the postgres extra (dagster-postgres).\n"
            + yaml.safe_dump(storage, sort_keys=False) + text)


# --- child mode: one `mlsys` command (or the one-day update) with the event storage timed -----------------

def _time_event_storage(stats: dict) -> None:
    """Wrap store_event/store_event_batch of every event-log storage class that this process can load."""
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    classes = [SqliteEventLogStorage]
    with contextlib.suppress(ImportError):
        from dagster_postgres.event_log.event_log import PostgresEventLogStorage

        classes.append(PostgresEventLogStorage)
    depth = threading.local()

    def wrap(method, batch: bool):
        def timed(self, events):
            if getattr(depth, "n", 0):
                return method(self, events)
            depth.n = 1
            start, cpu_start = time.perf_counter(), time.thread_time()
            try:
                return method(self, events)
            finally:
                # wall time, and the CPU time of this thread: the rest is waiting (disk, locks, the server)
                seconds, cpu = time.perf_counter() - start, time.thread_time() - cpu_start
                depth.n = 0
                batch_events = list(events) if batch else [events]
                for event in batch_events:
                    kind = event.dagster_event_type.value if event.dagster_event_type else "LOG"
                    count, total, total_cpu = stats.get(kind, (0, 0.0, 0.0))
                    stats[kind] = (count + 1, total + seconds / len(batch_events), total_cpu + cpu / len(batch_events))
        return timed

    for cls in classes:
        for name, batch in (("store_event", False), ("store_event_batch", True)):
            if name in cls.__dict__:
                setattr(cls, name, wrap(cls.__dict__[name], batch))


def child_update_day(day: dt.date) -> dict:
    """bench/pipeline.py's one-day update (ingest the landed day, then customer_daily, customer_features and
    customer_predictions for it), with the runs' total."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from pipeline import child_update_day as update_day

    seconds = update_day(day)
    seconds["runs_total"] = sum(seconds.values())
    return seconds


def child_main(output: Path, args: list[str]) -> None:
    stats: dict = {}
    _time_event_storage(stats)
    result: dict = {}
    code = 0
    try:
        if args[0] == "update-day":
            result["update"] = child_update_day(dt.date.fromisoformat(args[1]))
        else:
            from mlsys_assets.cli import main as mlsys_main

            try:
                mlsys_main(args, standalone_mode=False)
            except SystemExit as exit_:
                code = exit_.code or 0
    finally:
        result["events"] = {kind: {"count": c, "seconds": s, "cpu_seconds": cpu} for kind, (c, s, cpu) in stats.items()}
        output.write_text(json.dumps(result))
    sys.exit(code)


# --- the shop, trials -----------------------------------------------------------------------------------

class Trial:
    def __init__(self, root: Path, backend: str, postgres_url: str | None) -> None:
        self.root, self.backend = root, backend
        self.data, self.home, self.log = root / "data", root / "dagster_home", root / "commands.log"
        self.home.mkdir(parents=True)
        (self.home / "dagster.yaml").write_text(instance_yaml(postgres_url))

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "MLSYS_DATA_DIR": str(self.data), "DAGSTER_HOME": str(self.home),
                "PYTHONWARNINGS": "ignore"}

    def run(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess:
        with self.log.open("a") as out:
            out.write(f"\n$ {' '.join(args)}\n")
            out.flush()
            done = subprocess.run(args, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        if check and done.returncode != 0:
            tail = "\n".join(self.log.read_text().splitlines()[-40:])
            raise RuntimeError(f"{' '.join(args)} failed (exit {done.returncode}); end of {self.log}:\n{tail}")
        return done

    def child(self, *args: str) -> dict:
        """This script in child mode (a fresh process): wall time, others' CPU, event-storage seconds."""
        output = self.root / "child.json"
        with Window() as window:
            self.run([sys.executable, str(Path(__file__).resolve()), "--child-output", str(output), "--child", *args])
        result = json.loads(output.read_text())
        events = result.pop("events")
        result.update(wall_s=window.seconds, others=window.others,
                      events=sum(e["count"] for e in events.values()),
                      event_write_s=sum(e["seconds"] for e in events.values()),
                      event_write_cpu_s=sum(e["cpu_seconds"] for e in events.values()),
                      events_by_type=events)
        return result

    def runs_since(self, since: float) -> list[dict]:
        """Runs created after `since`: planning (creation to start), run time, materialization event span."""
        from dagster import DagsterEventType, DagsterInstance

        with DagsterInstance.from_config(str(self.home)) as instance:
            out = []
            for record in sorted(instance.get_run_records(), key=lambda r: r.create_timestamp):
                if record.create_timestamp.timestamp() < since:
                    continue
                run = record.dagster_run
                stamps = [e.timestamp for e in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)]
                out.append({
                    "job": run.job_name, "status": run.status.value, "tags": dict(run.tags),
                    "launch_s": (record.start_time or 0) - record.create_timestamp.timestamp() if record.start_time else None,
                    "run_s": (record.end_time - record.start_time) if record.end_time and record.start_time else None,
                    "materializations": len(stamps),
                    "materialization_span_s": (max(stamps) - min(stamps)) if stamps else 0.0,
                })
            return out

    def failed_ticks(self) -> list[str]:
        from dagster import DagsterInstance
        from dagster._core.scheduler.instigation import TickStatus

        with DagsterInstance.from_config(str(self.home)) as instance:
            failures = []
            for state in instance.all_instigator_state():
                for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=200):
                    if tick.status == TickStatus.FAILURE:
                        failures.append(f"{state.instigator_name}: {tick.error.message.strip() if tick.error else '?'}")
            return failures

    def ticks(self) -> dict[str, int]:
        from dagster import DagsterInstance

        with DagsterInstance.from_config(str(self.home)) as instance:
            return {state.instigator_name: len(instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1000))
                    for state in instance.all_instigator_state()}


def measure_range_run(trial: Trial, args: list[str]) -> dict:
    since = time.time()
    result = trial.child(*args)
    runs = [r for r in trial.runs_since(since) if r["job"] == "ingest_transactions" or r["job"] == "refresh_features"]
    ranged = max(runs, key=lambda r: r["materializations"]) if runs else {}
    result.update(range_launch_s=ranged.get("launch_s"), range_run_s=ranged.get("run_s"),
                  range_materialization_span_s=ranged.get("materialization_span_s"),
                  range_materializations=ranged.get("materializations"))
    return result


class UiLoad:
    """dagster-webserver + dagster-daemon on the trial's instance, and a GraphQL client polling back to back."""

    def __init__(self, trial: Trial) -> None:
        self.trial, self.port = trial, free_port()
        self.processes: list[subprocess.Popen] = []
        self.latencies: list[tuple[float, str, float, bool]] = []   # (start time, query, seconds, ok)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _spawn(self, name: str, args: list[str]) -> None:
        log = (self.trial.root / f"{name}.log").open("w")
        process = subprocess.Popen(args, env=self.trial.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        _EXTRA_PIDS.add(process.pid)
        self.processes.append(process)

    def _query(self, query: str) -> dict:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/graphql", data=json.dumps({"query": query}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def _poll(self) -> None:
        while not self._stop.is_set():
            for name, query in UI_QUERIES.items():
                start = time.time()
                t0 = time.perf_counter()
                try:
                    body = self._query(query)
                    # GraphQL reports failures as `errors` or as a result whose __typename is an error type
                    typenames = re.findall(r'"__typename": "(\w+)"', json.dumps(body))
                    ok = "errors" not in body and not any(t.endswith("Error") for t in typenames)
                    if not ok:
                        self.errors.append(f"{name}: {json.dumps(body)[:300]}")
                except Exception as error:   # a refused or failed request is a finding, not a crash
                    ok = False
                    self.errors.append(f"{name}: {error}")
                self.latencies.append((start, name, time.perf_counter() - t0, ok))

    def start(self) -> None:
        module = ["-m", "mlsys_assets.definitions"]
        self._spawn("webserver", [str(BIN / "dagster-webserver"), *module, "-h", "127.0.0.1", "-p", str(self.port)])
        self._spawn("daemon", [str(BIN / "dagster-daemon"), "run", *module])
        deadline = time.monotonic() + 180
        while True:   # the webserver answers, and landing_sensor and automation have ticked (past their first look)
            with contextlib.suppress(Exception):
                self._query(UI_QUERIES["runs"])
                ticks = self.trial.ticks()
                if ticks and all(ticks.get(s, 0) >= 1 for s in ("landing_sensor", "automation")):
                    break
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                raise RuntimeError(f"webserver/daemon did not settle in 180 s; see {self.trial.root}/*.log")
            time.sleep(1)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(70)
        try:
            for process in self.processes:
                stop_group(process, signal.SIGTERM, grace=15)
        finally:
            for process in self.processes:   # what an interrupted stop left
                stop_group(process, signal.SIGKILL, grace=1)

    def log_errors(self) -> list[str]:
        lines = []
        for name in ("webserver", "daemon"):
            for line in (self.trial.root / f"{name}.log").read_text(errors="replace").splitlines():
                if ERROR_PATTERN.search(line):
                    lines.append(f"{name}: {line.strip()[:200]}")
        return lines


def _pctl(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def concurrent_run(trial: Trial, args: list[str]) -> dict:
    ui = UiLoad(trial)
    try:
        ui.start()
        time.sleep(3)   # a few idle polls to compare with
        before = len(ui.latencies)
        since = time.time()
        cli_log_start = trial.log.stat().st_size
        result = measure_range_run(trial, args)
        during = ui.latencies[before:]
        time.sleep(15)   # what the daemon does with the new materializations
    finally:
        ui.stop()
    launched = [r for r in trial.runs_since(since) if r["tags"].get("mlsys/trigger") != "cli"]
    cli_errors = [line for line in trial.log.read_text(errors="replace")[cli_log_start:].splitlines()
                  if ERROR_PATTERN.search(line)]
    idle = [s for (_, _, s, ok) in ui.latencies[:before] if ok]
    busy = [s for (_, _, s, ok) in during if ok]
    result.update(
        ui_queries=len(ui.latencies), ui_failed=sum(1 for *_, ok in ui.latencies if not ok),
        ui_idle_p50_ms=_pctl(idle, 0.5) * 1000, ui_busy_p50_ms=_pctl(busy, 0.5) * 1000,
        ui_busy_p95_ms=_pctl(busy, 0.95) * 1000, ui_busy_max_ms=max(busy, default=float("nan")) * 1000,
        ui_errors=ui.errors[:5], log_errors=ui.log_errors()[:10], cli_errors=cli_errors[:5],
        failed_ticks=trial.failed_ticks()[:5],
        daemon_runs=[f"{r['job']} {r['status']}" for r in launched],
    )
    return result


def prepare_shop(work: Path, customers: int) -> Path:
    """Simulate the shop and train its models once (SQLite instance): the trials reuse both (and a rerun
    with the same --work-dir reuses them too)."""
    production = work / "shop" / "data" / "serving" / "production.json"
    if production.exists() and (work / "landing_only").exists():
        return production
    shutil.rmtree(work / "shop", ignore_errors=True)
    shutil.rmtree(work / "landing_only", ignore_errors=True)
    base = Trial(work / "shop", "sqlite", None)
    base.run([str(BIN / "dagster"), "instance", "concurrency", "set", "warehouse", "1"])
    base.run([str(BIN / "mlsys"), "simulate", "--customers", str(customers), "--days", str(HISTORY_DAYS + 1),
              "--end-date", END_DAY.isoformat(), "--dirty-share", "0"])
    shutil.copytree(base.data, work / "landing_only")   # before anything is loaded: landing zone, simulation
    history_end = (END_DAY - dt.timedelta(days=1)).isoformat()
    for args in (["ingest", "--to", history_end], ["features"], ["train"]):
        base.run([str(BIN / "mlsys"), *args])
    return production


def run_trial(work: Path, backend: str, index: int, server: PostgresServer | None, production: Path) -> dict:
    url = server.url(server.create_database(f"trial_{index}")) if server else None
    shutil.rmtree(work / f"{backend}_{index}", ignore_errors=True)
    trial = Trial(work / f"{backend}_{index}", backend, url)
    shutil.copytree(work / "landing_only", trial.data)
    (trial.data / "serving").mkdir(exist_ok=True)
    shutil.copy(production, trial.data / "serving" / "production.json")   # the shop's models, by absolute path
    trial.run([str(BIN / "dagster"), "instance", "concurrency", "set", "warehouse", "1"])
    history_end = (END_DAY - dt.timedelta(days=1)).isoformat()
    result = {"backend": backend, "index": index}
    print(f"  {backend} #{index}: ingest", end="", flush=True)
    result["ingest"] = measure_range_run(trial, ["ingest", "--to", history_end])
    print(" features", end="", flush=True)
    result["features"] = measure_range_run(trial, ["features"])
    print(" update", end="", flush=True)
    result["update"] = trial.child("update-day", END_DAY.isoformat())
    print(" re-ingest", end="", flush=True)
    result["reingest"] = measure_range_run(trial, ["ingest", "--to", history_end])
    print(" re-ingest+UI+daemon", end="", flush=True)
    result["concurrent"] = concurrent_run(trial, ["ingest", "--to", history_end])
    print(" done", flush=True)
    return result


# --- the event writes alone, A/B in small alternating chunks ----------------------------------------------

def event_writes_ab(work: Path, server: PostgresServer, source_home: Path, chunk: int = 50) -> dict:
    """Store the events of a recorded 730-day ingest range run again, into a new SQLite instance and a new
    Postgres database, alternating every `chunk` events, so that both see the same machine load.

    Per backend: wall seconds inside store_event, CPU seconds of this thread, and (Postgres) the CPU the
    server's processes used meanwhile."""
    from dagster import DagsterEventType, DagsterInstance

    with DagsterInstance.from_config(str(source_home)) as source:
        runs = [r for r in source.get_run_records() if r.dagster_run.job_name == "ingest_transactions"]
        first = min(runs, key=lambda r: r.create_timestamp).dagster_run.run_id
        events = source.all_logs(first)
    planned = sum(1 for e in events if e.dagster_event_type == DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
    homes = {}
    for backend in BACKENDS:
        home = work / f"events_{backend}_{len(list(work.glob(f'events_{backend}_*')))}"
        home.mkdir(parents=True)
        url = server.url(server.create_database(home.name)) if backend == "postgres" else None
        (home / "dagster.yaml").write_text(instance_yaml(url))
        homes[backend] = home
    totals = {b: {"wall_s": 0.0, "cpu_s": 0.0, "server_cpu_s": 0.0} for b in BACKENDS}
    ticks = os.sysconf("SC_CLK_TCK")

    def server_cpu() -> float:
        total = 0.0
        for pid in {server.process.pid} | descendants(server.process.pid):
            with contextlib.suppress(OSError, IndexError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / ticks
        return total

    with Window() as window:
        with DagsterInstance.from_config(str(homes["sqlite"])) as lite, \
                DagsterInstance.from_config(str(homes["postgres"])) as pg:
            storages = {"sqlite": lite.event_log_storage, "postgres": pg.event_log_storage}
            for start in range(0, len(events), chunk):
                for backend in BACKENDS:
                    server_before = server_cpu() if backend == "postgres" else 0.0
                    wall, cpu = time.perf_counter(), time.thread_time()
                    for event in events[start:start + chunk]:
                        storages[backend].store_event(event)
                    totals[backend]["wall_s"] += time.perf_counter() - wall
                    totals[backend]["cpu_s"] += time.thread_time() - cpu
                    if backend == "postgres":   # backends that exited meanwhile are not counted: a lower bound
                        totals[backend]["server_cpu_s"] += server_cpu() - server_before
    return {"events": len(events), "planned": planned, "others": window.others, **totals}


# --- report ----------------------------------------------------------------------------------------------

ROWS = [
    # (label, phase, key)
    ("730-day ingest, `mlsys ingest` wall s", "ingest", "wall_s"),
    ("  range run: creation to start (planned events) s", "ingest", "range_launch_s"),
    ("  range run: start to end s", "ingest", "range_run_s"),
    ("  range run: first to last materialization s", "ingest", "range_materialization_span_s"),
    ("  event-storage writes s (whole command)", "ingest", "event_write_s"),
    ("    of which CPU of the writing thread s", "ingest", "event_write_cpu_s"),
    ("  events written", "ingest", "events"),
    ("  ms per event written", "ingest", "ms_per_event"),
    ("customer_daily x 730, `mlsys features` wall s", "features", "wall_s"),
    ("  range run: creation to start s", "features", "range_launch_s"),
    ("  range run: start to end s", "features", "range_run_s"),
    ("  event-storage writes s", "features", "event_write_s"),
    ("    of which CPU of the writing thread s", "features", "event_write_cpu_s"),
    ("one-day update (4 runs, in one process) s", "update", ("update", "runs_total")),
    ("  of which ingest_transactions s", "update", ("update", "ingest_transactions")),
    ("  event-storage writes s", "update", "event_write_s"),
    ("    of which CPU of the writing thread s", "update", "event_write_cpu_s"),
    ("  events written", "update", "events"),
    ("  update as a fresh process, wall s", "update", "wall_s"),
    ("730-day re-ingest, quiet, wall s", "reingest", "wall_s"),
    ("  event-storage writes s", "reingest", "event_write_s"),
    ("730-day re-ingest with UI + daemon, wall s", "concurrent", "wall_s"),
    ("  event-storage writes s", "concurrent", "event_write_s"),
    ("  UI query p50 ms, idle", "concurrent", "ui_idle_p50_ms"),
    ("  UI query p50 ms, during the run", "concurrent", "ui_busy_p50_ms"),
    ("  UI query p95 ms, during the run", "concurrent", "ui_busy_p95_ms"),
    ("  UI query max ms, during the run", "concurrent", "ui_busy_max_ms"),
    ("  UI queries failed", "concurrent", "ui_failed"),
    ("others' CPU share, ingest", "ingest", "others"),
    ("others' CPU share, re-ingest with UI + daemon", "concurrent", "others"),
]


def _value(trial: dict, phase: str, key) -> float | None:
    measured = trial.get(phase, {})
    if key == "ms_per_event":
        return 1000 * measured["event_write_s"] / measured["events"] if measured.get("events") else None
    if key == "event_write_cpu_s" and "event_write_cpu_s" not in measured:   # results of an older run
        kinds = measured.get("events_by_type", {}).values()
        return sum(k["cpu_seconds"] for k in kinds) if kinds and all("cpu_seconds" in k for k in kinds) else None
    node = measured
    for part in key if isinstance(key, tuple) else (key,):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _cell(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    median = statistics.median(values)
    digits = 0 if median >= 100 else (2 if median < 1 else 1)
    if len(values) == 1:
        return f"{median:.{digits}f}"
    return f"{median:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def print_event_writes(runs: list[dict]) -> None:
    if not runs:
        return
    print(f"\nThe same {runs[0]['events']:,} events of a 730-day ingest range run ({runs[0]['planned']} of them "
          f"'planned'), stored again into each backend, alternating every 50 events; medians (min-max), n = {len(runs)}:\n")
    print("| measure | SQLite | Postgres | Postgres / SQLite |\n|---|---:|---:|---:|")
    rows = [("wall s inside store_event", "wall_s"), ("  ms per event", "ms"), ("  CPU s of the writing thread", "cpu_s"),
            ("  CPU s of the Postgres server", "server_cpu_s")]
    for label, key in rows:
        values = {b: [1000 * r[b]["wall_s"] / r["events"] if key == "ms" else r[b][key] for r in runs] for b in BACKENDS}
        medians = [statistics.median(values[b]) for b in BACKENDS]
        ratio = f"{medians[1] / medians[0]:.2f}" if medians[0] else ""
        print(f"| {label} | {_cell(values['sqlite']) if key != 'server_cpu_s' else '-'} | {_cell(values['postgres'])} | "
              f"{ratio if key != 'server_cpu_s' else ''} |")
    print(f"| others' CPU share | {_cell([r['others'] for r in runs])} | (same window) | |")


def print_report(results: list[dict], event_writes: list[dict] | None = None) -> None:
    if not results:
        print_event_writes(event_writes or [])
        return
    by_backend = {b: [r for r in results if r["backend"] == b] for b in BACKENDS}
    n = {b: len(v) for b, v in by_backend.items()}
    print(f"\nMedians (min-max) over n = {n['sqlite']} SQLite and n = {n['postgres']} Postgres trials, run alternately:\n")
    print("| measure | SQLite | Postgres | Postgres / SQLite |\n|---|---:|---:|---:|")
    for label, phase, key in ROWS:
        cells, medians = [], []
        for backend in BACKENDS:
            values = [_value(r, phase, key) for r in by_backend[backend]]
            cells.append(_cell(values))
            present = [v for v in values if v is not None]
            medians.append(statistics.median(present) if present else None)
        ratio = f"{medians[1] / medians[0]:.2f}" if medians[0] and medians[1] is not None and "share" not in label \
            and "events written" not in label and "failed" not in label else ""
        counts = {len([v for v in (_value(r, phase, key) for r in by_backend[b]) if v is not None]) for b in BACKENDS}
        label += "" if counts <= {max(n.values())} else f" (n = {'/'.join(str(c) for c in sorted(counts))})"
        print(f"| {label} | {cells[0]} | {cells[1]} | {ratio} |")
    print("\nErrors and daemon activity while the UI and the daemon ran:")
    for result in results:
        c = result["concurrent"]
        print(f"  {result['backend']} #{result['index']}: UI failures {c['ui_failed']} of {c['ui_queries']} queries; "
              f"log errors {len(c['log_errors'])}; failed sensor ticks {len(c['failed_ticks'])}; "
              f"CLI errors {len(c['cli_errors'])}; daemon-launched runs: {', '.join(c['daemon_runs']) or 'none'}")
        for line in c["ui_errors"] + c["log_errors"] + c["failed_ticks"] + c["cli_errors"]:
            print(f"      {line}")
    print_event_writes(event_writes or [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="Trials per backend (default 3).")
    parser.add_argument("--customers", type=int, default=5000, help="Simulated customers (default 5000, the demo's).")
    parser.add_argument("--work-dir", type=Path, default=None, help="Where the shop and trials go (default: new under /tmp).")
    parser.add_argument("--keep", action="store_true", help="Keep the work directory (always kept with --work-dir).")
    parser.add_argument("--events-only", type=Path, metavar="TRIAL_DAGSTER_HOME",
                        help="Only the A/B of event writes, replaying the ingest range run of an earlier trial's instance.")
    parser.add_argument("--report", type=Path, metavar="RESULTS_JSON", help="Print the table of a finished run again.")
    if sys.argv[1:2] == ["--child-output"]:   # child mode: --child-output FILE --child MLSYS-ARGS...
        child_main(Path(sys.argv[2]), sys.argv[4:])
        return
    args = parser.parse_args()

    if args.report:
        saved = json.loads(args.report.read_text())
        saved = saved if isinstance(saved, dict) else {"trials": saved, "event_writes": []}
        print_report(saved["trials"], saved["event_writes"])
        return
    try:
        import dagster_postgres  # noqa: F401
    except ImportError:
        raise SystemExit("dagster-postgres is not installed: .tools/bin/uv sync --frozen --extra postgres")
    # SIGTERM (a timeout, kill PID) unwinds through the finally blocks, which stop every process group.
    def terminated(*_) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)   # a second one must not interrupt the cleanup
        sys.exit(143)

    signal.signal(signal.SIGTERM, terminated)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="mlsys-bench-instance-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: list[dict] = []
    event_writes: list[dict] = []

    def save() -> None:
        (work / "results.json").write_text(json.dumps({"trials": results, "event_writes": event_writes},
                                                      indent=2, default=str))

    server = PostgresServer()
    try:
        server.start()
        print(f"postgres on 127.0.0.1:{server.port} ({server.bin}); work dir {work}")
        if not args.events_only:
            print(f"shop: {args.customers:,} customers, {HISTORY_DAYS} days + 1; training its models once ...", flush=True)
            production = prepare_shop(work, args.customers)
            for index in range(args.repeats):
                for backend in BACKENDS:   # alternately: sqlite, postgres, sqlite, postgres, ...
                    results.append(run_trial(work, backend, index, server if backend == "postgres" else None, production))
                    save()
        source = args.events_only or work / "sqlite_0" / "dagster_home"
        for index in range(args.repeats):
            print(f"  event writes A/B #{index}", flush=True)
            event_writes.append(event_writes_ab(work, server, source))
            save()
    finally:
        server.stop()
        if results or event_writes:
            print_report(results, event_writes)
        print(f"\nbench wall time {time.perf_counter() - started:.0f} s; cpus {os.cpu_count()}; results {work / 'results.json'}")
        if not (args.work_dir or args.keep):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
