"""The landing sensor starts one ingest run per new or changed file and nothing for content it has seen;
the definitions load with every asset in its layer's group and the sensors running by default."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from dagster import AssetKey, DefaultSensorStatus, Definitions, SensorResult, build_sensor_context, materialize

import mlsys_assets
from mlsys_assets.automation.landing import MAX_ATTEMPTS, landing_sensor
from mlsys_assets.automation.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG, RUN_KEY_TAG
from mlsys_assets.definitions import build_definitions
from mlsys_assets.ingest.assets import raw_customers, raw_transactions
from mlsys_assets.resources import LandingZone

DAY = "2025-01-01"
ROWS = ["t1,c1,2025-01-01,10.00,1"]


@pytest.fixture
def evaluate_sensor(data_dir, instance):
    def evaluate(cursor: str | None = None) -> SensorResult:
        context = build_sensor_context(
            cursor=cursor, resources={"landing": LandingZone(data_dir=str(data_dir))}, instance=instance
        )
        return landing_sensor(context)

    return evaluate


def test_new_file_requests_one_run_for_its_day(write_transactions, evaluate_sensor):
    write_transactions(DAY, ROWS)

    result = evaluate_sensor()

    [request] = result.run_requests
    assert (request.job_name, request.partition_key) == ("ingest_transactions", DAY)
    assert request.run_key


def test_evaluating_again_with_the_cursor_requests_nothing(write_transactions, evaluate_sensor):
    write_transactions(DAY, ROWS)
    first = evaluate_sensor()

    second = evaluate_sensor(first.cursor)

    assert len(first.run_requests) == 1
    assert second.run_requests == []


def test_touched_file_with_same_content_requests_nothing(write_transactions, evaluate_sensor):
    path = write_transactions(DAY, ROWS)
    first = evaluate_sensor()
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))

    second = evaluate_sensor(first.cursor)

    assert second.run_requests == []


def test_changed_content_requests_a_new_run_with_a_new_run_key(write_transactions, evaluate_sensor):
    write_transactions(DAY, ROWS)
    first = evaluate_sensor()
    write_transactions(DAY, [*ROWS, "t2,c2,2025-01-01,4.00,1"])

    second = evaluate_sensor(first.cursor)

    [first_request], [second_request] = first.run_requests, second.run_requests
    assert second_request.partition_key == DAY
    assert second_request.run_key != first_request.run_key


def test_many_new_files_request_range_runs_over_consecutive_days(write_transactions, evaluate_sensor):
    days = [f"2025-01-{day:02d}" for day in (*range(1, 11), 20, 21)]
    for day in days:
        write_transactions(day, [f"t-{day},c1,{day},10.00,1"])

    result = evaluate_sensor()

    ranges = [
        (request.job_name, request.tags[ASSET_PARTITION_RANGE_START_TAG], request.tags[ASSET_PARTITION_RANGE_END_TAG])
        for request in result.run_requests
    ]
    assert ranges == [
        ("ingest_transactions", "2025-01-01", "2025-01-10"),
        ("ingest_transactions", "2025-01-20", "2025-01-21"),
    ]
    assert len({request.run_key for request in result.run_requests}) == 2


def test_customers_file_requests_a_customers_run(write_customers, evaluate_sensor):
    write_customers(["c1,2024-05-01,DE,ads,ann@example.com,Ann Lee"])

    result = evaluate_sensor()

    [request] = result.run_requests
    assert request.job_name == "ingest_customers"
    assert request.run_key


def test_definitions_load_with_layer_groups_and_running_sensors(tmp_path):
    defs = build_definitions(tmp_path)

    Definitions.validate_loadable(defs)
    groups = {node.key: node.group_name for node in defs.resolve_asset_graph().asset_nodes}
    # A layer is a subpackage of mlsys_assets (ingest, ...), and its assets form the group of that name.
    layers = {path.name for path in Path(mlsys_assets.__file__).parent.iterdir() if (path / "__init__.py").exists()}
    assert groups[AssetKey(["raw", "transactions"])] == groups[AssetKey(["raw", "customers"])] == "ingest"
    assert set(groups.values()) <= layers
    assert {name: defs.resolve_sensor_def(name).default_status
            for name in ("landing_sensor", "automation", "drift_retraining")} == {
        "landing_sensor": DefaultSensorStatus.RUNNING,
        "automation": DefaultSensorStatus.RUNNING,
        "drift_retraining": DefaultSensorStatus.RUNNING,
    }


def test_file_before_the_calendar_gets_no_run_and_the_reason_names_the_setting(write_transactions, evaluate_sensor):
    # conftest pins the calendar to start at 2024-01-01: 2023-12-31 is no partition.
    write_transactions("2023-12-31", ["t0,c1,2023-12-31,10.00,1"])

    result = evaluate_sensor()

    assert result.run_requests == []
    assert "2023-12-31.csv" in result.skip_reason.skip_message
    assert "MLSYS_PARTITIONS_START" in result.skip_reason.skip_message
    # Not remembered: once the definitions load with a calendar that holds the day, it is new.
    assert "2023-12-31" not in (result.cursor or "")


def test_file_before_the_calendar_does_not_hold_up_the_others(write_transactions, evaluate_sensor):
    write_transactions("2023-12-31", ["t0,c1,2023-12-31,10.00,1"])
    write_transactions(DAY, ROWS)

    result = evaluate_sensor()

    assert [request.partition_key for request in result.run_requests] == [DAY]


def run_request(request, resources, instance):
    """Execute a sensor's run request as the daemon would: a real run carrying the request's run key."""
    tags = {**request.tags, RUN_KEY_TAG: request.run_key}
    return materialize([raw_transactions], resources=resources, instance=instance, tags=tags,
                       partition_key=request.partition_key, raise_on_error=False)


def backlog_with_a_corrupt_day(write_transactions) -> list[str]:
    """Nine new days (a range run), the fifth of which cannot be read (0 bytes)."""
    days = [f"2025-01-{day:02d}" for day in range(1, 10)]
    for day in days:
        write_transactions(day, [f"t-{day},c1,{day},10.00,1"])
    write_transactions(days[4], []).write_bytes(b"")
    return days


def test_a_corrupt_file_in_a_backlog_is_retried_and_the_others_are_settled(
    write_transactions, evaluate_sensor, resources, instance, query
):
    days = backlog_with_a_corrupt_day(write_transactions)
    first = evaluate_sensor()
    [request] = first.run_requests
    assert not run_request(request, resources, instance).success

    second = evaluate_sensor(first.cursor)

    # The other eight days loaded; only the corrupt day is requested again, under a new run key.
    assert [d.isoformat() for (d,) in query("SELECT DISTINCT delivery_date FROM raw.transactions ORDER BY 1")] == [
        d for d in days if d != days[4]]
    [retry] = second.run_requests
    assert retry.partition_key == days[4] and retry.run_key != request.run_key
    # Only what is in flight stays in the cursor: the retried day's request.
    state = json.loads(second.cursor)
    assert [list(entry["files"]) for entry in state["pending"].values()] == [[f"transactions/{days[4]}.csv"]]


def test_a_day_that_never_loads_stops_being_retried_and_is_named(
    write_transactions, evaluate_sensor, resources, instance
):
    days = backlog_with_a_corrupt_day(write_transactions)
    result = evaluate_sensor()
    requested = []
    while result.run_requests:
        [request] = result.run_requests
        requested.append(request.run_key)
        run_request(request, resources, instance)
        result = evaluate_sensor(result.cursor)

    assert len(requested) == MAX_ATTEMPTS
    assert f"transactions/{days[4]}.csv: did not load in {MAX_ATTEMPTS} attempts" in result.skip_reason.skip_message
    # Fixed content is new content: it is requested again.
    write_transactions(days[4], [f"t-{days[4]},c1,{days[4]},10.00,1"])
    assert [r.partition_key for r in evaluate_sensor(result.cursor).run_requests] == [days[4]]


def test_a_requested_run_still_pending_is_not_requested_again(write_transactions, evaluate_sensor, resources, instance):
    write_transactions(DAY, ROWS)
    first = evaluate_sensor()

    second = evaluate_sensor(first.cursor)
    run_request(first.run_requests[0], resources, instance)
    third = evaluate_sensor(second.cursor)

    assert second.run_requests == [] and third.run_requests == []
    assert json.loads(third.cursor) == {"customers": {}, "failed": {}, "pending": {}}


def test_files_the_instance_shows_loaded_request_nothing_from_a_fresh_cursor(
    write_transactions, write_customers, evaluate_sensor, resources, instance
):
    """`make demo` loads through the CLI, then `make ui` starts the sensor with no cursor: nothing to do."""
    days = [f"2025-02-{day:02d}" for day in range(1, 13)]
    for day in days:
        write_transactions(day, [f"t-{day},c1,{day},10.00,1"])
    write_customers(["c1,2024-05-01,DE,ads,ann@example.com,Ann Lee"])
    tags = {ASSET_PARTITION_RANGE_START_TAG: days[0], ASSET_PARTITION_RANGE_END_TAG: days[-1]}
    assert materialize([raw_customers], resources=resources, instance=instance).success
    assert materialize([raw_transactions], resources=resources, instance=instance, tags=tags).success

    fresh = evaluate_sensor()

    assert fresh.run_requests == []
    # The cursor holds what is in flight, not one entry per file.
    assert json.loads(fresh.cursor)["pending"] == {} and len(fresh.cursor) < 300
    # Touched but unchanged: still nothing; changed content (or customers): a run for just that.
    path = write_transactions(days[3], [f"t-{days[3]},c1,{days[3]},10.00,1"])
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert evaluate_sensor(fresh.cursor).run_requests == []
    write_transactions(days[3], [f"t-{days[3]},c1,{days[3]},12.00,1"])
    write_customers(["c1,2024-05-01,DE,ads,ann@example.com,Ann Lee", "c2,2024-05-02,DE,ads,bo@example.com,Bo"])
    changed = evaluate_sensor(fresh.cursor).run_requests
    assert [(r.job_name, r.partition_key) for r in changed] == [("ingest_customers", None), ("ingest_transactions", days[3])]


def test_a_range_run_records_each_day_s_own_rows_and_file(write_transactions, resources, instance):
    """One day's partition of a multi-day run shows that day's rows, not the run's (or the table's)."""
    days = {"2025-03-01": 1, "2025-03-02": 3, "2025-03-03": 2}
    paths = {day: write_transactions(day, [f"t-{day}-{i},c1,{day},10.00,1" for i in range(n)]) for day, n in days.items()}
    tags = {ASSET_PARTITION_RANGE_START_TAG: "2025-03-01", ASSET_PARTITION_RANGE_END_TAG: "2025-03-03"}
    result = materialize([raw_transactions], resources=resources, instance=instance, tags=tags)

    recorded = {m.partition: m.metadata for m in result.asset_materializations_for_node("raw__transactions")}
    assert {day: meta["dagster/row_count"].value for day, meta in recorded.items()} == days
    assert {day: meta["source_sha256"].value for day, meta in recorded.items()} == {
        day: hashlib.sha256(path.read_bytes()).hexdigest() for day, path in paths.items()}
    assert all(meta["run_rows_loaded"].value == 6 for meta in recorded.values())


BAD_NAMES = {
    "2024-02-30.csv": "is not a calendar day",
    "2024-13-01.csv": "is not a calendar day",
    "2024-07-17.CSV": "rename it to 2024-07-17.csv",
    "20240717.csv": "the name is not a delivery day",
    "tx-2024-07-17.csv": "the name is not a delivery day",
    "2024-07-18.csv.gz": "compressed files are not read",
}


def test_refused_landing_entries_are_named_with_their_reason_and_block_no_other_day(
    data_dir, write_transactions, evaluate_sensor
):
    folder = data_dir / "landing" / "transactions"
    for name in BAD_NAMES:
        (folder / name).write_text("transaction_id,customer_id,event_time,amount\n")
    (folder / "2024-09-02.csv").mkdir()
    (folder / "2024-09-03.csv").symlink_to("/etc/passwd")
    write_transactions("2024-09-04", ["t1,c1,2024-09-04,1.00,1"])
    (folder / "2024-09-04.parquet").write_bytes(b"PAR1")

    refused = evaluate_sensor().skip_reason.skip_message

    for name, reason in {**BAD_NAMES, "2024-09-02.csv": "a directory",
                         "2024-09-03.csv": "a symbolic link (to /etc/passwd)",
                         "2024-09-04.parquet": "two files for 2024-09-04"}.items():
        assert f"transactions/{name}: " in refused and reason in refused.split(f"transactions/{name}: ")[1].split(";")[0]
    assert "root:" not in refused
    write_transactions(DAY, ROWS)
    assert [r.partition_key for r in evaluate_sensor().run_requests] == [DAY]
