"""The partition calendar fits the data: unset, it starts at the first delivered day; set, the setting
wins; and a landing day off the calendar is refused before any row is written, naming the setting.

The calendar is fixed when mlsys_assets is imported (conftest pins it to 2024-01-01 for the in-process
tests), so the end-to-end cases run `mlsys` in subprocesses with their own environment."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from mlsys_assets.settings import first_delivery_day, partitions_start

REPO = Path(__file__).resolve().parents[1]
MLSYS = str(Path(sys.executable).with_name("mlsys"))


def _day_file(root: Path, name: str, text: str = "customer_id,event_time,amount\n") -> Path:
    path = root / "landing" / "transactions" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_calendar_starts_at_the_first_landing_file_when_the_setting_is_unset(tmp_path, monkeypatch):
    monkeypatch.delenv("MLSYS_PARTITIONS_START", raising=False)
    for name in ("1998-01-01.parquet", "1997-03-02.csv", "1997-13-01.csv", "1990-01-01.txt", "notes.csv"):
        _day_file(tmp_path, name)

    assert first_delivery_day(tmp_path) == dt.date(1997, 3, 2)
    assert partitions_start(tmp_path) == dt.date(1997, 3, 2)


def test_the_setting_wins_over_the_landing_zone(tmp_path, monkeypatch):
    monkeypatch.setenv("MLSYS_PARTITIONS_START", "1990-05-01")
    _day_file(tmp_path, "1997-03-02.csv")

    assert partitions_start(tmp_path) == dt.date(1990, 5, 1)


def test_without_landing_files_the_calendar_starts_at_the_default(tmp_path, monkeypatch):
    monkeypatch.delenv("MLSYS_PARTITIONS_START", raising=False)

    assert partitions_start(tmp_path) == dt.date(2024, 1, 1)


def test_an_invalid_setting_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("MLSYS_PARTITIONS_START", "01/03/1997")

    with pytest.raises(ValueError, match="MLSYS_PARTITIONS_START must be an ISO date"):
        partitions_start(tmp_path)


def test_raw_transactions_refuses_a_range_before_the_calendar_before_writing(
    data_dir, write_transactions, ingest_transactions, failure_message
):
    # conftest pins the calendar to start at 2024-01-01.
    write_transactions("2023-12-31", ["t1,c1,2023-12-31,10.00,1"])
    write_transactions("2024-01-01", ["t2,c1,2024-01-01,10.00,1"])

    result = ingest_transactions("2023-12-31", "2024-01-01", raise_on_error=False)

    message = failure_message(result)
    assert not result.success
    assert "2023-12-31.csv" in message and "2024-01-01" in message and "MLSYS_PARTITIONS_START" in message
    assert not (data_dir / "warehouse.duckdb").exists()  # refused before the warehouse was opened


# --- end to end, through the `mlsys` command --------------------------------------------------------------

def _mlsys(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MLSYS, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _warehouse_rows(env: dict, sql: str) -> list[tuple]:
    con = duckdb.connect(str(Path(env["MLSYS_DATA_DIR"]) / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


HISTORIC_EXPORT = """cust   day       total  status
A-1    19970101  12.00  shipped
A-1    19970214   0.00  shipped
A-2    19970102  30.00  Cancelled
A-2    19970102  25.00  shipped
A-3    19970301   7.50  shipped
A-1    19970302   0.00  shipped
"""
HISTORIC_MAPPING = """transactions:
  delimiter: whitespace
  columns: {customer_id: cust, event_time: day, amount: total}
  date_format: "%Y%m%d"
  exclude: {status: [cancelled]}
"""


def test_historic_log_imports_ingests_and_builds_features(tmp_path, cli_env):
    (tmp_path / "export.txt").write_text(HISTORIC_EXPORT)
    (tmp_path / "mapping.yaml").write_text(HISTORIC_MAPPING)

    steps = [_mlsys(cli_env, "import", str(tmp_path / "export.txt"), "--mapping", str(tmp_path / "mapping.yaml")),
             _mlsys(cli_env, "ingest"), _mlsys(cli_env, "features")]

    for step in steps:
        assert step.returncode == 0, step.stdout + step.stderr
        assert "Traceback" not in step.stdout + step.stderr
    assert "1 row(s) excluded by the mapping (status in [cancelled])" in steps[0].stdout
    assert _warehouse_rows(cli_env, "SELECT min(delivery_date), max(delivery_date), count(*), sum(amount) "
                                    "FROM raw.transactions") == [(dt.date(1997, 1, 1), dt.date(1997, 3, 2), 5, 44.5)]
    assert _warehouse_rows(cli_env, "SELECT customer_id, count(*), sum(spend) FROM features.customer_daily "
                                    "GROUP BY ALL ORDER BY 1") == [("A-1", 3, 12.0), ("A-2", 1, 25.0), ("A-3", 1, 7.5)]
    assert _warehouse_rows(cli_env, "SELECT DISTINCT as_of FROM features.customer_features") == [(dt.date(1997, 3, 2),)]


def test_ingest_refuses_days_before_the_setting_and_ingests_the_others(tmp_path, cli_env):
    root = Path(cli_env["MLSYS_DATA_DIR"])
    for day in ("1997-01-01", "1997-01-03", "1997-01-04"):
        _day_file(root, f"{day}.csv", f"customer_id,event_time,amount\nc1,{day},5.00\n")
    env = {**cli_env, "MLSYS_PARTITIONS_START": "1997-01-03"}

    result = _mlsys(env, "ingest")

    output = result.stdout + result.stderr
    refusals = [line for line in output.splitlines() if "MLSYS_PARTITIONS_START" in line]
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert len(refusals) == 1
    assert "1997-01-01.csv" in refusals[0] and "starts at 1997-01-03" in refusals[0]
    assert "MLSYS_PARTITIONS_START=1997-01-01" in refusals[0]  # how to fix it
    assert _warehouse_rows(env, "SELECT DISTINCT delivery_date FROM raw.transactions ORDER BY 1") == [
        (dt.date(1997, 1, 3),), (dt.date(1997, 1, 4),)]

    # The loaded days predate a calendar that now starts later (say the old landing files were archived):
    # features refuse with the setting named instead of failing inside Dagster.
    features = _mlsys({**env, "MLSYS_PARTITIONS_START": "1997-01-04"}, "features")

    output = features.stdout + features.stderr
    assert features.returncode == 1, output
    assert "Traceback" not in output
    assert "MLSYS_PARTITIONS_START=1997-01-03 and run `mlsys features` again" in output


def test_the_calendar_ends_yesterday_so_latest_names_a_day_that_is_over():
    """"Latest" in the UI's Materialize dialog is the last partition: a day a shop can have delivered."""
    from mlsys_assets.partitions import calendar_bounds, daily_partitions

    yesterday = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    assert daily_partitions.get_last_partition_key() == yesterday.isoformat()
    assert calendar_bounds()[1] == yesterday


def test_today_s_file_waits_until_the_day_is_over(write_transactions, data_dir, instance):
    from dagster import build_sensor_context

    from mlsys_assets.automation.landing import landing_sensor
    from mlsys_assets.resources import LandingZone

    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    write_transactions(today, [f"t1,c1,{today},10.00,1"])
    context = build_sensor_context(resources={"landing": LandingZone(data_dir=str(data_dir))}, instance=instance)

    result = landing_sensor(context)

    assert result.run_requests == []
    assert f"{today}.csv) are not over yet" in result.skip_reason.skip_message
    assert today not in result.cursor  # not remembered: tomorrow it is new
