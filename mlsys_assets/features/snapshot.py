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

from mlsys_assets.features.btyd import BtydModel

WINDOWS_DAYS = (30, 90, 180, 365)
CATEGORICAL_FEATURES = ("country", "acquisition_channel")
BTYD_FEATURES = ("btyd_expected_purchases", "btyd_expected_spend", "btyd_p_alive", "btyd_p_no_purchase")
_WINDOW_FEATURES = tuple(f"{kind}_{days}" for days in WINDOWS_DAYS for kind in ("tx", "spend", "qty"))
NUMERIC_FEATURES = (
    "recency_days", "tenure_days", "days_since_signup", "purchase_days", "tx_lifetime", "spend_lifetime",
    "qty_lifetime", *_WINDOW_FEATURES, "spend_trend_90", "gap_mean_days", "gap_std_days", "last_gap_days",
    "avg_basket", "avg_items", "max_amount", "season_sin", "season_cos", *BTYD_FEATURES,
)
FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES
RFM_COLUMNS = ("rfm_frequency", "rfm_recency", "rfm_age", "rfm_repeat_spend")

_SQL = (Path(__file__).parent / "snapshot.sql").read_text()
_SOURCE = {"tx": "transactions", "spend": "spend", "qty": "quantity"}


def snapshot_sql() -> str:
    aggregates = ",\n        ".join(
        f"sum({_SOURCE[kind]}) FILTER (WHERE event_date > as_of - {days}) AS {kind}_{days}"
        for days in WINDOWS_DAYS for kind in ("tx", "spend", "qty")
    )
    columns = ",\n    ".join(f"coalesce(act.{name}, 0) AS {name}" for name in _WINDOW_FEATURES)
    return Template(_SQL).substitute(window_aggregates=aggregates, window_columns=columns)


def build_snapshot(con: duckdb.DuckDBPyConnection, as_of_days: list[dt.date], horizon_days: int) -> pd.DataFrame:
    """Features of every customer known by each as-of day: one row per (as_of, customer_id)."""
    con.execute("CREATE OR REPLACE TEMP TABLE _as_of (as_of DATE)")
    con.executemany("INSERT INTO _as_of VALUES (?)", [[day] for day in sorted(set(as_of_days))])
    con.execute(snapshot_sql())
    frame = con.execute("SELECT * FROM _snapshot ORDER BY as_of, customer_id").df()
    return add_btyd_features(frame, horizon_days)


def add_btyd_features(frame: pd.DataFrame, horizon_days: int) -> pd.DataFrame:
    """BG/NBD + Gamma-Gamma outputs, fitted per as-of day on that day's buyers (NaN for non-buyers)."""
    for column in BTYD_FEATURES:
        frame[column] = float("nan")
    for as_of, day in frame.groupby("as_of"):
        buyers = day[day["rfm_frequency"].notna()]
        if len(buyers) < 20 or (buyers["rfm_frequency"] > 0).sum() < 10:
            continue  # too little history for a stable fit; CatBoost treats NaN as missing
        model = BtydModel.fit(
            buyers["rfm_frequency"].to_numpy(float), buyers["rfm_recency"].to_numpy(float),
            buyers["rfm_age"].to_numpy(float), buyers["rfm_repeat_spend"].fillna(0).to_numpy(float),
        )
        predicted = model.predict(
            horizon_days, buyers["rfm_frequency"].to_numpy(float), buyers["rfm_recency"].to_numpy(float),
            buyers["rfm_age"].to_numpy(float), buyers["rfm_repeat_spend"].fillna(0).to_numpy(float),
        )
        frame.loc[buyers.index, "btyd_expected_purchases"] = predicted["expected_purchases"].to_numpy()
        frame.loc[buyers.index, "btyd_expected_spend"] = predicted["expected_spend"].to_numpy()
        frame.loc[buyers.index, "btyd_p_alive"] = predicted["p_alive"].to_numpy()
        frame.loc[buyers.index, "btyd_p_no_purchase"] = predicted["p_no_purchase"].to_numpy()
    return frame
