"""``simulate``: draws the shop and writes its landing files, ground truth, future and meta.json.

Randomness comes from five independent streams spawned from the seed (customers, purchases, dirt, regime
lines, future), so adding dirt, switching the file format or simulating a future never changes the
underlying clean data, and a regime never changes what its options do not touch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mlsys_assets.simulation import truth
from mlsys_assets.simulation.config import SimulationConfig, SimulationSummary
from mlsys_assets.simulation.export import EXPORT_FILE, MAPPING_FILE
from mlsys_assets.simulation.landing import write_customers, write_parquet_atomically, write_transaction_lines
from mlsys_assets.simulation.process import Customers, Transactions, draw_customers, draw_transactions, drift_day
from mlsys_assets.simulation.regime_lines import with_regime_lines, with_whales
from mlsys_assets.simulation.seasonality import Calendar
from mlsys_assets.simulation.text import numbered_customer_ids
from mlsys_assets.storage import write_bytes_atomically


def simulate(data_dir: Path, config: SimulationConfig) -> SimulationSummary:
    """Simulate the shop and write landing files, ground truth and metadata under data_dir."""
    data_dir = Path(data_dir)
    landing_dir = data_dir / "landing"
    simulation_dir = data_dir / "simulation"
    # More streams than the three of the demo shop: spawning more leaves the first three unchanged.
    customer_rng, purchase_rng, dirt_rng, regime_rng, future_rng = np.random.default_rng(config.seed).spawn(5)

    calendar = Calendar.between(config.start, config.end, config.seasonality_scale)
    customers = with_whales(regime_rng, config, draw_customers(customer_rng, config, calendar))
    sales = draw_transactions(purchase_rng, customers, calendar, drift_day(config, "price"))
    lines = with_regime_lines(regime_rng, config, customers, sales)
    customer_ids = numbered_customer_ids(len(customers))

    simulation_dir.mkdir(parents=True, exist_ok=True)
    dirty_counts = {
        "transactions": write_transaction_lines(dirt_rng, config, calendar, lines, customer_ids, data_dir),
        "customers": write_customers(customer_rng, dirt_rng, config, calendar, customers, customer_ids, landing_dir),
    }
    ground_truth_path = simulation_dir / "ground_truth.parquet"
    write_parquet_atomically(truth.ground_truth_table(customers, customer_ids, calendar, config), ground_truth_path)
    future = truth.write_future(future_rng, config, customers, customer_ids, simulation_dir)

    counts = _counts(config, calendar, customers, lines, dirty_counts)
    meta = truth.meta(config, counts) | truth.regime_meta_entries(config, lines, future)
    write_bytes_atomically(simulation_dir / "meta.json", [(json.dumps(meta, indent=2) + "\n").encode()])
    return SimulationSummary(
        customers=len(customers),
        transactions=len(lines),
        days=calendar.days,
        transaction_files=counts["transaction_files"],
        dirty_rows=counts["dirty_rows"],
        landing_dir=landing_dir,
        ground_truth_path=ground_truth_path,
        **_export_and_future_paths(config, simulation_dir, future),
    )


def _counts(
    config: SimulationConfig,
    calendar: Calendar,
    customers: Customers,
    lines: Transactions,
    dirty_counts: dict[str, dict[str, int]],
) -> dict:
    """The counts in meta.json."""
    return {
        "customers": len(customers),
        "buying_customers": int((~customers.never_buys & (customers.first_purchase_day < calendar.days)).sum()),
        "transactions": len(lines),
        "days": calendar.days,
        "transaction_files": calendar.days if config.export_layout == "daily" else 0,
        "dirty_rows": sum(dirty_counts["transactions"].values()) + sum(dirty_counts["customers"].values()),
        "dirty_rows_by_kind": dirty_counts,
    }


def _export_and_future_paths(config: SimulationConfig, simulation_dir: Path, future: Transactions | None) -> dict:
    """The SimulationSummary fields of the export and the future."""
    export = config.export_layout == "whitespace_export"
    return {
        "export_path": simulation_dir / EXPORT_FILE if export else None,
        "mapping_path": simulation_dir / MAPPING_FILE if export else None,
        "future_path": None if future is None else simulation_dir / truth.FUTURE_FILE,
        "future_transactions": 0 if future is None else len(future),
    }
