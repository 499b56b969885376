"""Shared fixtures: a landing zone and a DuckDB warehouse under tmp_path, and helpers that write
landing files, run the ingest assets with real `dagster.materialize` runs, and query the warehouse."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb
import pytest
from dagster import DagsterInstance, ExecuteInProcessResult, materialize
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from mlsys_assets.ingest.assets import raw_customers, raw_transactions
from mlsys_assets.resources import LandingZone, Warehouse

TRANSACTIONS_HEADER = "transaction_id,customer_id,event_time,amount,quantity"
CUSTOMERS_HEADER = "customer_id,signup_date,country,acquisition_channel,email,name"


def _write_lines(path: Path, header: str, rows: Sequence[str | bytes]) -> Path:
    # Rows may be bytes so that a test can deliver a line that is not valid UTF-8.
    lines = [line if isinstance(line, bytes) else line.encode("utf-8") for line in (header, *rows)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.fixture(autouse=True)
def pii_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = "test-pii-key"
    monkeypatch.setenv("MLSYS_PII_KEY", key)
    return key


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for feed in ("transactions", "customers"):
        (root / "landing" / feed).mkdir(parents=True)
    return root


@pytest.fixture
def resources(data_dir: Path) -> dict:
    return {
        "warehouse": Warehouse(path=str(data_dir / "warehouse.duckdb")),
        "landing": LandingZone(data_dir=str(data_dir)),
    }


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


@pytest.fixture
def write_transactions(data_dir: Path) -> Callable[..., Path]:
    """Write `landing/transactions/<day>.csv`; rows are data lines as delivered (already delimited)."""

    def write(day: str, rows: Sequence[str | bytes], header: str = TRANSACTIONS_HEADER) -> Path:
        return _write_lines(data_dir / "landing" / "transactions" / f"{day}.csv", header, rows)

    return write


@pytest.fixture
def write_customers(data_dir: Path) -> Callable[..., Path]:
    """Write `landing/customers/customers.csv`; rows are data lines as delivered."""

    def write(rows: Sequence[str | bytes]) -> Path:
        return _write_lines(data_dir / "landing" / "customers" / "customers.csv", CUSTOMERS_HEADER, rows)

    return write


@pytest.fixture
def ingest_transactions(resources: dict, instance: DagsterInstance) -> Callable[..., ExecuteInProcessResult]:
    """Materialize raw/transactions for one day, or for the days `start` … `end` in one run."""

    def run(start: str, end: str | None = None, raise_on_error: bool = True) -> ExecuteInProcessResult:
        if end is None:
            return materialize(
                [raw_transactions], resources=resources, instance=instance, partition_key=start,
                raise_on_error=raise_on_error,
            )
        return materialize(
            [raw_transactions], resources=resources, instance=instance, raise_on_error=raise_on_error,
            tags={ASSET_PARTITION_RANGE_START_TAG: start, ASSET_PARTITION_RANGE_END_TAG: end},
        )

    return run


@pytest.fixture
def ingest_customers(resources: dict, instance: DagsterInstance) -> Callable[[], ExecuteInProcessResult]:
    def run() -> ExecuteInProcessResult:
        return materialize([raw_customers], resources=resources, instance=instance)

    return run


@pytest.fixture
def query(resources: dict) -> Callable[..., list[tuple]]:
    """Run SQL on the warehouse through a short read-only connection (a run may open it next)."""

    def run(sql: str, params: Sequence = ()) -> list[tuple]:
        con = duckdb.connect(resources["warehouse"].path, read_only=True)
        try:
            return con.execute(sql, list(params)).fetchall()
        finally:
            con.close()

    return run


@pytest.fixture
def raw_contents(query: Callable[..., list[tuple]]) -> Callable[[], dict[str, list[tuple]]]:
    """Every row and column of raw.transactions and raw.quarantine, to compare before and after a run."""

    def contents() -> dict[str, list[tuple]]:
        return {table: query(f"SELECT * FROM {table} ORDER BY ALL") for table in ("raw.transactions", "raw.quarantine")}

    return contents


@pytest.fixture
def failure_message() -> Callable[[ExecuteInProcessResult], str]:
    """The error messages of a failed run's steps, joined."""

    def message(result: ExecuteInProcessResult) -> str:
        return "\n".join(event.step_failure_data.error.message for event in result.all_events if event.is_step_failure)

    return message
