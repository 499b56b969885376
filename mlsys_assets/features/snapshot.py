"""The one feature definition, parameterized by the as-of day.

`build_snapshot` runs snapshot.sql for any set of as-of days and adds the buy-till-you-die baseline's
outputs, fitted on the same as-of data. Training examples, batch scoring and the online store all call
it, so the features a model is trained on and the features it is served cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from string import Template

import duckdb
import pandas as pd

import numpy as np

from mlsys_assets.features.btyd import fit_bgnbd, fit_gamma_gamma
from mlsys_assets.features.derived import SEASON_FEATURES, season_sql

WINDOWS_DAYS = (30, 90, 180, 365)
CATEGORICAL_FEATURES = ("country", "acquisition_channel")
BTYD_FEATURES = ("btyd_expected_purchases", "btyd_expected_spend", "btyd_p_alive", "btyd_p_no_purchase")
_WINDOW_FEATURES = tuple(f"{kind}_{days}" for days in WINDOWS_DAYS for kind in ("tx", "spend", "qty"))
NUMERIC_FEATURES = (
    "recency_days", "tenure_days", "days_since_signup", "purchase_days", "tx_lifetime", "spend_lifetime",
    "qty_lifetime", *_WINDOW_FEATURES, "spend_trend_90", "gap_mean_days", "gap_std_days", "last_gap_days",
    "avg_basket", "avg_items", "max_amount", *SEASON_FEATURES, *BTYD_FEATURES,
)
FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES
RFM_COLUMNS = ("rfm_frequency", "rfm_recency", "rfm_age", "rfm_repeat_spend")

_SQL = (Path(__file__).parent / "snapshot.sql").read_text()
_SOURCE = {"tx": "transactions", "spend": "spend", "qty": "quantity"}


def snapshot_sql(customers_table: str | None = None) -> str:
    """snapshot.sql for the as-of days in _as_of; with `customers_table` (a table with a customer_id column)
    only for those customers."""
    aggregates = ",\n        ".join(
        f"sum({_SOURCE[kind]}) FILTER (WHERE event_date > as_of - {days}) AS {kind}_{days}"
        for days in WINDOWS_DAYS for kind in ("tx", "spend", "qty")
    )
    columns = ",\n    ".join(f"coalesce(act.{name}, 0) AS {name}" for name in _WINDOW_FEATURES)
    only = "" if customers_table is None else f"SELECT customer_id FROM {customers_table}"
    return Template(_SQL).substitute(
        window_aggregates=aggregates, window_columns=columns,
        season_columns=season_sql("coalesce(act.as_of, k.as_of)"),
        customers_daily=f"AND d.customer_id IN ({only})" if only else "",
        customers_known=f"AND c.customer_id IN ({only})" if only else "",
    )


def build_snapshot(con: duckdb.DuckDBPyConnection, as_of_days: list[dt.date], horizon_days: int,
                   customers_table: str | None = None) -> pd.DataFrame:
    """Features of every customer known by each as-of day (of those in `customers_table` when given): one
    row per (as_of, customer_id). The BTYD fits are per as-of day on the customers in the frame."""
    con.execute("CREATE OR REPLACE TEMP TABLE _as_of (as_of DATE)")
    con.executemany("INSERT INTO _as_of VALUES (?)", [[day] for day in sorted(set(as_of_days))])
    con.execute(snapshot_sql(customers_table))
    frame = con.execute("SELECT * FROM _snapshot ORDER BY as_of, customer_id").df()
    return add_btyd_features(frame, horizon_days)


def add_btyd_features(frame: pd.DataFrame, horizon_days: int) -> pd.DataFrame:
    """BG/NBD + Gamma-Gamma outputs, fitted per as-of day on that day's buyers.

    Every customer known by the day gets a forecast: a buyer from its own (x, t_x, T, m_x); a customer
    who signed up but has not bought yet as x = t_x = 0 with T = days since signup (BG/NBD's "no repeat
    purchase yet"). The columns stay NaN only on a day with too few buyers for a stable fit.
    """
    for column in BTYD_FEATURES:
        frame[column] = float("nan")
    for _, day in frame.groupby("as_of"):
        buyers = day[day["rfm_frequency"].notna()]
        if len(buyers) < 20 or (buyers["rfm_frequency"] > 0).sum() < 10:
            continue  # too little history for a stable fit; CatBoost treats NaN as missing
        known = day[day["rfm_frequency"].notna() | day["days_since_signup"].notna()]
        x = known["rfm_frequency"].fillna(0).to_numpy(float)
        t_x = known["rfm_recency"].fillna(0).to_numpy(float)
        T = known["rfm_age"].fillna(known["days_since_signup"]).clip(lower=0).to_numpy(float)
        m_x = known["rfm_repeat_spend"].fillna(0).to_numpy(float)
        bought = known["rfm_frequency"].notna().to_numpy()
        predicted = _btyd_predictions(horizon_days, x, t_x, T, m_x, bought, known["avg_basket"].to_numpy(float))
        for column, values in predicted.items():
            frame.loc[known.index, column] = values
    return frame


def _btyd_predictions(
    horizon_days: int, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, m_x: np.ndarray, bought: np.ndarray,
    avg_basket: np.ndarray,
) -> dict[str, np.ndarray]:
    """The four BTYD columns. When the Gamma-Gamma model cannot be used (no repeat buyer with positive
    spend, or q <= 1: spend too heavy-tailed for a finite mean) spend per purchase is the customer's
    own average basket (the buyers' mean for those who have not bought), so a shop with whales or
    free orders still gets a BG/NBD forecast instead of a crash."""
    bgnbd = fit_bgnbd(x[bought], t_x[bought], T[bought])
    alive = bgnbd.p_alive(x, t_x, T)
    purchases = bgnbd.expected_purchases(horizon_days, x, t_x, T)
    try:
        gamma_gamma = fit_gamma_gamma(x[bought], m_x[bought])
        per_purchase = gamma_gamma.conditional_expected_average_spend(x, m_x)
    except ValueError:
        basket_mean = float(np.nanmean(avg_basket[bought])) if bought.any() else 0.0
        per_purchase = np.where(np.isnan(avg_basket), basket_mean, avg_basket)
    return {
        "btyd_expected_purchases": purchases,
        "btyd_expected_spend": purchases * per_purchase,
        "btyd_p_alive": alive,
        "btyd_p_no_purchase": bgnbd.p_no_purchase(horizon_days, x, t_x, T),
    }
