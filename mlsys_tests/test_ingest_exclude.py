"""A mapping's `exclude` filter takes rows that are not sales (cancelled orders, say) out of a feed, and
never silently: ingest quarantines them as `excluded_by_mapping` (so loaded + quarantined still equals
the data lines), and `mlsys import` lists them in its rejected file and counts them in its summary."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlsys_assets.cli import main
from mlsys_assets.contract import MappingError, load_mapping
from mlsys_assets.ingest.importer import import_transactions
from mlsys_assets.settings import DataLayout

DAY = "2025-01-01"
HEADER = "transaction_id,customer_id,event_time,amount,status"


def write_mapping(path: Path, yaml_text: str) -> Path:
    path.write_text(yaml_text)
    return path


def materialization_metadata(result) -> dict:
    [event] = result.get_asset_materialization_events()
    return {key: value.value for key, value in event.materialization.metadata.items()}


def check_evaluation(result, check_name: str):
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == check_name)


def test_exclude_parses_to_trimmed_lower_case_values(tmp_path):
    mapping = write_mapping(tmp_path / "m.yaml", "transactions:\n  exclude: {status: [' Cancelled', REFUNDED], 7: [x]}\n")

    assert load_mapping(mapping)["transactions"].exclude == {"status": ("cancelled", "refunded"), 7: ("x",)}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        pytest.param("exclude: [status, cancelled]", "'transactions.exclude' must map a column to a list", id="a-list"),
        pytest.param("exclude: {status: {cancelled: 1}}", "'transactions.exclude.status' must map", id="values-not-a-list"),
        pytest.param("exclude: {status: []}", "'transactions.exclude.status' must map", id="no-values"),
        pytest.param("exclude: {status: [yes]}", "quote yes/no/true/false", id="a-yaml-boolean"),
        pytest.param("exclude: {0: [x]}", "must be a column name or a 1-based position", id="position-0"),
        pytest.param("header: false\n  columns: {customer_id: 1, event_time: 2, amount: 3}\n  exclude: {status: [x]}",
                     "needs 1-based positions", id="name-without-header"),
    ],
)
def test_an_unusable_exclude_is_a_mapping_error_naming_file_and_key(tmp_path, section, message):
    mapping = write_mapping(tmp_path / "m.yaml", f"transactions:\n  {section}\n")

    with pytest.raises(MappingError, match=message) as raised:
        load_mapping(mapping)

    assert str(mapping) in str(raised.value)


def test_excluded_rows_are_quarantined_with_their_value_and_counted(data_dir, write_transactions, ingest_transactions, query):
    write_mapping(data_dir / "landing" / "mapping.yaml", "transactions:\n  exclude: {status: [cancelled, refunded]}\n")
    write_transactions(DAY, [
        "t1,c1,2025-01-01,10.00,shipped",
        "t2,c1,2025-01-01,20.00, Cancelled ",
        "t3,c2,2025-01-01,-5.00,REFUNDED",  # excluded first: the mapping says it is no sale at all
        "t4,c2,2025-01-01,-3.00,shipped",  # an unmarked refund stays a negative_amount
        "t5,c3,2025-01-01,7.00,",
    ], header=HEADER)

    result = ingest_transactions(DAY)

    assert query("SELECT transaction_id FROM raw.transactions ORDER BY 1") == [("t1",), ("t5",)]
    assert query("SELECT line, column_name, reason, detail FROM raw.quarantine ORDER BY line") == [
        (3, "status", "excluded_by_mapping", "status = 'Cancelled'"),
        (4, "status", "excluded_by_mapping", "status = 'REFUNDED'"),
        (5, "amount", "negative_amount", "amount -3.0 is negative; this feed takes sales only, refunds are netted upstream"),
    ]
    metadata = materialization_metadata(result)
    assert (metadata["rows_excluded_by_mapping"], metadata["rows_quarantined"]) == (2, 3)
    assert metadata["exclude_filter"] == "status in [cancelled, refunded]"
    assert check_evaluation(result, "reconciliation").passed


def test_several_filter_columns_and_a_whitespace_file(data_dir, write_transactions, ingest_transactions, query):
    write_mapping(data_dir / "landing" / "mapping.yaml",
                  "transactions:\n  delimiter: whitespace\n  exclude: {status: [void], channel: [test]}\n")
    write_transactions(DAY, ["c1 2025-01-01 3.50 ok web", "c2 2025-01-01 4.00 VOID web", "c3 2025-01-01 5.00 ok Test"],
                       header="customer_id event_time amount status channel")

    ingest_transactions(DAY)

    assert query("SELECT customer_id FROM raw.transactions") == [("c1",)]
    assert query("SELECT line, detail FROM raw.quarantine ORDER BY 1") == [(3, "status = 'VOID'"), (4, "channel = 'Test'")]


def test_an_excluded_row_does_not_make_its_reorder_a_duplicate(data_dir, write_transactions, ingest_transactions, query):
    write_mapping(data_dir / "landing" / "mapping.yaml", "transactions:\n  exclude: {status: [cancelled]}\n")
    write_transactions(DAY, ["o1,c1,2025-01-01,10.00,cancelled", "o1,c1,2025-01-01,10.00,shipped"], header=HEADER)

    ingest_transactions(DAY)

    assert query("SELECT transaction_id, source_line FROM raw.transactions") == [("o1", 3)]
    assert query("SELECT line, reason FROM raw.quarantine") == [(2, "excluded_by_mapping")]


def test_a_filter_column_the_file_lacks_fails_the_run_naming_file_and_column(
    data_dir, write_transactions, ingest_transactions, failure_message, query
):
    write_mapping(data_dir / "landing" / "mapping.yaml", "transactions:\n  exclude: {status: [cancelled]}\n")
    path = write_transactions(DAY, ["t1,c1,2025-01-01,10.00,1"])

    result = ingest_transactions(DAY, raise_on_error=False)

    message = failure_message(result)
    assert not result.success
    assert str(path) in message and "filters on column 'status', which the file lacks" in message
    assert query("SELECT count(*) FROM raw.transactions") == [(0,)]


def test_excluded_customer_rows_are_quarantined(data_dir, ingest_customers, query):
    write_mapping(data_dir / "landing" / "mapping.yaml", "customers:\n  exclude: {kind: [test]}\n")
    (data_dir / "landing" / "customers" / "customers.csv").write_text("customer_id,kind\nc1,real\nc2,TEST\n")

    result = ingest_customers()

    assert query("SELECT customer_id FROM raw.customers") == [("c1",)]
    assert query("SELECT line, column_name, reason FROM raw.quarantine") == [(3, "kind", "excluded_by_mapping")]
    assert check_evaluation(result, "reconciliation").passed


EXPORT = """cust  day       total  status
A-1   20250301  19.90  shipped
A-1   20250301  20.00  cancelled
A-2   20250302   7.50  Refunded
A-2   20250302   0.00  shipped
A-3   notadate   1.00  shipped
"""
MAPPING = """transactions:
  delimiter: whitespace
  columns: {customer_id: cust, event_time: day, amount: total}
  date_format: "%Y%m%d"
  exclude: {status: [cancelled, refunded]}
"""


def test_import_writes_excluded_rows_to_the_rejected_file_not_the_day_files(tmp_path):
    export = tmp_path / "history.txt"
    export.write_text(EXPORT)
    layout = DataLayout(tmp_path / "data")

    summary = import_transactions(export, load_mapping(write_mapping(tmp_path / "m.yaml", MAPPING))["transactions"], layout)

    assert (summary.rows, summary.excluded_rows, summary.rejected_rows) == (2, 2, 1)
    days = {p.name: list(csv.DictReader(p.open())) for p in sorted(layout.transactions_landing.iterdir())}
    assert {name: [(r["customer_id"], r["amount"]) for r in rows] for name, rows in days.items()} == {
        "2025-03-01.csv": [("A-1", "19.90")], "2025-03-02.csv": [("A-2", "0.00")]}
    assert "status" not in next(iter(days.values()))[0]
    rejected = [(r["line"], r["reason"], r["detail"]) for r in csv.DictReader(summary.rejected_file.open())]
    assert rejected == [("3", "excluded_by_mapping", "status = 'cancelled'"),
                        ("4", "excluded_by_mapping", "status = 'Refunded'"),
                        ("6", "invalid_date", "cannot parse 'notadate'")]


def test_import_command_counts_excluded_rows_separately(tmp_path):
    export = tmp_path / "history.txt"
    export.write_text(EXPORT)
    mapping = write_mapping(tmp_path / "m.yaml", MAPPING)

    result = CliRunner().invoke(main, ["import", str(export), "--mapping", str(mapping), "--data-dir", str(tmp_path / "data")])

    assert result.exit_code == 0, result.output
    assert "2 row(s) excluded by the mapping (status in [cancelled, refunded])" in result.output
    assert "1 row(s) had no readable date or line structure" in result.output
