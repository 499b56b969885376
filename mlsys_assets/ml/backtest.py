"""Rolling-origin backtests: how a model configuration would have done at several past cutoffs.

A cutoff c is an as-of day whose label window (c, c+H] has fully arrived. At each cutoff the model is
fitted only on examples whose own label window ended by c (as_of + H <= c), as if trained on day c,
and it forecasts the customers as of c. Cutoffs are spaced by H, so their forecast windows do not
overlap. The post-processing (blend with the classic forecast, bias scale) is chosen on the cutoffs,
and each cutoff's reported forecast uses parameters chosen on the *other* cutoffs (leave one out), so
the backtest never grades a choice on the data that made it. No Dagster import.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
from catboost import CatBoost, Pool

from mlsys_assets.ml.scoring import Forecaster, model_frame
from mlsys_assets.ml.targets import Target

BLEND_WEIGHTS = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))
# A bias scale is kept only when every cutoff asks for a correction in the same direction and the
# cutoffs agree on its size within this relative spread: otherwise it would chase noise.
SCALE_MAX_SPREAD = 0.25
MIN_TRAIN_DAYS = 2


def cutoff_days(grid: list[dt.date], horizon_days: int, max_cutoffs: int) -> list[dt.date]:
    """The newest grid day, then the newest grid day at least H before the previous cutoff, and so on,
    while a cutoff still has MIN_TRAIN_DAYS grid days of matured training examples. Oldest first."""
    cutoffs: list[dt.date] = []
    limit = grid[-1] if grid else None
    while limit is not None and len(cutoffs) < max_cutoffs:
        eligible = [day for day in grid if day <= limit]
        if not eligible:
            break
        cutoff = eligible[-1]
        if len(train_days(grid, cutoff, horizon_days)) < MIN_TRAIN_DAYS:
            break
        cutoffs.insert(0, cutoff)
        limit = cutoff - dt.timedelta(days=horizon_days)
    return cutoffs


def train_days(grid: list[dt.date], cutoff: dt.date, horizon_days: int) -> list[dt.date]:
    """Grid days whose label window (A, A+H] ended by the cutoff: what was known then."""
    return [day for day in grid if day + dt.timedelta(days=horizon_days) <= cutoff]


def matured_by(examples: pd.DataFrame, cutoff: dt.date, horizon_days: int) -> pd.DataFrame:
    """The examples whose label window ended by the cutoff (the rule of `train_days`, on a frame)."""
    return examples[examples["as_of"] + pd.Timedelta(days=horizon_days) <= pd.Timestamp(cutoff)]


@dataclass(frozen=True)
class ModelSpec:
    """A CatBoost configuration for one target."""

    target: Target
    params: dict
    features: list[str]
    categorical: list[str]
    boost_from_btyd: bool

    def fit(self, frame: pd.DataFrame) -> CatBoost:
        matrix = model_frame(frame, self.features, self.categorical)
        baseline = self.target.to_raw(self._btyd(frame)) if self.boost_from_btyd else None
        model = self.target.catboost_class(**self.params)
        model.fit(Pool(matrix, frame[self.target.label], cat_features=self.categorical, baseline=baseline))
        return model

    def forecaster(self, model: CatBoost | None, blend_weight: float = 1.0, scale: float = 1.0) -> Forecaster:
        return Forecaster(self.target, "catboost", self.features, self.categorical, model, self.boost_from_btyd,
                          blend_weight, scale)

    def _btyd(self, frame: pd.DataFrame) -> np.ndarray:
        return self.target.btyd_forecast(frame[self.target.btyd_column].to_numpy(float))


def run_backtest(spec: ModelSpec, sample: pd.DataFrame, tests: pd.DataFrame, cutoffs: list[dt.date],
                 horizon_days: int) -> tuple[pd.DataFrame, dict[dt.date, CatBoost]]:
    """Per cutoff: fit on the sample's examples matured by then, forecast the cutoff's customers.

    Returns one row per (cutoff, customer) with the actual value, the CatBoost forecast and the classic
    one, and the model fitted at each cutoff."""
    parts, models = [], {}
    for cutoff in cutoffs:
        train = matured_by(sample, cutoff, horizon_days)
        test = tests[tests["as_of"] == pd.Timestamp(cutoff)]
        model = spec.fit(train)
        forecaster = spec.forecaster(model)
        parts.append(pd.DataFrame({
            "cutoff": cutoff, "customer_id": test["customer_id"].to_numpy(),
            "actual": test[spec.target.label].to_numpy(float),
            "catboost": forecaster.catboost_values(test), "btyd": forecaster.btyd_values(test),
        }))
        models[cutoff] = model
    return pd.concat(parts, ignore_index=True), models


def _blend(frame: pd.DataFrame, weight: float, scale: float = 1.0) -> np.ndarray:
    return scale * (weight * frame["catboost"].to_numpy() + (1 - weight) * frame["btyd"].to_numpy())


def choose_postprocessing(target: Target, backtest: pd.DataFrame) -> dict:
    """Blend weight (by the target's blend metric, mean over cutoffs) and, for spend, a bias scale kept
    only when the cutoffs agree on it. With no cutoff to learn from, the raw CatBoost forecast."""
    cutoffs = list(backtest.groupby("cutoff"))
    if not cutoffs:
        return {"blend_weight": 1.0, "scale": 1.0, "scale_kept": False}

    def loss(weight: float) -> float:
        return float(np.mean([target.metrics(part["actual"].to_numpy(), _blend(part, weight))[target.blend_metric]
                              for _, part in cutoffs]))

    weight = min(BLEND_WEIGHTS, key=lambda w: (loss(w), -w))
    scale, kept = _bias_scale(cutoffs, weight) if target.bias_scaled else (1.0, False)
    return {"blend_weight": float(weight), "scale": float(scale), "scale_kept": bool(kept)}


def _bias_scale(cutoffs: list[tuple], weight: float) -> tuple[float, bool]:
    """The pooled actual/forecast ratio, kept only when every cutoff is biased the same way and the
    cutoffs' ratios spread by at most SCALE_MAX_SPREAD of it."""
    ratios = np.array([part["actual"].sum() / max(_blend(part, weight).sum(), 1e-9) for _, part in cutoffs])
    pooled = float(sum(p["actual"].sum() for _, p in cutoffs) / max(sum(_blend(p, weight).sum() for _, p in cutoffs), 1e-9))
    same_side = bool(np.all(ratios > 1) or np.all(ratios < 1))
    kept = len(ratios) >= 2 and same_side and float(np.ptp(ratios)) / pooled <= SCALE_MAX_SPREAD
    return (pooled, True) if kept else (1.0, False)


def leave_one_out_forecasts(target: Target, backtest: pd.DataFrame) -> pd.Series:
    """Each cutoff's forecast with the post-processing chosen on the other cutoffs (raw CatBoost when
    there is no other cutoff)."""
    result = pd.Series(np.nan, index=backtest.index)
    for cutoff, part in backtest.groupby("cutoff"):
        chosen = choose_postprocessing(target, backtest[backtest["cutoff"] != cutoff])
        result.loc[part.index] = _blend(part, chosen["blend_weight"], chosen["scale"])
    return result
