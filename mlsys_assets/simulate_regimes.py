"""Named regimes of the shop simulator: what real transaction logs look like, and the true future.

``simulate.py`` draws the demo shop; a regime is a set of ``SimulationConfig`` overrides that makes its
output look like another kind of log (``REGIMES``, ``regime_config``). This module also renders what
the demo shop does not have:

* Whales (``whale_share``): that share of customers has its mean spend multiplied by
  ``whale_spend_factor``; the ground truth's ``mean_spend`` includes the factor, ``is_whale`` flags them.
* $0 sales (``zero_amount_share``): that share of the sales gets amount 0.00. They are purchases with no
  spend; the ground truth carries the share so the oracle's expected spend accounts for it.
* Refund lines (``refund_share`` per sale): a refund of an earlier sale of the same customer, of minus its
  amount, 1 to ``MAX_REFUND_DELAY_DAYS`` days later (within the period), with its own transaction id.
  The platform quarantines negative amounts, so refunds never count as spend, and the sale stays a sale.
* Cancelled orders (``cancelled_share`` of all lines): an order of a buying customer on the day of one of
  their sales, with its own amount and id and ``status`` ``cancelled``; every other line is
  ``completed``. The status column exists only when ``cancelled_share`` > 0.
* ``export_layout="whitespace_export"``: instead of daily landing files, one file
  ``simulation/export.txt`` (header ``cust date total [status]``, whitespace-separated, dates
  ``YYYYMMDD``, rows by customer then time, as the CDNOW log) and ``simulation/mapping.yaml`` mapping it
  onto the data contract for ``mlsys import``.
* The future (``future_days``): the same customers go on buying for ``future_days`` days after ``end``;
  those sales (cancelled orders and refunds excluded, $0 sales included) go to
  ``simulation/future.parquet`` and are never delivered. Nobody signs up after ``end``; the purchases
  come from a stream of their own, so the delivered period is the same with or without a future, and
  ``oracle_expectations(ground_truth, end, H)`` is the best forecast of the future's first H days.

Extra lines come from the regime stream and the future from the future stream (``simulate`` spawns
them after the demo shop's three), so a regime never changes what its options do not touch.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlsys_assets import simulate as sim
from mlsys_assets.storage import write_bytes_atomically

MAX_REFUND_DELAY_DAYS = 30
EXPORT_FILE = "export.txt"
MAPPING_FILE = "mapping.yaml"
FUTURE_FILE = "future.parquet"
_SALE, _REFUND, _CANCELLED = (sim.LINE_KINDS.index(kind) for kind in ("sale", "refund", "cancelled"))


# --- the regimes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Regime:
    """A kind of transaction log: its SimulationConfig overrides and its period."""

    description: str  # one line, shown by `mlsys simulate --help`
    overrides: dict = field(default_factory=dict)  # SimulationConfig fields
    customers: int = 5000
    days: int = 730
    start: datetime.date | None = None  # a fixed historic first day; None: the period ends at `end`
    drift_last_days: int | None = None  # channel drift over the period's last days


REGIMES: dict[str, Regime] = {
    "demo": Regime("the demo shop of `make demo`: two years up to yesterday, a few broken rows",
                   {"dirty_share": 0.002}),
    "cdnow_like": Regime(
        "like CDNOW: one 1997 cohort watched 18 months, mostly one-time buyers, whitespace YYYYMMDD export "
        "with $0 rows and cancelled orders, no customers file",
        {"acquisition": "single_cohort", "cohort_days": 84, "purchase_rate_scale": 0.25,
         "customers_export": False, "export_layout": "whitespace_export", "zero_amount_share": 0.02,
         "cancelled_share": 0.05},
        days=548,
        start=datetime.date(1997, 1, 1),
    ),
    "zero_and_refunds": Regime("5% of sales are $0 and 3% more lines are refunds (negative amounts)",
                               {"zero_amount_share": 0.05, "refund_share": 0.03}),
    "cancelled_orders": Regime("an electronics shop: a third of the order lines are cancelled (status column), 1 year",
                               {"cancelled_share": 0.33}, days=365),
    "one_year": Regime("the demo shop with only one year of history", days=365),
    "whales": Regime("1% of customers spend 30x as much per order and dominate revenue",
                     {"whale_share": 0.01, "whale_spend_factor": 30.0}),
    "strong_seasonality": Regime("three times the yearly and holiday seasonality", {"seasonality_scale": 3.0}),
    "drift": Regime("like `make demo-drift`: a weak new channel takes 45% of signups in the last 120 days",
                    {"drift_kind": "channel"}, drift_last_days=120),
}


def regime_config(
    name: str,
    customers: int | None = None,
    seed: int = 7,
    end: datetime.date | None = None,
    future_days: int = 0,
    days: int | None = None,
) -> sim.SimulationConfig:
    """The SimulationConfig of a regime; customers, days and end override the regime's.

    The period is `days` days up to `end` (default: yesterday), or for a regime with a fixed historic
    start, `days` days from that start unless `end` is given.
    """
    if name not in REGIMES:
        raise ValueError(f"unknown regime {name!r}; expected one of {sorted(REGIMES)}")
    regime = REGIMES[name]
    days = regime.days if days is None else days
    if days < 1:
        raise ValueError(f"days must be positive, got {days}")
    if end is None:
        end = sim._yesterday() if regime.start is None else regime.start + datetime.timedelta(days=days - 1)
    overrides = dict(regime.overrides)
    if regime.drift_last_days is not None:
        overrides["drift_from"] = end - datetime.timedelta(days=regime.drift_last_days - 1)
    return sim.SimulationConfig(
        customers=regime.customers if customers is None else customers,
        start=end - datetime.timedelta(days=days - 1),
        end=end,
        seed=seed,
        future_days=future_days,
        regime=name,
        **overrides,
    )


def regime_help() -> str:
    """One line per regime, for the command line's help."""
    return "\n".join(f"{name}: {regime.description}" for name, regime in REGIMES.items())


# --- customers and lines ------------------------------------------------------------------------


def with_whales(rng: np.random.Generator, config: sim.SimulationConfig, customers: sim._Customers) -> sim._Customers:
    """whale_share of the customers (rounded) get whale_spend_factor times their mean spend."""
    if config.whale_share <= 0:
        return customers
    n = len(customers)
    whale = np.zeros(n, dtype=bool)
    whale[rng.choice(n, size=int(round(config.whale_share * n)), replace=False)] = True
    mean_spend = customers.mean_spend * np.where(whale, config.whale_spend_factor, 1.0)
    return replace(customers, mean_spend=mean_spend, whale=whale)


def with_zero_amounts(rng: np.random.Generator, transactions: sim._Transactions, share: float) -> sim._Transactions:
    if share <= 0:
        return transactions
    zero = rng.random(len(transactions)) < share
    return replace(transactions, cents=np.where(zero, 0, transactions.cents))


def with_regime_lines(
    rng: np.random.Generator, config: sim.SimulationConfig, customers: sim._Customers, sales: sim._Transactions
) -> sim._Transactions:
    """The lines of the delivered period: the sales ($0 ones included), refund lines and cancelled orders."""
    sales = with_zero_amounts(rng, sales, config.zero_amount_share)
    if config.refund_share <= 0 and config.cancelled_share <= 0:
        return sales
    days = (config.end - config.start).days + 1
    refunds = _refund_lines(rng, config.refund_share, sales, days)
    cancelled_count = int(round(config.cancelled_share / (1 - config.cancelled_share) * (len(sales) + len(refunds))))
    cancelled = _cancelled_orders(rng, cancelled_count, customers, sales, sim._drift_day(config, "price"))
    parts = [replace(sales, kind=np.full(len(sales), _SALE)), refunds, cancelled]

    def joined(name: str) -> np.ndarray:
        return np.concatenate([getattr(part, name) for part in parts])

    merged = {name: joined(name) for name in ("customer", "day", "second_of_day", "cents", "quantity", "kind")}
    order = np.argsort(merged["day"] * 86_400 + merged["second_of_day"], kind="stable")  # sales first on ties
    return sim._Transactions(**{name: values[order] for name, values in merged.items()})


def _time_of_day(rng: np.random.Generator, count: int) -> np.ndarray:
    hour = rng.choice(24, size=count, p=np.asarray(sim.HOURLY_PROFILE) / np.sum(sim.HOURLY_PROFILE))
    return hour * 3600 + rng.integers(0, 3600, count)


def _refund_lines(rng: np.random.Generator, share: float, sales: sim._Transactions, days: int) -> sim._Transactions:
    """Refunds of share * len(sales) distinct paid sales, 1 .. MAX_REFUND_DELAY_DAYS days later, within the period."""
    eligible = np.flatnonzero((sales.cents > 0) & (sales.day < days - 1))
    count = min(int(round(share * len(sales))), len(eligible))
    original = np.sort(rng.choice(eligible, size=count, replace=False)) if count else np.zeros(0, dtype=np.int64)
    room = np.minimum(MAX_REFUND_DELAY_DAYS, days - 1 - sales.day[original])
    delay = 1 + np.floor(rng.random(count) * room).astype(np.int64)
    return sim._Transactions(
        customer=sales.customer[original],
        day=sales.day[original] + delay,
        second_of_day=_time_of_day(rng, count),
        cents=-sales.cents[original],
        quantity=sales.quantity[original],
        kind=np.full(count, _REFUND),
    )


def _cancelled_orders(
    rng: np.random.Generator,
    count: int,
    customers: sim._Customers,
    sales: sim._Transactions,
    price_drift_day: int | None,
) -> sim._Transactions:
    """count orders, each by the customer and on the day of a random sale, with an amount of their own."""
    template = rng.integers(0, len(sales), count) if len(sales) else np.zeros(0, dtype=np.int64)
    orders = sim._transactions_on(rng, customers, sales.customer[template], sales.day[template], price_drift_day)
    return replace(orders, kind=np.full(len(template), _CANCELLED))


# --- files ------------------------------------------------------------------------------------------


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
    calendar: sim._Calendar,
    lines: sim._Transactions,
    fields: dict[str, pa.Array],
    transactions_landing: Path,
) -> None:
    """simulation/export.txt and its mapping.yaml; removes this period's daily files of an earlier run."""
    order = pa.array(np.argsort(lines.customer, kind="stable"))  # by customer, then time
    dates = pc.replace_substring(pa.array(np.datetime_as_string(calendar.dates), sim._TEXT), "-", "")
    columns = {
        "cust": fields["customer_id"].take(order),
        "date": dates.take(pa.array(lines.day).take(order)),
        "total": pc.utf8_lpad(fields["amount"].take(order), width=10, padding=" "),
    }
    if "status" in fields:
        columns["status"] = fields["status"].take(order)
    rows = sim._with_newlines(sim._join(list(columns.values()), " "))
    header = (" ".join(columns) + "\n").encode()
    write_bytes_atomically(simulation_dir / EXPORT_FILE, [header, sim._line_bytes(rows, 0, len(rows))])
    write_bytes_atomically(simulation_dir / MAPPING_FILE, [_mapping_yaml("status" in fields).encode()])
    for date in np.datetime_as_string(calendar.dates):
        for suffix in (".csv", ".parquet"):
            (transactions_landing / f"{date}{suffix}").unlink(missing_ok=True)


def remove_export(simulation_dir: Path) -> None:
    """A daily-layout run must not leave an earlier run's export behind."""
    for name in (EXPORT_FILE, MAPPING_FILE):
        (simulation_dir / name).unlink(missing_ok=True)


def write_future(
    rng: np.random.Generator,
    config: sim.SimulationConfig,
    customers: sim._Customers,
    customer_ids: pa.Array,
    simulation_dir: Path,
) -> sim._Transactions | None:
    """simulation/future.parquet: the sales of the future_days days after end (None, and no file, without)."""
    path = simulation_dir / FUTURE_FILE
    if config.future_days == 0:
        path.unlink(missing_ok=True)
        return None
    last_day = config.end + datetime.timedelta(days=config.future_days)
    calendar = sim._Calendar.between(config.start, last_day, config.seasonality_scale)
    first_day = (config.end - config.start).days + 1
    future = sim._draw_transactions(rng, customers, calendar, sim._drift_day(config, "price"), first_day=first_day)
    future = with_zero_amounts(rng, future, config.zero_amount_share)
    table = pa.table(
        {
            "customer_id": pc.cast(customer_ids.take(pa.array(future.customer)), pa.string()),
            "event_date": pa.array(calendar.dates[future.day], pa.date32()),
            "amount": pa.array(future.cents / 100),
        }
    )
    sim._write_parquet_atomically(table, path)
    return future


# --- reporting --------------------------------------------------------------------------------------


def meta_entries(config: sim.SimulationConfig, lines: sim._Transactions, future: sim._Transactions | None) -> dict:
    """meta.json entries of the regime options in use (none for the demo shop)."""
    entries: dict = {}
    if lines.kind is not None or config.zero_amount_share > 0:
        kind = np.zeros(len(lines), dtype=np.int64) if lines.kind is None else lines.kind
        by_kind = {name: int(np.sum(kind == index)) for index, name in enumerate(sim.LINE_KINDS)}
        entries["lines_by_kind"] = by_kind | {"zero_amount_sales": int(np.sum((kind == _SALE) & (lines.cents == 0)))}
    if config.export_layout == "whitespace_export":
        entries["export"] = {"path": EXPORT_FILE, "mapping": MAPPING_FILE, "rows": len(lines)}
    if future is not None:
        entries["future"] = {
            "days": config.future_days,
            "first_day": (config.end + datetime.timedelta(days=1)).isoformat(),
            "last_day": (config.end + datetime.timedelta(days=config.future_days)).isoformat(),
            "observed_until": config.end.isoformat(),
            "path": FUTURE_FILE,
            "transactions": len(future),
        }
    return entries


def summary_paths(config: sim.SimulationConfig, simulation_dir: Path, future: sim._Transactions | None) -> dict:
    """The SimulationSummary fields of the export and the future."""
    export = config.export_layout == "whitespace_export"
    return {
        "export_path": simulation_dir / EXPORT_FILE if export else None,
        "mapping_path": simulation_dir / MAPPING_FILE if export else None,
        "future_path": None if future is None else simulation_dir / FUTURE_FILE,
        "future_transactions": 0 if future is None else len(future),
    }
