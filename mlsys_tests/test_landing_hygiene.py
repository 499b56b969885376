"""Landing zone hygiene: every entry of the landing folders is ingested or named with its reason (in the
run's metadata, in `mlsys status`, in the sensor's skip reason); a bad name or a duplicate day blocks only
itself, and a corrupt file fails only its own day while the other days of the range load."""

from __future__ import annotations

import random
from pathlib import Path

import duckdb
import pytest
from dagster import DagsterEventType

from mlsys_assets.cli import _print_status
from mlsys_assets.contract import load_mapping
from mlsys_assets.ingest.reader import LandingFile, LandingFilesError, create_staging_tables, stage_files
from mlsys_assets.resources import LandingZone
from mlsys_tests.conftest import TRANSACTIONS_HEADER

DAY_1, DAY_2, DAY_3 = "2025-01-01", "2025-01-02", "2025-01-03"

# Entries the contract does not name, and the reason each is reported with.
BAD_ENTRIES = {
    "2024-02-30.csv": "'2024-02-30' is not a calendar day (day is out of range for month)",
    "2024-13-01.csv": "'2024-13-01' is not a calendar day (month must be in 1..12)",
    "2024-07-17.CSV": "the extension must be lower case: rename it to 2024-07-17.csv",
    "20240717.csv": "the name is not a delivery day",
    "tx-2024-07-17.csv": "the name is not a delivery day",
    "2024-07-18.csv.gz": "compressed files are not read",
}


def materialization_metadata(result) -> dict:
    [event] = result.get_asset_materialization_events()
    return {key: value.value for key, value in event.materialization.metadata.items()}


def landing(data_dir: Path) -> Path:
    return data_dir / "landing" / "transactions"


def three_days(write_transactions) -> None:
    for day in (DAY_1, DAY_2, DAY_3):
        write_transactions(day, [f"t-{day},c1,{day},10.00,1"])


def loaded_days(query) -> list[str]:
    return [day.isoformat() for (day,) in query("SELECT DISTINCT delivery_date FROM raw.transactions ORDER BY 1")]


@pytest.mark.parametrize("name", list(BAD_ENTRIES))
def test_a_badly_named_file_blocks_no_day_and_the_run_names_it(
    name, data_dir, write_transactions, ingest_transactions, query
):
    (landing(data_dir) / name).write_text(f"{TRANSACTIONS_HEADER}\nt9,c9,2024-07-17,1.00,1\n")
    write_transactions(DAY_1, [f"t1,c1,{DAY_1},10.00,1"])

    result = ingest_transactions(DAY_1)

    assert loaded_days(query) == [DAY_1]
    refusals = materialization_metadata(result)["landing_refusals"]
    assert [line for line in refusals if line.startswith(f"{name}: ")] == [
        next(line for line in refusals if line.startswith(f"{name}: "))]
    assert BAD_ENTRIES[name] in next(line for line in refusals if line.startswith(f"{name}: "))


def test_status_lists_every_refused_file_with_its_reason(data_dir, write_transactions, capsys):
    for name in BAD_ENTRIES:
        (landing(data_dir) / name).write_text("x\n")
    write_transactions(DAY_1, [f"t1,c1,{DAY_1},10.00,1"])

    _print_status(data_dir)

    out = capsys.readouterr().out
    assert f"not ingested: {len(BAD_ENTRIES)} landing file(s)" in out
    for name, reason in BAD_ENTRIES.items():
        assert f"transactions/{name}: " in out and reason in out.split(f"transactions/{name}: ")[1].splitlines()[0]
    assert "transaction files: 1 (2025-01-01 … 2025-01-01)" in out


def test_two_files_for_one_day_fail_only_that_day(
    data_dir, write_transactions, ingest_transactions, query, failure_message
):
    three_days(write_transactions)
    (landing(data_dir) / f"{DAY_2}.parquet").write_bytes(b"PAR1")

    alone = ingest_transactions(DAY_1)
    result = ingest_transactions(DAY_1, DAY_3, raise_on_error=False)

    assert alone.success and not result.success
    assert (f"{landing(data_dir) / f'{DAY_2}.csv'}: two files for {DAY_2} ({DAY_2}.csv and {DAY_2}.parquet)"
            in failure_message(result))
    assert loaded_days(query) == [DAY_1, DAY_3]


def test_a_directory_named_like_a_day_fails_only_its_day(
    data_dir, write_transactions, ingest_transactions, query, failure_message
):
    write_transactions(DAY_1, [f"t1,c1,{DAY_1},10.00,1"])
    (landing(data_dir) / f"{DAY_2}.csv").mkdir()
    write_transactions(DAY_3, [f"t3,c1,{DAY_3},10.00,1"])

    result = ingest_transactions(DAY_1, DAY_3, raise_on_error=False)

    assert not result.success
    assert f"{landing(data_dir) / f'{DAY_2}.csv'}: a directory, not a file" in failure_message(result)
    assert loaded_days(query) == [DAY_1, DAY_3]


def test_a_symlink_is_refused_unread_naming_the_link_and_its_target(
    tmp_path, data_dir, write_transactions, ingest_transactions, query, failure_message, instance
):
    secret = tmp_path / "secret.csv"
    secret.write_text(f"SECRET-HEADER\n{TRANSACTIONS_HEADER}\nSECRET-ROW\n")
    three_days(write_transactions)
    link = landing(data_dir) / f"{DAY_2}.csv"
    link.unlink()
    link.symlink_to(secret)

    result = ingest_transactions(DAY_1, DAY_3, raise_on_error=False)

    assert f"{link}: a symbolic link (to {secret}): refused unread" in failure_message(result)
    logged = [record.user_message for record in instance.all_logs(result.run_id)] + [
        str(e.event_specific_data) for e in result.all_events]
    assert not [text for text in logged if "SECRET" in text]
    assert loaded_days(query) == [DAY_1, DAY_3]


def _random_bytes() -> bytes:
    generator = random.Random(3)
    return bytes(generator.randrange(256) for _ in range(4000))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        pytest.param(
            f"{TRANSACTIONS_HEADER}\rt2,c1,{DAY_2},10.00,1\r".encode(), "lines end in a lone carriage return (CR)",
            id="cr-only-line-endings",
        ),
        pytest.param(f"{TRANSACTIONS_HEADER}\n".encode() + _random_bytes(), "cannot be parsed as csv", id="random-bytes"),
    ],
)
def test_a_corrupt_file_fails_only_its_own_day(
    content, problem, data_dir, write_transactions, ingest_transactions, query, failure_message, instance
):
    three_days(write_transactions)
    corrupt = landing(data_dir) / f"{DAY_2}.csv"
    corrupt.write_bytes(content)

    result = ingest_transactions(DAY_1, DAY_3, raise_on_error=False)

    assert not result.success
    assert f"{corrupt}: {problem}" in failure_message(result)
    assert loaded_days(query) == [DAY_1, DAY_3]
    records = instance.get_records_for_run(result.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records
    events = [record.event_log_entry.dagster_event for record in records]
    assert sorted(e.partition for e in events) == [DAY_1, DAY_3]
    assert [line.split(": ")[0] for line in events[0].materialization.metadata["unreadable_files"].value] == [
        str(corrupt)]
    assert query("SELECT count(*) FROM raw.quarantine") == [(0,)]


def test_the_reader_refuses_a_symlink_unread(tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text(f"SECRET-HEADER\n{TRANSACTIONS_HEADER}\n")
    link = tmp_path / f"{DAY_1}.csv"
    link.symlink_to(secret)
    fmt = load_mapping(tmp_path / "no-mapping.yaml")["transactions"]
    con = duckdb.connect()
    create_staging_tables(con, "staged", "rejects", fmt)

    with pytest.raises(LandingFilesError) as raised:
        stage_files(con, [LandingFile(link, link.name)], fmt, "staged", "rejects")

    assert str(raised.value).endswith(f"{link}: a symbolic link (to {secret}): refused unread; copy the file in")
    assert "SECRET" not in str(raised.value)


def test_a_symlink_in_the_customers_folder_is_not_read_and_is_named(tmp_path, data_dir, write_customers):
    write_customers(["c1,2024-05-01,DE,ads,ann@example.com,Ann Lee"])
    (tmp_path / "elsewhere.csv").write_text("customer_id\nSECRET\n")
    (data_dir / "landing" / "customers" / "more.csv").symlink_to(tmp_path / "elsewhere.csv")
    zone = LandingZone(data_dir=str(data_dir))

    assert [p.name for p in zone.customer_files()] == ["customers.csv"]
    assert zone.customer_refusals() == {
        "more.csv": f"a symbolic link (to {tmp_path / 'elsewhere.csv'}): refused unread; copy the file into the landing zone"
    }


def test_mlsys_ingest_names_an_impossible_day_and_ingests_the_others(cli_env):
    """The issue's acceptance, as a user runs it: `2024-02-30.csv` in the landing zone."""
    import subprocess
    import sys

    landing = Path(cli_env["MLSYS_DATA_DIR"]) / "landing" / "transactions"
    landing.mkdir(parents=True)
    for day in ("2024-02-28", "2024-02-29", "2024-02-30", "2024-03-01"):
        (landing / f"{day}.csv").write_text(f"{TRANSACTIONS_HEADER}\nt{day},c1,2024-02-28,10.00,1\n")
    mlsys = str(Path(sys.executable).with_name("mlsys"))

    ingest = subprocess.run([mlsys, "ingest"], env=cli_env, capture_output=True, text=True, timeout=300)
    status = subprocess.run([mlsys, "status"], env=cli_env, capture_output=True, text=True, timeout=300)

    assert ingest.returncode == 1 and "Traceback" not in ingest.stdout + ingest.stderr
    assert "not ingested: 2024-02-30.csv" in ingest.stdout
    assert "2024-02-30.csv" in status.stdout and status.returncode == 0
    con = duckdb.connect(str(Path(cli_env["MLSYS_DATA_DIR"]) / "warehouse.duckdb"), read_only=True)
    try:
        days = [str(row[0]) for row in con.execute("SELECT DISTINCT delivery_date FROM raw.transactions ORDER BY 1").fetchall()]
    finally:
        con.close()
    assert days == ["2024-02-28", "2024-02-29", "2024-03-01"]
