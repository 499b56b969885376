"""The ``whitespace_export`` layout: one export file as an old system writes it, instead of daily files.

``simulation/export.txt`` (header ``cust date total [status]``, whitespace-separated, dates ``YYYYMMDD``,
rows by customer then time, as the CDNOW log) and ``simulation/mapping.yaml`` mapping it onto the data
contract for ``mlsys import``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlsys_assets.simulation.process import Transactions
from mlsys_assets.simulation.seasonality import Calendar
from mlsys_assets.simulation.text import TEXT, join, line_bytes, with_newlines
from mlsys_assets.storage import write_bytes_atomically

EXPORT_FILE = "export.txt"
MAPPING_FILE = "mapping.yaml"


def _mapping_yaml(with_status: bool) -> str:
    lines = [
        f"# Maps {EXPORT_FILE} onto the data contract: mlsys import {EXPORT_FILE} --mapping {MAPPING_FILE}",
        "transactions:",
        "  delimiter: whitespace",
        "  columns:",
        "    customer_id: cust",
        "    event_time: date",
        "    amount: total",
        '  date_format: "%Y%m%d"',
    ]
    if with_status:
        lines += ["  exclude:", "    status: [cancelled]"]
    return "\n".join(lines) + "\n"


def write_whitespace_export(
    simulation_dir: Path,
    calendar: Calendar,
    lines: Transactions,
    fields: dict[str, pa.Array],
    transactions_landing: Path,
) -> None:
    """simulation/export.txt and its mapping.yaml; removes this period's daily files of an earlier run."""
    order = pa.array(np.argsort(lines.customer, kind="stable"))  # by customer, then time
    dates = pc.replace_substring(pa.array(np.datetime_as_string(calendar.dates), TEXT), "-", "")
    columns = {
        "cust": fields["customer_id"].take(order),
        "date": dates.take(pa.array(lines.day).take(order)),
        "total": pc.utf8_lpad(fields["amount"].take(order), width=10, padding=" "),
    }
    if "status" in fields:
        columns["status"] = fields["status"].take(order)
    rows = with_newlines(join(list(columns.values()), " "))
    header = (" ".join(columns) + "\n").encode()
    write_bytes_atomically(simulation_dir / EXPORT_FILE, [header, line_bytes(rows, 0, len(rows))])
    write_bytes_atomically(simulation_dir / MAPPING_FILE, [_mapping_yaml("status" in fields).encode()])
    for date in np.datetime_as_string(calendar.dates):
        for suffix in (".csv", ".parquet"):
            (transactions_landing / f"{date}{suffix}").unlink(missing_ok=True)


def remove_export(simulation_dir: Path) -> None:
    """A daily-layout run must not leave an earlier run's export behind."""
    for name in (EXPORT_FILE, MAPPING_FILE):
        (simulation_dir / name).unlink(missing_ok=True)
