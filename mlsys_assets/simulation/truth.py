"""What the simulator knows and the platform never sees: the ground truth, the true future, meta.json.

The ground truth (``simulation/ground_truth.parquet``) stores every customer's true parameters (a late
signup's ``first_purchase_date`` may fall after ``end``; regime columns only when the regime is on); the
oracle reads it. The future (``future_days``): the same customers go on buying for ``future_days`` days
after ``end``; those sales (cancelled orders and refunds excluded, $0 sales included) go to
``simulation/future.parquet`` and are never delivered. Nobody signs up after ``end``; the purchases come
from a stream of their own, so the delivered period is the same with or without a future, and
``oracle_expectations(ground_truth, end, H)`` is the best forecast of the future's first H days.
``simulation/meta.json`` records the configuration, the process parameters and the counts.
"""

from __future__ import annotations

import datetime
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlsys_assets.simulation.config import REGIME_FIELDS, SimulationConfig
from mlsys_assets.simulation.export import EXPORT_FILE, MAPPING_FILE
from mlsys_assets.simulation.landing import write_parquet_atomically
from mlsys_assets.simulation.process import (
    COUNTRIES,
    LINE_KINDS,
    PRICE_DRIFT_FACTOR,
    SPEND_SHAPE,
    Customers,
    Transactions,
    draw_transactions,
    drift_day,
    process_definition,
)
from mlsys_assets.simulation.regime_lines import SALE, with_zero_amounts
from mlsys_assets.simulation.seasonality import Calendar, seasonality_definition

GENERATOR_VERSION = "1.0.0"
FUTURE_FILE = "future.parquet"


def _date_array(calendar: Calendar, days: np.ndarray, missing: np.ndarray) -> pa.Array:
    dates = calendar.dates[0] + np.where(missing, 0, days)
    return pa.array(np.where(missing, np.datetime64("NaT"), dates).astype("datetime64[D]"))


def ground_truth_table(
    customers: Customers, customer_ids: pa.Array, calendar: Calendar, config: SimulationConfig
) -> pa.Table:
    """One row per customer with its true parameters (a missing date: never buys, or alive at the end)."""
    n = len(customers)
    signup_dates = calendar.dates[customers.signup_day]
    months, month_index = np.unique(signup_dates.astype("datetime64[M]"), return_inverse=True)
    price_drift_day = drift_day(config, "price")
    price_change_date = None if price_drift_day is None else config.drift_from
    return pa.table(
        {
            "customer_id": pc.cast(customer_ids, pa.string()),
            "signup_date": pa.array(signup_dates),
            "cohort": pa.array(np.datetime_as_string(months)).take(pa.array(month_index)),
            "country": pa.array(list(COUNTRIES)).take(pa.array(customers.country)),
            "acquisition_channel": pa.array(list(customers.channel_names)).take(pa.array(customers.channel)),
            "never_buys": pa.array(customers.never_buys),
            "first_purchase_date": _date_array(calendar, customers.first_purchase_day, customers.never_buys),
            "purchase_rate": pa.array(customers.purchase_rate),
            "dropout_rate": pa.array(customers.dropout_rate),
            "death_date": _date_array(calendar, customers.death_day, customers.death_day >= calendar.days),
            "mean_spend": pa.array(customers.mean_spend),
            "spend_shape": pa.array(np.full(n, SPEND_SHAPE)),
            "observed_until": pa.array(np.full(n, calendar.dates[-1])),
            "price_change_date": pa.array([price_change_date] * n, pa.date32()),
            "price_change_factor": pa.array(np.full(n, 1.0 if price_change_date is None else PRICE_DRIFT_FACTOR)),
            **_regime_truth_columns(config, customers),
        }
    )


def _regime_truth_columns(config: SimulationConfig, customers: Customers) -> dict[str, pa.Array]:
    """Ground truth columns of regime options, present only when the option is on (read by the oracle)."""
    n = len(customers)
    columns = {}
    if customers.whale is not None:
        columns["is_whale"] = pa.array(customers.whale)
    if config.seasonality_scale != 1.0:
        columns["seasonality_scale"] = pa.array(np.full(n, config.seasonality_scale))
    if config.zero_amount_share > 0:
        columns["zero_amount_share"] = pa.array(np.full(n, config.zero_amount_share))
    return columns


def write_future(
    rng: np.random.Generator,
    config: SimulationConfig,
    customers: Customers,
    customer_ids: pa.Array,
    simulation_dir: Path,
) -> Transactions | None:
    """simulation/future.parquet: the sales of the future_days days after end (None, and no file, without)."""
    path = simulation_dir / FUTURE_FILE
    if config.future_days == 0:
        path.unlink(missing_ok=True)
        return None
    last_day = config.end + datetime.timedelta(days=config.future_days)
    calendar = Calendar.between(config.start, last_day, config.seasonality_scale)
    first_day = (config.end - config.start).days + 1
    future = draw_transactions(rng, customers, calendar, drift_day(config, "price"), first_day=first_day)
    future = with_zero_amounts(rng, future, config.zero_amount_share)
    table = pa.table(
        {
            "customer_id": pc.cast(customer_ids.take(pa.array(future.customer)), pa.string()),
            "event_date": pa.array(calendar.dates[future.day], pa.date32()),
            "amount": pa.array(future.cents / 100),
        }
    )
    write_parquet_atomically(table, path)
    return future


def meta(config: SimulationConfig, counts: dict) -> dict:
    """meta.json: the generator, the configuration, the seasonality and process parameters, the counts."""
    config_json = asdict(config)
    for name in ("start", "end", "drift_from"):
        config_json[name] = None if config_json[name] is None else config_json[name].isoformat()
    defaults = SimulationConfig(start=config.start, end=config.end)
    for name in REGIME_FIELDS:  # listed only when they differ from the default
        if getattr(config, name) == getattr(defaults, name):
            del config_json[name]
    return {
        "generator_version": GENERATOR_VERSION,
        "config": config_json,
        "seasonality": seasonality_definition(config.seasonality_scale),
        "process": process_definition(),
        "counts": counts,
    }


def regime_meta_entries(config: SimulationConfig, lines: Transactions, future: Transactions | None) -> dict:
    """meta.json entries of the regime options in use (none for the demo shop)."""
    entries: dict = {}
    if lines.kind is not None or config.zero_amount_share > 0:
        kind = np.zeros(len(lines), dtype=np.int64) if lines.kind is None else lines.kind
        by_kind = {name: int(np.sum(kind == index)) for index, name in enumerate(LINE_KINDS)}
        entries["lines_by_kind"] = by_kind | {"zero_amount_sales": int(np.sum((kind == SALE) & (lines.cents == 0)))}
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
