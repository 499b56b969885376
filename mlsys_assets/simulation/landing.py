"""The landing files the platform ingests: one transaction file per day (CSV or parquet) and the
customers export, rendered from the drawn lines with the dirt injected (``dirt.py``) or, for the
``whitespace_export`` layout, one export file (``export.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlsys_assets.simulation import export
from mlsys_assets.simulation.config import SimulationConfig
from mlsys_assets.simulation.dirt import (
    DIRTY_CUSTOMER_KINDS,
    DIRTY_TRANSACTION_KINDS,
    dirty_customer_lines,
    dirty_transaction_lines,
)
from mlsys_assets.simulation.process import COUNTRIES, LINE_KINDS, Customers, Transactions
from mlsys_assets.simulation.seasonality import Calendar
from mlsys_assets.simulation.text import (
    CUSTOMER_COLUMNS,
    TEXT,
    TRANSACTION_COLUMNS,
    amount_text,
    as_text,
    csv_header,
    join,
    line_bytes,
    literal,
    timestamps,
    with_newlines,
    zero_padded,
)
from mlsys_assets.storage import atomic_path, write_bytes_atomically

FIRST_NAMES = (
    "Anna", "Ben", "Chloé", "David", "Emma", "Felix", "Grace", "Hugo", "Isabel", "Jonas",
    "Karin", "Liam", "Maria", "Noah", "Olivia", "Pablo", "Quinn", "Rosa", "Sven", "Tara",
    "Umar", "Vera", "William", "Zoë",
)
LAST_NAMES = (
    "Andersen", "Brown", "Castillo", "Dubois", "Evans", "Fischer", "García", "Hansen",
    "Jansen", "Klein", "López", "Martin", "Müller", "Nielsen", "O'Brien", "Petit",
    "Rossi", "Schmidt", "Smith", "Taylor", "Visser", "Wagner", "de Vries", "Lefèvre",
)


def transaction_fields(
    calendar: Calendar, transactions: Transactions, customer_ids: pa.Array, with_status: bool = False
) -> dict[str, pa.Array]:
    """The CSV text of every transaction column, in column order (status last, when asked for)."""
    id_width = max(9, len(str(len(transactions))))
    fields = {
        "transaction_id": join([literal("T"), zero_padded(np.arange(1, len(transactions) + 1), id_width)], ""),
        "customer_id": customer_ids.take(pa.array(transactions.customer)),
        "event_time": pc.cast(timestamps(calendar, transactions.day, transactions.second_of_day), TEXT),
        "amount": amount_text(transactions.cents),
        "quantity": as_text(transactions.quantity),
    }
    if with_status:
        kind = np.zeros(len(transactions), dtype=np.int64) if transactions.kind is None else transactions.kind
        cancelled = kind == LINE_KINDS.index("cancelled")
        fields["status"] = pc.if_else(pa.array(cancelled), literal("cancelled"), literal("completed"))
    return fields


def _transaction_table(calendar: Calendar, transactions: Transactions, fields: dict[str, pa.Array]) -> pa.Table:
    """Transactions with natural column types, for parquet."""
    columns = {
        "transaction_id": pc.cast(fields["transaction_id"], pa.string()),
        "customer_id": pc.cast(fields["customer_id"], pa.string()),
        "event_time": timestamps(calendar, transactions.day, transactions.second_of_day).cast(pa.timestamp("us")),
        "amount": pa.array(transactions.cents / 100),
        "quantity": pa.array(transactions.quantity),
    }
    if "status" in fields:
        columns["status"] = pc.cast(fields["status"], pa.string())
    return pa.table(columns)


def _customer_fields(
    rng: np.random.Generator, calendar: Calendar, customers: Customers, customer_ids: pa.Array
) -> dict[str, pa.Array]:
    """The CSV text of every customer column."""
    name_index = rng.integers(0, [len(FIRST_NAMES), len(LAST_NAMES)], size=(len(customers), 2))
    first_names = pa.array(FIRST_NAMES, TEXT).take(pa.array(name_index[:, 0]))
    last_names = pa.array(LAST_NAMES, TEXT).take(pa.array(name_index[:, 1]))
    return {
        "customer_id": customer_ids,
        "signup_date": pa.array(np.datetime_as_string(calendar.dates), TEXT).take(pa.array(customers.signup_day)),
        "country": pa.array(list(COUNTRIES), TEXT).take(pa.array(customers.country)),
        "acquisition_channel": pa.array(customers.channel_names, TEXT).take(pa.array(customers.channel)),
        "email": join([pc.utf8_lower(customer_ids), literal("@example.com")], ""),
        "name": join([first_names, last_names], " "),
    }


def write_parquet_atomically(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as temporary:  # a watcher (the landing sensor) never sees a partial file
        pq.write_table(table, temporary)


def _write_daily_files(
    directory: Path,
    calendar: Calendar,
    transactions: Transactions,
    file_format: str,
    payload: pa.Array | pa.Table,
    columns: tuple[str, ...] = TRANSACTION_COLUMNS,
) -> None:
    """One file per calendar day; payload is the CSV lines or the parquet table, sorted by day."""
    directory.mkdir(parents=True, exist_ok=True)
    day_bounds = np.searchsorted(transactions.day, np.arange(calendar.days + 1), side="left")
    header = csv_header(columns)
    other_format = "parquet" if file_format == "csv" else "csv"
    for day, date in enumerate(np.datetime_as_string(calendar.dates)):
        start, stop = int(day_bounds[day]), int(day_bounds[day + 1])
        path = directory / f"{date}.{file_format}"
        if file_format == "csv":
            write_bytes_atomically(path, [header, line_bytes(payload, start, stop)])
        else:
            write_parquet_atomically(payload.slice(start, stop - start), path)
        # A re-run in the other format must not leave the old day file behind.
        (directory / f"{date}.{other_format}").unlink(missing_ok=True)


def write_transaction_lines(
    dirt_rng: np.random.Generator,
    config: SimulationConfig,
    calendar: Calendar,
    lines: Transactions,
    customer_ids: pa.Array,
    data_dir: Path,
) -> dict[str, int]:
    """The daily landing files (or the one export file); the count of dirty lines per kind."""
    dirty_counts = dict.fromkeys(DIRTY_TRANSACTION_KINDS, 0)
    fields = transaction_fields(calendar, lines, customer_ids, with_status=config.cancelled_share > 0)
    directory = data_dir / "landing" / "transactions"
    if config.export_layout == "whitespace_export":
        export.write_whitespace_export(data_dir / "simulation", calendar, lines, fields, directory)
        return dirty_counts  # defects are written into CSV files only, as for parquet
    export.remove_export(data_dir / "simulation")
    if config.file_format == "csv":
        text_lines = join(list(fields.values()), ",")
        if config.dirty_share > 0:
            text_lines, dirty_counts = dirty_transaction_lines(
                dirt_rng, config.dirty_share, calendar, lines, fields, text_lines
            )
        payload = with_newlines(text_lines)
    else:
        payload = _transaction_table(calendar, lines, fields)
    _write_daily_files(directory, calendar, lines, config.file_format, payload, tuple(fields))
    return dirty_counts


def write_customers(
    customer_rng: np.random.Generator,
    dirt_rng: np.random.Generator,
    config: SimulationConfig,
    calendar: Calendar,
    customers: Customers,
    customer_ids: pa.Array,
    landing_dir: Path,
) -> dict[str, int]:
    """landing/customers/customers.csv (none when customers_export is off); the count of dirty rows per kind."""
    customers_path = landing_dir / "customers" / "customers.csv"
    if not config.customers_export:
        customers_path.unlink(missing_ok=True)  # a re-run must not leave an earlier run's export behind
        return dict.fromkeys(DIRTY_CUSTOMER_KINDS, 0)
    customer_fields = _customer_fields(customer_rng, calendar, customers, customer_ids)
    dirty_counts = dict.fromkeys(DIRTY_CUSTOMER_KINDS, 0)
    if config.dirty_share > 0:
        signup_year = calendar.dates[customers.signup_day].astype("datetime64[Y]").astype(np.int64) + 1970
        customer_lines, dirty_counts = dirty_customer_lines(dirt_rng, config.dirty_share, customer_fields, signup_year)
    else:
        customer_lines = join([customer_fields[name] for name in CUSTOMER_COLUMNS], ",")
    customer_lines = with_newlines(customer_lines)
    customers_path.parent.mkdir(parents=True, exist_ok=True)
    customer_bytes = line_bytes(customer_lines, 0, len(customer_lines))
    write_bytes_atomically(customers_path, [csv_header(CUSTOMER_COLUMNS), customer_bytes])
    return dirty_counts
