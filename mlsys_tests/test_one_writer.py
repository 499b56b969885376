"""One writer: concurrent CLI materializations share the warehouse through the `warehouse` pool.

Two `dagster asset materialize` processes ingest different days at the same time against one
instance (with the shipped dagster.yaml) while the sensors are evaluated: both succeed, their warehouse
steps do not overlap, and nothing reports a lock error.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, EventRecordsFilter, build_sensor_context

from mlsys_assets.automation.landing import landing_sensor
from mlsys_assets.resources import LandingZone

REPO = Path(__file__).resolve().parents[1]


def _write_day(data_dir: Path, day: str, rows: int) -> None:
    lines = ["transaction_id,customer_id,event_time,amount,quantity"]
    lines += [f"T{day}-{i},C{i % 7},{day} 10:00:00,{i + 1}.50,1" for i in range(rows)]
    (data_dir / "landing" / "transactions" / f"{day}.csv").write_text("\n".join(lines) + "\n")


def test_concurrent_cli_runs_take_turns_on_the_warehouse(tmp_path):
    data_dir, home = tmp_path / "data", tmp_path / "dagster_home"
    (data_dir / "landing" / "transactions").mkdir(parents=True)
    home.mkdir()
    shutil.copy(REPO / ".dagster" / "dagster.yaml", home / "dagster.yaml")
    days = ["2025-03-01", "2025-03-02"]
    for day in days:
        _write_day(data_dir, day, rows=2000)
    # As `make install` does: create the pool's slots up front (two first claims racing to create them
    # lazily can both succeed).
    with DagsterInstance.from_config(str(home)) as instance:
        instance.event_log_storage.set_concurrency_slots("warehouse", 1)
    env = {**os.environ, "MLSYS_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(home), "MLSYS_PII_KEY": "test"}
    dagster = str(Path(sys.executable).with_name("dagster"))
    processes = [
        subprocess.Popen(
            [dagster, "asset", "materialize", "-m", "mlsys_assets.definitions",
             "--select", "raw/transactions", "--partition", day],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for day in days
    ]
    # Sensors keep ticking while the runs write: they read the landing zone, never the warehouse.
    with DagsterInstance.from_config(str(home)) as instance:
        landing = LandingZone(data_dir=str(data_dir))
        cursor = None
        while any(p.poll() is None for p in processes):
            result = landing_sensor(build_sensor_context(instance=instance, cursor=cursor, resources={"landing": landing}))
            cursor = result.cursor
        outputs = [p.communicate()[0] for p in processes]
        assert [p.returncode for p in processes] == [0, 0], outputs
        assert not any("lock" in out.lower() and "error" in out.lower() for out in outputs)

        windows = []
        for event_type in (DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS):
            records = instance.get_event_records(EventRecordsFilter(event_type=event_type))
            windows.append(sorted(
                (r.event_log_entry.run_id, r.event_log_entry.timestamp)
                for r in records if r.event_log_entry.step_key == "raw__transactions"
            ))
        (run_a, start_a), (run_b, start_b) = windows[0]
        end = dict(windows[1])
        first, second = sorted([(start_a, end[run_a]), (start_b, end[run_b])])
        assert first[1] <= second[0], f"warehouse steps overlapped: {first} and {second}"

    import duckdb

    con = duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)
    try:
        per_day = con.execute(
            "SELECT delivery_date::VARCHAR, count(*) FROM raw.transactions GROUP BY 1 ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    assert per_day == [(days[0], 2000), (days[1], 2000)]
