"""Holdout metrics for spend (LTV) and churn forecasts.

MAE alone misleads on zero-heavy spend (predicting zero for everyone often wins it), so the ranking
metrics (normalized Gini, top-decile capture) and the aggregate bias carry the gate.
"""

from __future__ import annotations

import numpy as np

SPEND_METRICS = ("rmse", "mae", "gini", "top10_capture", "bias_pct", "abs_bias_pct")
CHURN_METRICS = ("roc_auc", "pr_auc", "brier", "calibration_error")
# Direction of each metric: +1 when larger is better.
HIGHER_IS_BETTER = {
    "rmse": -1, "mae": -1, "gini": 1, "top10_capture": 1, "bias_pct": -1, "abs_bias_pct": -1,
    "roc_auc": 1, "pr_auc": 1, "brier": -1, "calibration_error": -1,
}


def _tie_averaged(actual: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Actual values in descending order of the prediction, each replaced by its tie group's mean.

    A ranking metric that is linear in the ordered actuals (cumulative sums, the top-k sum) then equals
    its expected value over a random order within each group of tied predictions: ties are neither
    broken for nor against the forecast (a constant forecast scores like chance, and a forecast that
    is zero for most customers is judged on what it does rank).
    """
    order = np.argsort(-predicted, kind="stable")
    ordered, keys = actual[order], predicted[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    sums = np.add.reduceat(ordered, starts)
    sizes = np.diff(np.r_[starts, len(ordered)])
    return np.repeat(sums / sizes, sizes)


def _gini(ordered_actual: np.ndarray) -> float:
    cumulative = np.cumsum(ordered_actual) / ordered_actual.sum()
    n = len(ordered_actual)
    return float(cumulative.sum() / n - (n + 1) / (2 * n))


def normalized_gini(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Gini of the prediction's ranking over the Gini of the perfect ranking (1 = perfect, 0 = random),
    averaged over the orders of tied predictions."""
    actual, predicted = np.asarray(actual, float), np.asarray(predicted, float)
    if actual.sum() <= 0:
        return float("nan")
    return _gini(_tie_averaged(actual, predicted)) / _gini(np.sort(actual)[::-1])


def top_share_captured(actual: np.ndarray, predicted: np.ndarray, share: float = 0.1) -> float:
    """Share of total actual value held by the top `share` of customers ranked by the prediction
    (expected value over the orders of tied predictions)."""
    actual, predicted = np.asarray(actual, float), np.asarray(predicted, float)
    if actual.sum() <= 0:
        return float("nan")
    k = max(1, int(round(len(actual) * share)))
    return float(_tie_averaged(actual, predicted)[:k].sum() / actual.sum())


def spend_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    actual, predicted = np.asarray(actual, float), np.asarray(predicted, float)
    bias = float(100 * (predicted.sum() - actual.sum()) / actual.sum()) if actual.sum() else float("nan")
    return {
        "rmse": float(np.sqrt(np.mean((predicted - actual) ** 2))),
        "mae": float(np.mean(np.abs(predicted - actual))),
        "gini": normalized_gini(actual, predicted),
        "top10_capture": top_share_captured(actual, predicted, 0.1),
        # Signed: the total forecast against the total that happened, in percent.
        "bias_pct": bias,
        "abs_bias_pct": abs(bias),
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
    # Imported here: scikit-learn (with scipy.stats) takes ~0.5 s to import, and most commands never need it.
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

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
