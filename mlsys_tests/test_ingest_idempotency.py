"""Re-running ingest replaces exactly the partitions of the run, and a failed run changes nothing."""

from __future__ import annotations

import datetime as dt

from dagster import DagsterEventType

DAY_1, DAY_2, DAY_3 = "2025-01-01", "2025-01-02", "2025-01-03"


def day_contents(query, day: str) -> dict[str, list[tuple]]:
    """Every column of one delivery day's loaded and quarantined rows, run id and timestamps included."""
    return {
        table: query(f"SELECT * FROM {table} WHERE delivery_date = ? ORDER BY ALL", [day])
        for table in ("raw.transactions", "raw.quarantine")
    }


def test_rematerializing_a_day_replaces_it(write_transactions, ingest_transactions, query):
    write_transactions(DAY_1, ["t1,c1,2025-01-01,10.00,1", "t2,c1,2025-01-01,abc,1", "t3,c2,2025-01-01,4.00,2"])
    loaded_sql = "SELECT transaction_id, customer_id, amount, source_line FROM raw.transactions ORDER BY ALL"
    quarantined_sql = "SELECT source_file, line, reason FROM raw.quarantine ORDER BY ALL"
    ingest_transactions(DAY_1)
    first_loaded, first_quarantined = query(loaded_sql), query(quarantined_sql)

    ingest_transactions(DAY_1)

    assert len(first_loaded) == 2 and len(first_quarantined) == 1
    assert (query(loaded_sql), query(quarantined_sql)) == (first_loaded, first_quarantined)


def test_changed_file_replaces_only_its_day(write_transactions, ingest_transactions, query):
    write_transactions(DAY_1, ["t1,c1,2025-01-01,10.00,1", "t2,c1,2025-01-01,-1.00,1"])
    write_transactions(DAY_2, ["t3,c2,2025-01-02,4.00,1", "t4,c2,2025-01-02,abc,1"])
    ingest_transactions(DAY_1, DAY_2)
    day_1_before = day_contents(query, DAY_1)
    write_transactions(DAY_2, ["t5,c3,2025-01-02,6.00,1"])

    ingest_transactions(DAY_2)

    assert day_contents(query, DAY_1) == day_1_before
    assert query("SELECT transaction_id FROM raw.transactions WHERE delivery_date = ?", [DAY_2]) == [("t5",)]
    assert query("SELECT count(*) FROM raw.quarantine WHERE delivery_date = ?", [DAY_2]) == [(0,)]


def test_range_run_with_an_unreadable_file_loads_the_other_days_and_fails_naming_it(
    write_transactions, ingest_transactions, query, instance, failure_message
):
    write_transactions(DAY_1, ["t1,c1,2025-01-01,10.00,1", "t2,c1,2025-01-01,abc,1"])
    write_transactions(DAY_2, ["t3,c2,2025-01-02,4.00,1"])
    unreadable = write_transactions(DAY_3, ["t4,c2,2025-01-03,5.00,1"])
    ingest_transactions(DAY_1, DAY_3)
    day_3_before = day_contents(query, DAY_3)
    write_transactions(DAY_1, ["t6,c1,2025-01-01,1.00,1"])
    unreadable.write_bytes(b"")

    result = ingest_transactions(DAY_1, DAY_3, raise_on_error=False)

    assert not result.success
    assert f"{unreadable}: the file is empty" in failure_message(result)
    # Its own day keeps what it had; the other days of the range load and are recorded as materialized.
    assert day_contents(query, DAY_3) == day_3_before
    assert query("SELECT transaction_id, run_id = ? FROM raw.transactions ORDER BY ALL", [result.run_id]) == [
        ("t3", True), ("t4", False), ("t6", True)
    ]
    materialized_in_run = {
        record.event_log_entry.dagster_event.partition
        for record in instance.get_records_for_run(result.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records
    }
    assert materialized_in_run == {DAY_1, DAY_2}


def test_range_run_where_no_file_loads_writes_nothing(
    data_dir, write_transactions, ingest_transactions, raw_contents, failure_message
):
    write_transactions(DAY_1, ["t1,c1,2025-01-01,10.00,1"])
    ingest_transactions(DAY_1)
    before = raw_contents()
    write_transactions(DAY_1, [], header="id;who;when")  # no required column any more
    unreadable = data_dir / "landing" / "transactions" / f"{DAY_2}.parquet"
    unreadable.write_bytes(b"this is not a parquet file")

    result = ingest_transactions(DAY_1, DAY_2, raise_on_error=False)

    assert not result.success
    message = failure_message(result)
    assert f"{unreadable}: not a readable Parquet file" in message and f"{DAY_1}.csv: missing required column" in message
    assert raw_contents() == before


def test_range_run_loads_every_day_in_one_run(write_transactions, ingest_transactions, query):
    write_transactions(DAY_1, ["t1,c1,2025-01-01,10.00,1"])
    write_transactions(DAY_2, ["t2,c1,2025-01-02,3.00,1", "t3,c2,2025-01-02,4.00,1"])
    write_transactions(DAY_3, ["t4,c2,2025-01-03,5.00,1"])

    result = ingest_transactions(DAY_1, DAY_3)

    assert query("SELECT delivery_date, run_id, count(*) FROM raw.transactions GROUP BY ALL ORDER BY ALL") == [
        (dt.date(2025, 1, 1), result.run_id, 1),
        (dt.date(2025, 1, 2), result.run_id, 2),
        (dt.date(2025, 1, 3), result.run_id, 1),
    ]
