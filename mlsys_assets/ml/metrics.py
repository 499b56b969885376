"""Holdout metrics for spend (LTV) and churn forecasts.

MAE alone misleads on zero-heavy spend (predicting zero for everyone often wins it), so the ranking
metrics (normalized Gini, top-decile capture) and the aggregate bias carry the gate.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

SPEND_METRICS = ("rmse", "mae", "gini", "top10_capture", "bias_pct")
CHURN_METRICS = ("roc_auc", "pr_auc", "brier", "calibration_error")
# Direction of each metric: +1 when larger is better.
HIGHER_IS_BETTER = {
    "rmse": -1, "mae": -1, "gini": 1, "top10_capture": 1, "bias_pct": -1,
    "roc_auc": 1, "pr_auc": 1, "brier": -1, "calibration_error": -1,
}


def _gini(actual: np.ndarray, predicted: np.ndarray) -> float:
    # Ties in the prediction are broken against the model (lowest actual first), so a constant
    # forecast scores no better than chance.
    order = np.lexsort((actual, -predicted))
    cumulative = np.cumsum(actual[order]) / actual.sum()
    n = len(actual)
    return float(cumulative.sum() / n - (n + 1) / (2 * n))


def normalized_gini(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Gini of the prediction's ranking over the Gini of the perfect ranking (1 = perfect, 0 = random)."""
    actual, predicted = np.asarray(actual, float), np.asarray(predicted, float)
    if actual.sum() <= 0:
        return float("nan")
    return _gini(actual, predicted) / _gini(actual, actual)


def top_share_captured(actual: np.ndarray, predicted: np.ndarray, share: float = 0.1) -> float:
    """Share of total actual value held by the top `share` of customers ranked by the prediction."""
    actual, predicted = np.asarray(actual, float), np.asarray(predicted, float)
    if actual.sum() <= 0:
        return float("nan")
    k = max(1, int(round(len(actual) * share)))
    order = np.lexsort((actual, -predicted))
    return float(actual[order[:k]].sum() / actual.sum())


def spend_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    actual, predicted = np.asarray(actual, float), np.asarray(predicted, float)
    return {
        "rmse": float(np.sqrt(np.mean((predicted - actual) ** 2))),
        "mae": float(np.mean(np.abs(predicted - actual))),
        "gini": normalized_gini(actual, predicted),
        "top10_capture": top_share_captured(actual, predicted, 0.1),
        # Signed: the total forecast against the total that happened, in percent.
        "bias_pct": float(100 * (predicted.sum() - actual.sum()) / actual.sum()) if actual.sum() else float("nan"),
    }


def calibration_bins(churned: np.ndarray, probability: np.ndarray, bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean predicted, observed rate, count) per equal-count bin of the predicted probability."""
    churned, probability = np.asarray(churned, float), np.asarray(probability, float)
    order = np.argsort(probability, kind="stable")
    return [
        (float(probability[chunk].mean()), float(churned[chunk].mean()), int(len(chunk)))
        for chunk in np.array_split(order, bins) if len(chunk)
    ]


def churn_metrics(churned: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    churned, probability = np.asarray(churned, int), np.clip(np.asarray(probability, float), 0.0, 1.0)
    if churned.min() == churned.max():
        return {name: float("nan") for name in CHURN_METRICS}
    bins = calibration_bins(churned, probability)
    return {
        "roc_auc": float(roc_auc_score(churned, probability)),
        "pr_auc": float(average_precision_score(churned, probability)),
        "brier": float(brier_score_loss(churned, probability)),
        # Expected calibration error: count-weighted gap between predicted and observed churn.
        "calibration_error": float(sum(n * abs(p - o) for p, o, n in bins) / len(churned)),
    }
