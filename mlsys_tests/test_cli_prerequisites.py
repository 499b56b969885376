"""A command that meets a missing prerequisite says, in one line, which command to run first, and exits
with 1 without a traceback.

`mlsys_assets.runs` binds the Dagster definitions to $MLSYS_DATA_DIR when it is imported, so each
command runs as the user runs it: a subprocess on its own data directory and Dagster instance."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MLSYS = str(Path(sys.executable).with_name("mlsys"))


@pytest.fixture
def mlsys(tmp_path, cli_env):
    """Run `mlsys ARGS` on an empty data directory under tmp_path."""
    env = cli_env

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([MLSYS, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)

    run.data_dir = tmp_path / "data"
    return run


def assert_asks_for(result: subprocess.CompletedProcess, first: str, returncode: int = 1) -> None:
    """Exactly one line names `first` as the command to run first; no traceback, the given exit code."""
    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if f"run `{first}`" in line and "first" in line]
    assert result.returncode == returncode, output
    assert len(lines) == 1, output
    assert "Traceback" not in output and "Stack Trace" not in output, output


def deliver(data_dir: Path, day: str, rows: list[str]) -> None:
    folder = data_dir / "landing" / "transactions"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{day}.csv").write_text("\n".join(["customer_id,event_time,amount", *rows]) + "\n")


def test_without_a_warehouse_every_command_asks_for_ingest_or_import(mlsys):
    for command in (["features"], ["train"], ["predict"], ["monitor"], ["sql", "SELECT 1"]):
        assert_asks_for(mlsys(*command), "mlsys ingest")
    assert_asks_for(mlsys("ingest"), "mlsys import FILE")
    # status reports what is there; an empty data directory is a state, not an error.
    assert_asks_for(mlsys("status"), "mlsys import FILE", returncode=0)


def test_features_on_an_empty_raw_table_asks_for_ingest(mlsys):
    deliver(mlsys.data_dir, "2025-01-01", [])  # a day without sales
    assert mlsys("ingest").returncode == 0

    assert_asks_for(mlsys("features"), "mlsys ingest")


def test_after_ingest_the_later_commands_ask_for_their_predecessor(mlsys):
    deliver(mlsys.data_dir, "2025-01-01", ["c1,2025-01-01,10.00", "c2,2025-01-01,0.00"])
    assert mlsys("ingest").returncode == 0

    assert_asks_for(mlsys("predict"), "mlsys features")
    assert_asks_for(mlsys("monitor"), "mlsys predict")
    assert_asks_for(mlsys("sql", "SELECT * FROM predictions.customer_predictions"), "mlsys predict")

    assert_asks_for(mlsys("train"), "mlsys features")
    assert mlsys("features").returncode == 0
    # No model trained yet: the classic model serves (here without a fit: two customers are too few).
    predicted = mlsys("predict")
    assert predicted.returncode == 0 and "Traceback" not in predicted.stdout + predicted.stderr, predicted.stdout
    assert "2 customers scored" in predicted.stdout
    short = mlsys("train")
    assert short.returncode == 1 and "Traceback" not in short.stdout + short.stderr
    assert "not enough history for training" in short.stdout and "--min-history-days" in short.stdout


def test_every_command_that_runs_jobs_takes_data_dir_like_the_others(mlsys, tmp_path):
    """--data-dir wins over $MLSYS_DATA_DIR for ingest as for status: the definitions bind to it at run time."""
    elsewhere = tmp_path / "elsewhere"
    deliver(elsewhere, "2025-01-01", ["c1,2025-01-01 10:00:00,10.00"])

    ingested = mlsys("ingest", "--data-dir", str(elsewhere))
    status = mlsys("status", "--data-dir", str(elsewhere))

    assert ingested.returncode == 0, ingested.stdout + ingested.stderr
    assert (elsewhere / "warehouse.duckdb").exists() and not (mlsys.data_dir / "warehouse.duckdb").exists()
    assert "1 rows loaded" in status.stdout, status.stdout


def _leaf_commands(group, prefix=()):
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            yield from _leaf_commands(command, (*prefix, name))
        else:
            yield " ".join((*prefix, name)), command


def test_every_mlsys_command_takes_data_dir():
    from mlsys_assets.cli import main

    without = [name for name, command in _leaf_commands(main)
               if not any("--data-dir" in getattr(param, "opts", ()) for param in command.params)]
    commands = [name for name, _ in _leaf_commands(main)]
    assert len(commands) >= 16 and without == [], f"no --data-dir: {without}"
