"""The landing sensor starts one ingest run per new or changed file and nothing for content it has seen;
the definitions load with every asset in its layer's group and the sensors running by default."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dagster import AssetKey, DefaultSensorStatus, Definitions, SensorResult, build_sensor_context
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

import mlsys_assets
from mlsys_assets.definitions import build_definitions
from mlsys_assets.ingest.sensors import landing_sensor
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
