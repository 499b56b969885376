"""`make demo`, then `make ui`: the daemon finds nothing to do until new data arrives.

A small demo runs through the CLI (as `make demo` does, in its own data directory and Dagster instance);
then the real `dagster dev` starts on it, and the test waits until every sensor (the landing sensor, the
drift sensor and the automation sensor) has ticked, then asserts that no run and no backfill was launched:
the CLI's loads are recorded where the sensor and automation look (materialization metadata, the
instance's history), not in state only the daemon would have had.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from dagster import DagsterInstance

from mlsys_tests.servers import Service, free_port, spawn

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
SENSORS = ("landing_sensor", "drift_retraining", "automation")
TICKS_QUERY = """
query {
  sensorsOrError(repositorySelector: {repositoryLocationName: "mlsys", repositoryName: "__repository__"}) {
    ... on Sensors { results { name sensorState { ticks(limit: 5) { status skipReason runIds } } } }
    ... on PythonError { message }
  }
}
"""


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory) -> dict:
    """A small `make demo` (simulate, ingest, features, train, predict, monitor) through the CLI."""
    root = tmp_path_factory.mktemp("demo")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / ".dagster" / "dagster.yaml", home / "dagster.yaml")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLSYS_", "DAGSTER_"))}
    # A 30-day horizon lets eight months of history hold the training grid and two backtest cutoffs.
    env = {**base, "MLSYS_DATA_DIR": str(root / "data"), "DAGSTER_HOME": str(home), "MLSYS_PII_KEY": "test",
           "MLSYS_HORIZON_DAYS": "30", "PYTHONWARNINGS": "ignore"}
    commands = [
        ["simulate", "--customers", "300", "--days", "240", "--dirty-share", "0.002"],
        # As `make demo` does, with a shorter history: several scored and monitored days.
        ["ingest"], ["features"], ["train", "--backtest-cutoffs", "2"], ["predict", "--days", "14"],
        ["monitor", "--days", "14", "--every", "7"],
    ]
    subprocess.run([str(BIN / "dagster"), "instance", "concurrency", "set", "warehouse", "1"], env=env, cwd=REPO,
                   check=True, capture_output=True)
    for args in commands:
        done = subprocess.run([str(BIN / "mlsys"), *args], env=env, cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 0, f"mlsys {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return env


def _ticks(port: int) -> dict[str, list[dict]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": TICKS_QUERY}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        sensors = json.load(response)["data"]["sensorsOrError"]
    return {s["name"]: s["sensorState"]["ticks"] for s in sensors["results"]}


def _wait_for_ticks(port: int, server: subprocess.Popen, timeout: float = 150) -> dict[str, list[dict]]:
    deadline, ticks = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        assert server.poll() is None, "dagster dev exited"
        try:
            ticks = _ticks(port)
        except OSError:  # the webserver is still starting
            ticks = {}
        if ticks and all(ticks.get(name) and ticks[name][0]["status"] != "STARTED" for name in SENSORS):
            return ticks
        time.sleep(2)
    pytest.fail(f"not every sensor ticked within {timeout} s: {ticks}")


def test_the_daemon_launches_nothing_after_the_demo(demo_env: dict, tmp_path: Path) -> None:
    with _instance(demo_env) as instance:
        cli_runs = {run.run_id for run in instance.get_runs()}
    assert cli_runs, "the demo recorded no run"
    port = free_port()
    server = Service(spawn([str(BIN / "dagster"), "dev", "--host", "127.0.0.1", "--port", str(port)],
                           tmp_path / "dagster_dev.log", demo_env, cwd=REPO), f"http://127.0.0.1:{port}",
                     tmp_path / "dagster_dev.log")
    try:
        ticks = _wait_for_ticks(port, server.process)
        time.sleep(5)  # a run requested by a tick is created right after it
        with _instance(demo_env) as instance:
            new_runs = [run for run in instance.get_runs() if run.run_id not in cli_runs]
            backfills = instance.get_backfills()
    finally:
        server.stop()
    summary = {name: [(t["status"], t["skipReason"]) for t in ticks[name]] for name in SENSORS}
    assert [(run.job_name, run.tags.get("dagster/sensor_name")) for run in new_runs] == [], summary
    assert backfills == [], summary
    assert all(tick["runIds"] == [] for name in SENSORS for tick in ticks[name]), summary
    assert "no new or changed landing files" in ticks["landing_sensor"][0]["skipReason"], summary


def _instance(env: dict) -> DagsterInstance:
    return DagsterInstance.from_config(env["DAGSTER_HOME"])
