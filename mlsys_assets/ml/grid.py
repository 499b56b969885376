"""The training grid in DuckDB: one snapshot per as-of day (features/snapshot.py, the one feature definition)
with the labels of the H days after it, for every customer or, in a large shop, a hashed sample of them.
Plain library code; the ml/training_examples asset calls it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from string import Template

from mlsys_assets.features.snapshot import build_snapshot
from mlsys_assets.storage import transaction

SQL_DIR = Path(__file__).parent
LABELS_SQL = Template((SQL_DIR / "labels.sql").read_text())
EXAMPLES_SQL = (SQL_DIR / "examples.sql").read_text()
# The grid's cost is one snapshot per as-of day over every customer (15.6M rows at a million customers);
# models train on 250,000 of its rows and the backtests score its cutoff days. Above this many rows it is
# built for a deterministic sample of customers (docs/models.md, "Training at scale").
MAX_GRID_ROWS = 2_500_000
GRID_CHUNK_ROWS = 2_000_000


def grid_customers(con, grid: list[dt.date], max_rows: int) -> tuple[int, int, str | None]:
    """(customers, customers in the grid, the table that lists them). The full grid has a row per as-of day
    for every customer known by then (a delivery in features.customer_daily or a signup in raw.customers);
    when that is more than `max_rows`, the grid covers the customers first by hash(customer_id), as many as
    make about `max_rows` rows (listed in the temp table _grid_customers): the same ones on every run over
    the same data, each with all its as-of days. Otherwise every customer (no table)."""
    con.execute("""CREATE OR REPLACE TEMP TABLE _first_known AS
                   SELECT customer_id, min(day) AS first_day
                   FROM (SELECT customer_id, delivery_date AS day FROM features.customer_daily
                         UNION ALL SELECT customer_id, signup_date FROM raw.customers)
                   GROUP BY customer_id""")
    customers, rows = con.execute(
        "SELECT (SELECT count(*) FROM _first_known), count(*) FROM _first_known f "
        "JOIN (SELECT unnest(?::DATE[]) AS as_of) g ON f.first_day <= g.as_of", [grid]).fetchall()[0]
    if rows <= max_rows:
        return customers, customers, None
    most = max(1, customers * max_rows // rows)
    con.execute("CREATE OR REPLACE TEMP TABLE _grid_customers AS "
                "SELECT customer_id FROM _first_known ORDER BY hash(customer_id), customer_id LIMIT ?", [most])
    return customers, most, "_grid_customers"


def build_grid(con, days: list[dt.date], newest_cutoff: list[dt.date], horizon: int, customers: int,
               customers_table: str | None) -> None:
    """The grid has one row per customer (of `customers_table` when given) and as-of day: it is built a few
    days at a time so that only about GRID_CHUNK_ROWS rows are in pandas at once (for the BTYD fits),
    beside the current table, and swapped in at the end: a failure keeps the old examples."""
    chunk_days = max(1, GRID_CHUNK_ROWS // max(customers, 1))
    con.execute("DROP TABLE IF EXISTS ml.training_examples_next")
    labels_sql = LABELS_SQL.substitute(horizon=horizon)
    for first in range(0, len(days), chunk_days):
        chunk = days[first:first + chunk_days]
        snapshots = build_snapshot(con, chunk, horizon, customers_table)
        con.execute(labels_sql)
        con.register("_snapshots", snapshots)
        con.execute(("INSERT INTO ml.training_examples_next " if first else
                     "CREATE TABLE ml.training_examples_next AS ") + EXAMPLES_SQL, [newest_cutoff])
        con.unregister("_snapshots")
        del snapshots
    with transaction(con):
        con.execute("DROP TABLE IF EXISTS ml.training_examples")
        con.execute("ALTER TABLE ml.training_examples_next RENAME TO training_examples")
