"""The ``model_performance`` report kind: forecast quality on matured labels. It has no reference dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from evidently import BinaryClassification, DataDefinition, Regression
from evidently.core.metric_types import MeanStdMetricTests
from evidently.metrics import RowCount
from evidently.presets import ClassificationPreset, RegressionPreset
from evidently.tests import gt, lt

from mlsys_assets.monitoring.evidently_engine import (
    DEFAULT_ROW_CAP,
    DEFAULT_SEED,
    ReportResult,
    evidently_tests,
    find_value,
    label,
    make_result,
    metric_rows,
    require_columns,
    run_with_definition,
    sample,
)
from mlsys_assets.monitoring.evidently_html import write_html

_UNTESTED_CLASSIFICATION = ("accuracy", "precision", "recall", "f1score", "logloss", "tpr", "tnr", "fpr", "fnr")


def performance_report(
    frame: pd.DataFrame,
    html_path: Path | str,
    *,
    spend_actual: str,
    spend_predicted: str,
    churn_actual: str,
    churn_probability: str,
    row_cap: int = DEFAULT_ROW_CAP,
    seed: int = DEFAULT_SEED,
    max_rmse: float | None = None,
    min_roc_auc: float = 0.5,
    title: str | None = None,
) -> ReportResult:
    """Forecast quality on matured labels: ``RegressionPreset`` (target ``spend_actual``, prediction
    ``spend_predicted``) and ``ClassificationPreset`` (binary ``churn_actual``, positive label 1, scored by
    ``churn_probability``; labels at the 0.5 threshold).

    Tests (Evidently's default ones are not used: in 0.7.23 the regression ones compare each metric with
    itself, because ``DummyRMSE``/``DummyMAE``/``DummyMAPE`` return the model's own value, so they always
    fail): RMSE below ``max_rmse``, by default the RMSE of always predicting the mean actual spend (i.e.
    better than a constant); ROC AUC above ``min_roc_auc``. ``passed`` is True when both pass. Rows with a
    null in any of the four columns are dropped (counted in ``headline["dropped_rows"]``). When the churn
    label has a single class, AUC is undefined (Evidently would crash): the classification part is left out
    and ``headline["roc_auc"]`` is None. There is no reference dataset (``has_reference`` is False).
    """
    columns = [spend_actual, spend_predicted, churn_actual, churn_probability]
    if len(set(columns)) != 4:
        raise ValueError(f"the four performance columns must be distinct, got {columns}")
    require_columns(frame, columns, "frame")
    complete = frame[columns].dropna()
    data = sample(complete, row_cap, seed).copy()
    if data.empty:
        raise ValueError("performance report needs at least one row with actuals and predictions")
    data = data.astype({churn_actual: int, spend_actual: float, spend_predicted: float, churn_probability: float})
    actual = data[spend_actual].to_numpy()
    baseline_rmse = float(np.sqrt(np.mean((actual - actual.mean()) ** 2)))
    two_classes = data[churn_actual].nunique() == 2
    items = _items(baseline_rmse if max_rmse is None else float(max_rmse), min_roc_auc if two_classes else None)
    definition = DataDefinition(
        numerical_columns=[spend_actual, spend_predicted, churn_probability],
        categorical_columns=[churn_actual],
        regression=[Regression(target=spend_actual, prediction=spend_predicted)],
        classification=[BinaryClassification(target=churn_actual, prediction_probas=churn_probability, pos_label=1)]
        if two_classes else None,
    )
    snapshot = run_with_definition(
        items, data, None, definition, kind="model_performance",
        title=title or f"{label('model_performance')}: matured labels", total_rows=(0, len(complete)),
    )
    headline = {
        "rmse": find_value(snapshot, "RMSE"),
        "baseline_rmse": baseline_rmse,
        "mae": find_value(snapshot, "MAE", "mean"),
        "r2": find_value(snapshot, "R2Score"),
        "roc_auc": find_value(snapshot, "RocAuc") if two_classes else None,
        "log_loss": find_value(snapshot, "LogLoss") if two_classes else None,
        "churn_rate": float(data[churn_actual].mean()),
        "mean_churn_probability": float(data[churn_probability].mean()),
    }
    if len(complete) < len(frame):
        headline["dropped_rows"] = len(frame) - len(complete)
    write_html(snapshot, html_path)
    return make_result("model_performance", html_path, snapshot, metric_rows(snapshot), evidently_tests(snapshot),
                       0, len(data), headline, has_reference=False)


def _items(rmse_bound: float, min_roc_auc: float | None) -> list[Any]:
    """Regression quality with the RMSE test; classification quality with the AUC test unless it is undefined.

    Every test list explicit (and include_tests left on): with include_tests=False the 0.7.23 presets render
    by looking up metrics that carry their raw (None) test fields and fail with a KeyError.
    """
    items: list[Any] = [
        RowCount(tests=[]),
        RegressionPreset(
            mean_error_tests=MeanStdMetricTests(mean=[], std=[]),
            mape_tests=MeanStdMetricTests(mean=[], std=[]),
            mae_tests=MeanStdMetricTests(mean=[], std=[]),
            rmse_tests=[lt(rmse_bound)],
            r2score_tests=[],
            abs_max_error_tests=[],
        ),
    ]
    if min_roc_auc is not None:
        items.append(ClassificationPreset(rocauc_tests=[gt(min_roc_auc)],
                                          **{f"{name}_tests": [] for name in _UNTESTED_CLASSIFICATION}))
    return items
