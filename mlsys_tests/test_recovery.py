"""Crash recovery: an `mlsys ingest` killed with `kill -9` during its warehouse step never keeps the
warehouse. Its run keeps the `warehouse` pool's only slot in the instance (Dagster cannot know the process
died), so without recovery every later run would wait for it forever; `mlsys` frees it and marks the run
failed before it launches a run, and `mlsys doctor` does the same on demand.
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
from dagster import DagsterInstance, DagsterRun, DagsterRunStatus

from mlsys_assets.recovery import PID_START_TAG, process_tags, run_process_alive

REPO = Path(__file__).resolve().parents[1]
MLSYS = str(Path(sys.executable).with_name("mlsys"))


def _mlsys(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([MLSYS, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _start_ingest(env: dict) -> subprocess.Popen:
    # Its own process group (so the kill takes all of it), with default signal handling restored.
    return subprocess.Popen(["env", "--default-signal=INT,TERM", MLSYS, "ingest"], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _warehouse_claims(instance: DagsterInstance) -> dict[str, DagsterRun]:
    """Run id -> run, for the runs holding the warehouse pool's slot."""
    info = instance.event_log_storage.get_concurrency_info("warehouse")
    return {slot.run_id: instance.get_run_by_id(slot.run_id) for slot in info.claimed_slots}


def _kill_during_ingest_step(env: dict, instance: DagsterInstance) -> str:
    """Start `mlsys ingest`, kill -9 its process group at a random moment of its raw/transactions step
    (the step takes ~1.5 s here); return the killed run's id."""
    process = _start_ingest(env)
    deadline = time.monotonic() + 120
    try:
        while True:
            assert process.poll() is None, f"ingest ended before its warehouse step was seen:\n{process.communicate()[0]}"
            # Without recovery, the run after a kill waits here for the dead run's slot (seen: 120 s, then this).
            assert time.monotonic() < deadline, "ingest never started its warehouse step"
            claims = [run_id for run_id, run in _warehouse_claims(instance).items() if run is not None
                      and run.job_name == "ingest_transactions" and run.tags.get("mlsys/pid") == str(process.pid)]
            if claims:
                break
            time.sleep(0.02)
        time.sleep(random.uniform(0, 0.8))
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    return claims[0]


def test_killed_ingest_never_keeps_the_warehouse(tmp_path):
    data_dir, home = tmp_path / "data", tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / ".dagster" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "MLSYS_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(home), "MLSYS_PII_KEY": "test",
           "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": "1"}
    env.pop("MLSYS_PARTITIONS_START", None)
    subprocess.run([str(Path(sys.executable).with_name("dagster")), "instance", "concurrency", "set", "warehouse", "1"],
                   env=env, check=True, capture_output=True, timeout=120)
    simulated = _mlsys(env, "simulate", "--customers", "2000", "--days", "120", "--data-dir", str(data_dir))
    assert simulated.returncode == 0, simulated.stderr

    with DagsterInstance.from_config(str(home)) as instance:
        killed = []
        for _ in range(2):
            killed.append(_kill_during_ingest_step(env, instance))
            # Without recovery the next run would wait forever: the dead run still holds the only slot.
            run = instance.get_run_by_id(killed[-1])
            assert run.status == DagsterRunStatus.STARTED
            assert run_process_alive(run) is False
            assert list(_warehouse_claims(instance)) == [killed[-1]]

        completed = _mlsys(env, "ingest", timeout=180)
        assert completed.returncode == 0, completed.stdout + completed.stderr
        assert f"recovered: run {killed[-1]} (ingest_transactions, STARTED): its process" in completed.stdout
        for run_id in killed:
            assert instance.get_run_by_id(run_id).status == DagsterRunStatus.FAILURE
        assert _warehouse_claims(instance) == {}

    doctor = _mlsys(env, "doctor")
    assert doctor.returncode == 0 and doctor.stdout.strip() == "all is well: no dead run holds or waits for the warehouse pool"
    landing_days = len(list((data_dir / "landing" / "transactions").glob("*.csv")))
    con = duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)
    try:
        loaded_days = con.execute("SELECT count(DISTINCT delivery_date) FROM raw.transactions").fetchone()[0]
    finally:
        con.close()
    assert landing_days == 120 and loaded_days == landing_days


def test_a_reused_pid_is_not_the_runs_process():
    tags = process_tags()
    assert run_process_alive(DagsterRun(job_name="j", run_id="r1", tags=tags)) is True
    # The same pid started at another moment: another process that reused the dead run's pid.
    reused = {**tags, PID_START_TAG: str(int(tags[PID_START_TAG]) - 1)}
    assert run_process_alive(DagsterRun(job_name="j", run_id="r2", tags=reused)) is False
    # Runs without the tags (the daemon's) are left to the daemon.
    assert run_process_alive(DagsterRun(job_name="j", run_id="r3", tags={})) is None


def test_doctor_frees_a_dead_runs_claim(tmp_path):
    """`mlsys doctor` alone (no run launched) marks a dead CLI run failed and frees its slot, frees the slot a
    finished run left behind, and leaves a live run alone."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / ".dagster" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "MLSYS_DATA_DIR": str(tmp_path / "data"), "PYTHONWARNINGS": "ignore"}
    # A real process that ends: its pid is then gone.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with DagsterInstance.from_config(str(home)) as instance:
        instance.event_log_storage.set_concurrency_slots("warehouse", 4)
        run = instance.create_run_for_job(
            job_def=_tiny_job(), tags={**process_tags(), "mlsys/pid": str(dead.pid)}, status=DagsterRunStatus.STARTED)
        # A run of a live process (this test's) holds the other slot: it stays.
        live = instance.create_run_for_job(job_def=_tiny_job(), tags=process_tags(), status=DagsterRunStatus.STARTED)
        # A run that failed without freeing its slot (a run worker killed mid-step under the daemon).
        finished = instance.create_run_for_job(job_def=_tiny_job(), status=DagsterRunStatus.FAILURE)
        # A run that failed a moment ago: its step process may still be stopping, its slot stays for now.
        just_failed = instance.create_run_for_job(job_def=_tiny_job(), status=DagsterRunStatus.STARTED)
        for claimant in (run, live, finished, just_failed):
            instance.event_log_storage.claim_concurrency_slot("warehouse", claimant.run_id, "raw__transactions")
        instance.report_run_failed(just_failed)
        assert set(_warehouse_claims(instance)) == {run.run_id, live.run_id, finished.run_id, just_failed.run_id}
    doctor = _mlsys(env, "doctor")
    assert doctor.returncode == 0, doctor.stderr
    assert sorted(doctor.stdout.splitlines()) == sorted([
        f"recovered: run {run.run_id} (tiny, STARTED): its process {dead.pid} is gone; "
        "marked failed, freed its warehouse pool claim",
        f"recovered: run {finished.run_id} (FAILURE): freed the pool claim it left behind",
        f"run {live.run_id} step raw__transactions holds the warehouse pool (process {os.getpid()} running)",
        f"run {just_failed.run_id} step raw__transactions holds the warehouse pool (FAILURE: freed 30 s after its end)",
    ])
    with DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(live.run_id).status == DagsterRunStatus.STARTED
        assert set(_warehouse_claims(instance)) == {live.run_id, just_failed.run_id}


def _tiny_job():
    from dagster import job, op

    @op
    def step():
        pass

    @job
    def tiny():
        step()

    return tiny
