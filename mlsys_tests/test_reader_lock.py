"""Readers during a write: `mlsys sql` and `mlsys status` wait a few seconds for a writing process, then
fail with one line naming it (PID and command line) and what to do, never with a raw DuckDB traceback."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

REPO = Path(__file__).resolve().parents[1]
MLSYS = str(Path(sys.executable).with_name("mlsys"))
WRITER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("INSERT INTO raw.transactions VALUES (2)")
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
print("released", flush=True)
time.sleep(60)
"""


@pytest.fixture
def warehouse(tmp_path) -> Path:
    path = tmp_path / "data" / "warehouse.duckdb"
    path.parent.mkdir()
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA raw; CREATE TABLE raw.transactions (x INTEGER); INSERT INTO raw.transactions VALUES (1)")
    con.close()
    return path


def _writer(path: Path, hold_seconds: float) -> subprocess.Popen:
    """A real process holding the warehouse open for writing for `hold_seconds` (its own process group)."""
    process = subprocess.Popen(
        ["env", "--default-signal=INT,TERM", sys.executable, "-c", WRITER, str(path), str(hold_seconds)],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert process.stdout.readline().strip() == "holding"
    return process


def _stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def _mlsys(path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLSYS_DATA_DIR": str(path.parent), "PYTHONWARNINGS": "ignore"}
    return subprocess.run([MLSYS, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", [["sql", "SELECT count(*) AS n FROM raw.transactions"], ["status"]])
def test_reader_names_the_writer_holding_the_lock(warehouse, command):
    writer = _writer(warehouse, hold_seconds=120)
    try:
        started = time.monotonic()
        result = _mlsys(warehouse, *command)
        waited = time.monotonic() - started
    finally:
        _stop(writer)
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"Error: the warehouse {warehouse} is being written by PID {writer.pid} (")
    assert "holding" in lines[0] and "(waited 5 s): retry when it finishes" in lines[0], lines[0]  # its command line
    assert "run `mlsys doctor`" in lines[0]
    assert waited >= 5


def test_reader_waits_for_a_short_write(warehouse):
    writer = _writer(warehouse, hold_seconds=3)
    try:
        result = _mlsys(warehouse, "sql", "SELECT count(*) AS n FROM raw.transactions")
    finally:
        _stop(writer)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["n", "2"]
