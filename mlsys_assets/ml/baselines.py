"""The forecasts every candidate is compared with, from the same as-of features (no Dagster import).

- naive: spend of the last H days; churn = the training churn rate of customers with / without a
  purchase in the last window;
- historical: average daily spend and purchase rate since signup times H; churn = exp(-rate H);
- bgnbd: BG/NBD + Gamma-Gamma from the snapshot (the same forecast a BTYD version serves);
- oracle: a demo scorer passed in by the caller (the simulator's truth), never imported here.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from mlsys_assets.features.snapshot import WINDOWS_DAYS
from mlsys_assets.ml.targets import TARGETS

# (customers as of a day, the day, H) -> {"ltv": spend, "churn": probability}, or None when it does not apply.
OracleScorer = Callable[[pd.DataFrame, object, int], "dict[str, np.ndarray] | None"]


def window_column(prefix: str, horizon_days: int) -> tuple[str, float]:
    """The snapshot window matching the horizon, and the factor that scales it to the horizon."""
    days = min(WINDOWS_DAYS, key=lambda w: abs(w - horizon_days))
    return f"{prefix}_{days}", horizon_days / days


def _rate(values: pd.Series, fallback: float) -> float:
    """A group's churn rate; an empty group (every training customer active, say) takes the fallback."""
    return float(values.mean()) if len(values) else fallback


def baseline_forecasts(test: pd.DataFrame, train: pd.DataFrame, horizon_days: int) -> dict[str, dict[str, np.ndarray]]:
    """{scorer: {"ltv": spend, "churn": probability}} for the rows of `test`; `train` gives the naive rates."""
    spend_column, spend_scale = window_column("spend", horizon_days)
    tx_column, _ = window_column("tx", horizon_days)
    overall = _rate(train["churned"], 0.5)
    active_rate = _rate(train.loc[train[tx_column] > 0, "churned"], overall)
    inactive_rate = _rate(train.loc[train[tx_column] == 0, "churned"], overall)
    # Historical average rate; the 30-day floor keeps a brand-new customer's one purchase from exploding.
    observed_days = np.maximum(test["days_since_signup"].fillna(0).to_numpy(float), 30.0)
    daily_spend = test["spend_lifetime"].to_numpy(float) / observed_days
    daily_purchases = test["tx_lifetime"].to_numpy(float) / observed_days
    return {
        "naive": {
            "ltv": test[spend_column].to_numpy(float) * spend_scale,
            "churn": np.where(test[tx_column] > 0, active_rate, inactive_rate),
        },
        "historical": {"ltv": daily_spend * horizon_days, "churn": np.exp(-daily_purchases * horizon_days)},
        "bgnbd": {name: target.btyd_forecast(test[target.btyd_column].to_numpy(float))
                  for name, target in TARGETS.items()},
    }
