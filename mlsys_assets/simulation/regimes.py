"""Named regimes of the shop simulator: what real transaction logs look like.

A regime is a set of ``SimulationConfig`` overrides that makes the demo shop's output look like another
kind of log (``REGIMES``, ``regime_config``): a single acquisition cohort, mostly one-time buyers,
whales, stronger seasonality, $0 sales, refund lines, cancelled orders with a status column, no
customers export, one whitespace export file instead of daily files. What the options add is drawn in
``regime_lines.py``, the export written in ``export.py``, the true future in ``truth.py``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from mlsys_assets.simulation.config import SimulationConfig, yesterday

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
) -> SimulationConfig:
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
        end = yesterday() if regime.start is None else regime.start + datetime.timedelta(days=days - 1)
    overrides = dict(regime.overrides)
    if regime.drift_last_days is not None:
        overrides["drift_from"] = end - datetime.timedelta(days=regime.drift_last_days - 1)
    return SimulationConfig(
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
