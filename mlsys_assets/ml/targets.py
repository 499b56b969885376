"""What each forecast target is: the one place that knows how LTV and churn differ.

Everything model-specific (label, CatBoost class and loss, link function, the BG/NBD + Gamma-Gamma
forecast of the same quantity, metrics, the gate's metrics) lives in one `Target` per model name,
so training, evaluation, scoring and the API never branch on the name. No Dagster import: the API
scores through it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from catboost import CatBoost, CatBoostClassifier, CatBoostRegressor

from mlsys_assets.ml.metrics import churn_metrics, spend_metrics

# Floors of the link functions: BG/NBD can forecast a spend of ~1e-9 for a long-lost customer, and
# log(0) or logit(0/1) would give CatBoost an infinite starting point.
MIN_SPEND = 0.01
PROBABILITY_EPSILON = 1e-4


def _log(values: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(values, MIN_SPEND))


def _logit(values: np.ndarray) -> np.ndarray:
    p = np.clip(values, PROBABILITY_EPSILON, 1 - PROBABILITY_EPSILON)
    return np.log(p / (1 - p))


def _sigmoid(raw: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-raw))


@dataclass(frozen=True)
class Target:
    name: str
    label: str  # column of ml.training_examples
    btyd_column: str  # the classic model's forecast of the same quantity, a snapshot column
    btyd_missing: float  # the classic forecast where BG/NBD could not be fitted (too few buyers)
    catboost_class: type[CatBoost]
    default_loss: str
    to_raw: Callable[[np.ndarray], np.ndarray]  # forecast -> CatBoost's raw scale (its link function)
    from_raw: Callable[[np.ndarray], np.ndarray]
    metrics: Callable[[np.ndarray, np.ndarray], dict[str, float]]
    blend_metric: str  # chooses the blend weight on the backtest (lower is better)
    gate_metrics: tuple[str, ...]  # must match or beat the classic model on the backtest
    # A total to keep right: spend forecasts may be rescaled when every cutoff shows the same bias
    # (ml/backtest.py); a probability keeps its calibration from the loss and is never rescaled.
    bias_scaled: bool

    def btyd_forecast(self, btyd_values: np.ndarray) -> np.ndarray:
        values = np.asarray(btyd_values, float)
        return np.where(np.isnan(values), self.btyd_missing, values)


TARGETS = {
    # Spend in (A, A+H]. Tweedie 1.2 by measurement (bench/ltv_loss.py, docs/models.md); its log link
    # makes log(BG/NBD spend) the natural starting point.
    "ltv": Target(
        name="ltv", label="label_spend", btyd_column="btyd_expected_spend", btyd_missing=0.0,
        catboost_class=CatBoostRegressor, default_loss="Tweedie:variance_power=1.2",
        to_raw=_log, from_raw=np.exp, metrics=spend_metrics, blend_metric="rmse",
        gate_metrics=("rmse", "gini", "top10_capture", "abs_bias_pct"), bias_scaled=True,
    ),
    # No purchase in (A, A+H]: BG/NBD's exact P(no purchase) on the logit scale.
    "churn": Target(
        name="churn", label="churned", btyd_column="btyd_p_no_purchase", btyd_missing=1.0,
        catboost_class=CatBoostClassifier, default_loss="Logloss",
        to_raw=_logit, from_raw=_sigmoid, metrics=churn_metrics, blend_metric="brier",
        gate_metrics=("roc_auc", "brier"), bias_scaled=False,
    ),
}
