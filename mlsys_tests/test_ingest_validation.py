"""A corpus of bad landing input: each bad row is quarantined with its file, line, column and reason
while the valid rows of the same file load; each unreadable file fails the run naming the file and the
problem, leaving the warehouse as it was."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from dagster import AssetCheckSeverity

DAY = "2025-01-01"
DAY_FILE = f"transactions/{DAY}.csv"
# The bad row of each case sits between these two, on line 3 (the header is line 1).
VALID_BEFORE = "t1,c1,2025-01-01 09:30:00,12.50,1"
VALID_AFTER = "t2,c2,2025-01-01,3.00,2"


def write_mapping(data_dir: Path, yaml_text: str) -> None:
    (data_dir / "landing" / "mapping.yaml").write_text(yaml_text)


def check_evaluation(result, check_name: str):
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == check_name)


def materialization_metadata(result) -> dict:
    [event] = result.get_asset_materialization_events()
    return {key: value.value for key, value in event.materialization.metadata.items()}


@pytest.mark.parametrize(
    ("bad_row", "column", "reason"),
    [
        pytest.param("t9,c9,2025-01-01,5.00,1,surplus", None, "malformed_line", id="extra-field"),
        pytest.param("t9,c9,2025-01-01,abc,1", "amount", "invalid_number", id="amount-not-a-number"),
        pytest.param("t9,c9,31/02/2024,5.00,1", "event_time", "invalid_date", id="unparseable-date"),
        pytest.param("t9,c9,2025-01-01,-5.00,1", "amount", "negative_amount", id="negative-amount"),
        pytest.param("t9,c9,2025-01-01,250000000.00,1", "amount", "amount_too_large", id="absurd-amount"),
        pytest.param("t9,c9,2025-01-02,5.00,1", "event_time", "future_event", id="event-after-delivery-day"),
        pytest.param("t1,c9,2025-01-01,5.00,1", "transaction_id", "duplicate_id", id="duplicate-id-in-file"),
        pytest.param(b"t9,c\xff9,2025-01-01,5.00,1", "customer_id", "invalid_encoding", id="non-utf8-bytes"),
        # Values are never changed silently: 1.5 would round to 2, an offset would be dropped.
        pytest.param("t9,c9,2025-01-01,5.00,1.5", "quantity", "invalid_number", id="fractional-quantity"),
        pytest.param("t9,c9,2025-01-01T23:30:00-05:00,5.00,1", "event_time", "unsupported_timezone", id="utc-offset"),
        pytest.param("t9,c9,2025-01-01T09:30:00Z,5.00,1", "event_time", "unsupported_timezone", id="utc-z"),
    ],
)
def test_bad_row_is_quarantined_while_valid_rows_load(
    write_transactions, ingest_transactions, query, bad_row, column, reason
):
    write_transactions(DAY, [VALID_BEFORE, bad_row, VALID_AFTER])

    ingest_transactions(DAY)

    quarantined = query("SELECT source_file, line, column_name, reason FROM raw.quarantine")
    loaded = query("SELECT transaction_id, source_line FROM raw.transactions ORDER BY source_line")
    assert quarantined == [(DAY_FILE, 3, column, reason)]
    assert loaded == [("t1", 2), ("t2", 4)]


def test_duplicate_id_from_an_earlier_day_is_quarantined(write_transactions, ingest_transactions, query):
    write_transactions("2025-01-01", ["t1,c1,2025-01-01,10.00,1"])
    write_transactions("2025-01-02", ["t1,c1,2025-01-01,10.00,1", "t2,c2,2025-01-02,4.00,1"])
    ingest_transactions("2025-01-01")

    ingest_transactions("2025-01-02")

    assert query("SELECT source_file, line, column_name, reason FROM raw.quarantine") == [
        ("transactions/2025-01-02.csv", 2, "transaction_id", "duplicate_id")
    ]
    assert query("SELECT transaction_id, delivery_date FROM raw.transactions ORDER BY ALL") == [
        ("t1", dt.date(2025, 1, 1)),
        ("t2", dt.date(2025, 1, 2)),
    ]


def test_empty_file_fails_the_run_naming_it(
    data_dir, write_transactions, ingest_transactions, raw_contents, failure_message
):
    write_transactions("2025-01-01", [VALID_BEFORE, VALID_AFTER])
    ingest_transactions("2025-01-01")
    before = raw_contents()
    empty_file = data_dir / "landing" / "transactions" / "2025-01-02.csv"
    empty_file.write_bytes(b"")

    result = ingest_transactions("2025-01-02", raise_on_error=False)

    message = failure_message(result)
    assert not result.success
    assert str(empty_file) in message and "empty (0 bytes)" in message
    assert raw_contents() == before


def test_header_only_file_loads_no_rows(write_transactions, ingest_transactions, query):
    write_transactions(DAY, [])

    result = ingest_transactions(DAY)

    assert materialization_metadata(result)["dagster/row_count"] == 0
    assert query("SELECT count(*) FROM raw.transactions") == [(0,)]


def test_missing_required_column_fails_naming_column_and_file(
    write_transactions, ingest_transactions, raw_contents, failure_message
):
    write_transactions("2025-01-01", [VALID_BEFORE, VALID_AFTER])
    ingest_transactions("2025-01-01")
    before = raw_contents()
    without_amount = write_transactions(
        "2025-01-02", ["t3,c1,2025-01-02,1"], header="transaction_id,customer_id,event_time,quantity"
    )

    result = ingest_transactions("2025-01-02", raise_on_error=False)

    message = failure_message(result)
    assert not result.success
    assert str(without_amount) in message and "missing required column 'amount'" in message
    assert raw_contents() == before


def test_extra_column_is_ignored(write_transactions, ingest_transactions, query):
    write_transactions(
        DAY, ["t1,c1,2025-01-01,12.50,1,store-7"], header="transaction_id,customer_id,event_time,amount,quantity,store"
    )

    result = ingest_transactions(DAY)

    assert materialization_metadata(result)["ignored_columns"] == ["store"]
    assert query("SELECT transaction_id, customer_id, amount, quantity FROM raw.transactions") == [
        ("t1", "c1", Decimal("12.50"), 1)
    ]


def test_unknown_customer_loads_and_known_customers_check_warns(
    write_customers, ingest_customers, write_transactions, ingest_transactions, query
):
    write_customers(["c1,2024-05-01,DE,ads,ann@example.com,Ann Lee"])
    ingest_customers()
    write_transactions(DAY, ["t1,c1,2025-01-01,12.50,1", "t2,c404,2025-01-01,3.00,1"])

    result = ingest_transactions(DAY)

    check = check_evaluation(result, "known_customers")
    assert (check.passed, check.severity, check.metadata["unknown_customers"].value) == (
        False,
        AssetCheckSeverity.WARN,
        1,
    )
    assert query("SELECT transaction_id, customer_id FROM raw.transactions ORDER BY ALL") == [
        ("t1", "c1"),
        ("t2", "c404"),
    ]


def test_parquet_landing_file_loads(data_dir, ingest_transactions, query):
    parquet_file = data_dir / "landing" / "transactions" / f"{DAY}.parquet"
    with duckdb.connect() as con:
        con.execute(
            f"""
            COPY (SELECT * FROM (VALUES ('p1', 'c1', TIMESTAMP '2025-01-01 10:00:00', 1.50, 1),
                                        ('p2', 'c2', TIMESTAMP '2025-01-01 18:30:00', 2.25, 2))
                  AS t(transaction_id, customer_id, event_time, amount, quantity))
            TO '{parquet_file}' (FORMAT parquet)
            """
        )

    ingest_transactions(DAY)

    loaded_sql = "SELECT transaction_id, customer_id, event_time, amount, quantity, source_file FROM raw.transactions"
    assert query(f"{loaded_sql} ORDER BY ALL") == [
        ("p1", "c1", dt.datetime(2025, 1, 1, 10, 0), Decimal("1.50"), 1, f"transactions/{DAY}.parquet"),
        ("p2", "c2", dt.datetime(2025, 1, 1, 18, 30), Decimal("2.25"), 2, f"transactions/{DAY}.parquet"),
    ]


def test_mapping_file_renames_columns_and_sets_date_format(data_dir, write_transactions, ingest_transactions, query):
    write_mapping(
        data_dir,
        """
transactions:
  columns:
    customer_id: Customer ID
    event_time: Purchase Date
    amount: Total Price
  date_format: "%Y-%m-%d"
""",
    )
    write_transactions(
        DAY, ["A-1,c1,2025-01-01,9.99", "A-2,c2,2024-12-31,5"], header="Order No,Customer ID,Purchase Date,Total Price"
    )

    ingest_transactions(DAY)

    # Without a mapped transaction id, ids are derived from the delivery day and line.
    assert query("SELECT transaction_id, customer_id, event_time, amount FROM raw.transactions ORDER BY ALL") == [
        ("L20250101-2", "c1", dt.datetime(2025, 1, 1), Decimal("9.99")),
        ("L20250101-3", "c2", dt.datetime(2024, 12, 31), Decimal("5.00")),
    ]


def test_whitespace_separated_file_loads_through_mapping(data_dir, write_transactions, ingest_transactions, query):
    write_mapping(data_dir, 'transactions:\n  delimiter: whitespace\n  date_format: "%Y%m%d"\n')
    write_transactions(
        DAY, ["c1   20250101  3.50  1", "  c2 20241231\t7 2"], header="customer_id  event_time  amount  quantity"
    )

    ingest_transactions(DAY)

    loaded_sql = "SELECT transaction_id, customer_id, event_time, amount, quantity FROM raw.transactions"
    assert query(f"{loaded_sql} ORDER BY ALL") == [
        ("L20250101-2", "c1", dt.datetime(2025, 1, 1), Decimal("3.50"), 1),
        ("L20250101-3", "c2", dt.datetime(2024, 12, 31), Decimal("7.00"), 2),
    ]


def test_whitespace_separated_file_ignores_leading_and_trailing_tabs(
    data_dir, write_transactions, ingest_transactions, query
):
    write_mapping(data_dir, "transactions:\n  delimiter: whitespace\n")
    write_transactions(DAY, ["\tc1 2025-01-01 3.50", "c2 2025-01-01 7.00\t"], header="customer_id event_time amount")

    ingest_transactions(DAY)

    assert query("SELECT customer_id, source_line FROM raw.transactions ORDER BY ALL") == [("c1", 2), ("c2", 3)]


def test_whitespace_separated_file_quarantines_non_utf8_line(data_dir, write_transactions, ingest_transactions, query):
    write_mapping(data_dir, "transactions:\n  delimiter: whitespace\n")
    write_transactions(DAY, ["c1 2025-01-01 3.50", b"c\xff2 2025-01-01 7.00"], header="customer_id event_time amount")

    ingest_transactions(DAY)

    assert query("SELECT source_file, line, reason FROM raw.quarantine") == [(DAY_FILE, 3, "invalid_encoding")]


def test_loaded_plus_quarantined_rows_reconcile_with_data_lines(write_transactions, ingest_transactions, query):
    write_transactions(
        DAY,
        [
            VALID_BEFORE,
            "t3,c1,2025-01-01,abc,1",
            VALID_AFTER,
            "t4,c3,2025-01-01,1.00,1,surplus",
            "t5,c3,2025-01-01,8.00,1",
        ],
    )

    result = ingest_transactions(DAY)

    counts = query("SELECT (SELECT count(*) FROM raw.transactions), (SELECT count(*) FROM raw.quarantine)")
    reconciliation = check_evaluation(result, "reconciliation")
    assert counts == [(3, 2)]
    assert (reconciliation.passed, reconciliation.metadata["data_lines"].value) == (True, 5)


def test_zero_amount_sales_load_count_and_flow_into_customer_daily(
    resources, instance, write_transactions, ingest_transactions, query
):
    from dagster import materialize

    from mlsys_assets.features.assets import customer_daily

    # c1 buys once for 10.00, then every repeat purchase is 0.00; c2 only ever buys for 0.00.
    write_transactions("2025-01-01", ["t1,c1,2025-01-01,10.00,1", "t2,c2,2025-01-01,0.00,1"])
    write_transactions("2025-01-02", ["t3,c1,2025-01-02,0,1"])
    write_transactions("2025-01-03", ["t4,c1,2025-01-03,0.00,2"])

    result = ingest_transactions("2025-01-01", "2025-01-03")
    materialize([customer_daily], resources=resources, instance=instance, tags=result.dagster_run.tags)

    # A range run reports one materialization per partition, each with its own day's figures.
    zero_rows = {e.materialization.partition: e.materialization.metadata["zero_amount_rows"].value
                 for e in result.get_asset_materialization_events()}
    assert zero_rows == {"2025-01-01": 1, "2025-01-02": 1, "2025-01-03": 1}
    assert query("SELECT count(*) FROM raw.quarantine") == [(0,)]
    assert query("SELECT customer_id, event_date, transactions, spend FROM features.customer_daily ORDER BY ALL") == [
        ("c1", dt.date(2025, 1, 1), 1, Decimal("10.00")),
        ("c1", dt.date(2025, 1, 2), 1, Decimal("0.00")),
        ("c1", dt.date(2025, 1, 3), 1, Decimal("0.00")),
        ("c2", dt.date(2025, 1, 1), 1, Decimal("0.00")),
    ]


def test_whole_quantities_load_unchanged_and_a_fraction_says_why(write_transactions, ingest_transactions, query):
    write_transactions(DAY, ["t1,c1,2025-01-01,1.00,2.0", "t2,c1,2025-01-01,1.00, 3 ", "t3,c1,2025-01-01,1.00,1.5"])

    ingest_transactions(DAY)

    assert query("SELECT transaction_id, quantity FROM raw.transactions ORDER BY 1") == [("t1", 2), ("t2", 3)]
    assert query("SELECT detail FROM raw.quarantine") == [("'1.5' is not a whole number: quantity must be a whole number",)]
