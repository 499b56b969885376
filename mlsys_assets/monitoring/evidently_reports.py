"""Run an Evidently (0.7, new API) report, save its HTML, and turn it into rows for the warehouse.

Plain library code: no Dagster here; the monitoring assets call these functions.

Four kinds of report:

* ``feature_drift`` / ``prediction_drift`` (:func:`drift_report`): ``DataDriftPreset`` on the given columns.
  With more than 1,000 reference rows Evidently picks the normed Wasserstein distance for numerical
  columns (Jensen-Shannon when a numerical column has at most 5 distinct values) and the Jensen-Shannon
  distance for categorical ones, both with threshold 0.1. These are effect sizes, not p-values, so they
  stay quiet on large stable samples (a KS/chi-square p-value flags negligible shifts once n is large) and
  fire on real drift. With 1,000 reference rows or fewer Evidently switches to KS / chi-square / z-test
  p-values (threshold 0.05). Every ``DataDriftPreset`` option (method, per-column method and threshold) can
  be passed through.
* ``data_quality`` (:func:`data_quality_report`): the parts of ``DataSummaryPreset`` + ``DataDriftPreset``.
* ``model_performance`` (:func:`performance_report`): ``RegressionPreset`` on spend and
  ``ClassificationPreset`` on churn, on one frame of matured labels.

Columns that hold a single value (or only nulls) on both sides are left out of the drift column set and
listed in ``headline["constant_columns"]``: chi-square gives them a NaN score (which also counts as "not
drifted"), and the other methods a meaningless 0. A column that is entirely null on one side only cannot
be tested by Evidently (it raises); it is reported as drifted, with a failed test of its own, and listed in
``headline["empty_columns"]``.

Each side is capped at ``row_cap`` rows by a deterministic sample (:func:`sample`); the sample sizes are
shown in the HTML (a header above Evidently's dashboard, and a ``RowCount`` widget), kept in the snapshot's
metadata and tags, and returned in :class:`ReportResult`.

The HTML is one self-contained file: Evidently embeds its script bundle (~3.9 MB) and icon font; no script
is loaded from a CDN. The full snapshot is returned as JSON so :func:`render_html` can rebuild the HTML
after the file was pruned.
"""

from __future__ import annotations

import dataclasses
import html
import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from evidently import BinaryClassification, DataDefinition, Dataset, Regression, Report
from evidently.core.metric_types import MeanStdMetricTests
from evidently.core.report import Snapshot
from evidently.metrics import MissingValueCount, RowCount, ValueDrift
from evidently.presets import ClassificationPreset, DataDriftPreset, DatasetStats, RegressionPreset, ValueStats
from evidently.presets.dataset_stats import ValueStatsTests
from evidently.tests import Reference, eq, gt, lt, lte
from sklearn.exceptions import UndefinedMetricWarning

from mlsys_assets.monitoring.report_index import write_text_atomically

DEFAULT_ROW_CAP = 100_000
DEFAULT_SEED = 7
DRIFT_KINDS = ("feature_drift", "prediction_drift")
KINDS = (*DRIFT_KINDS, "model_performance", "data_quality")
PASSING_STATUSES = frozenset({"SUCCESS", "WARNING", "SKIPPED"})  # a WARNING is a non-critical test that failed

_VALUE_STATS_FIELDS = tuple(f.name for f in dataclasses.fields(ValueStatsTests))
# Config keys that do not tell two metrics of one type apart in a stable way (the method and threshold are
# resolved from the sample size, so they would change a metric's name between days).
_UNNAMED_PARAMS = frozenset(
    {"type", "column", "method", "threshold", "drift_share", "regression_name", "classification_name", "nbinsx",
     "num_method", "cat_method", "text_method", "num_threshold", "cat_threshold", "text_threshold"}
)


@dataclasses.dataclass(frozen=True)
class ReportResult:
    kind: str  # feature_drift | prediction_drift | model_performance | data_quality
    html_path: Path
    snapshot_json: str  # the full Evidently snapshot as JSON (render_html rebuilds the HTML from it)
    metrics: list[dict]  # one per metric value: {"metric": str, "column": str | None, "value": float}
    tests: list[dict]  # one per test: {"test": str, "column": str | None, "status": "SUCCESS" | "FAIL" | ..., "description": str}
    reference_rows: int  # after sampling (0 for model_performance, which has no reference)
    current_rows: int  # after sampling
    headline: dict  # the few numbers the index shows, e.g. drift_share / drifted_columns / columns, or rmse / roc_auc
    passed: bool  # every test in the report passed (the tests each kind includes are listed on its function)


# --------------------------------------------------------------------------------------------- sampling


def sample(frame: pd.DataFrame, cap: int = DEFAULT_ROW_CAP, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """At most ``cap`` rows of ``frame``, chosen uniformly without replacement and deterministically by ``seed``.

    The kept rows stay in their original order and keep their index. A frame within the cap is returned as is.
    """
    if cap < 1:
        raise ValueError(f"row cap must be at least 1, got {cap}")
    if len(frame) <= cap:
        return frame
    positions = np.sort(np.random.default_rng(seed).choice(len(frame), size=cap, replace=False))
    return frame.iloc[positions]


# --------------------------------------------------------------------------------------------- reports


def drift_report(
    kind: str,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numerical: Sequence[str],
    categorical: Sequence[str],
    html_path: Path | str,
    *,
    row_cap: int = DEFAULT_ROW_CAP,
    seed: int = DEFAULT_SEED,
    drift_share: float = 0.5,
    title: str | None = None,
    method: str | None = None,
    num_method: str | None = None,
    cat_method: str | None = None,
    per_column_method: Mapping[str, str] | None = None,
    threshold: float | None = None,
    num_threshold: float | None = None,
    cat_threshold: float | None = None,
    per_column_threshold: Mapping[str, float] | None = None,
    context_numerical: Sequence[str] = (),
) -> ReportResult:
    """Data drift of ``current`` against ``reference`` on the given columns (``DataDriftPreset``).

    ``context_numerical`` columns are shown with their drift score and distributions (``ValueDrift``
    with ``num_method``/``num_threshold``) but carry no test: they neither fail the report nor count in
    the drift share. Their scores are in ``headline["context_scores"]``.

    Tests: one per drift-tested column (drift detected = FAIL) and the dataset-level "share of drifted
    columns < ``drift_share``"; plus a FAIL for each column that is entirely null on one side only.
    ``passed`` is True when all of them pass, i.e. no column drifted. ``headline``: ``drift_share``,
    ``drifted_columns``, ``columns``, ``drifted_column_names``, ``constant_columns``, ``empty_columns``.

    ``method``/``num_method``/``cat_method``/``per_column_method`` and the matching ``*threshold`` options are
    Evidently's (e.g. ``per_column_method={"country": "psi"}``); by default Evidently picks by sample size.
    """
    if kind not in DRIFT_KINDS:
        raise ValueError(f"drift report kind must be one of {DRIFT_KINDS}, got {kind!r}")
    numerical, categorical = list(numerical), list(categorical)
    overlap = set(context_numerical) & set(numerical + categorical)
    if overlap:
        raise ValueError(f"context columns must not also be tested: {sorted(overlap)}")
    ref, cur = _sampled_pair(reference, current, numerical + categorical + list(context_numerical), row_cap, seed)
    split = _split_columns(ref, cur, numerical + categorical)
    context = _split_columns(ref, cur, context_numerical).testable
    keep_num = [c for c in numerical if c in split.testable]
    keep_cat = [c for c in categorical if c in split.testable]
    items: list[Any] = [RowCount(tests=[])]
    if split.testable:
        items.append(
            DataDriftPreset(
                columns=split.testable,
                drift_share=drift_share,
                method=method,
                num_method=num_method,
                cat_method=cat_method,
                per_column_method=_only(per_column_method, split.testable),
                threshold=threshold,
                num_threshold=num_threshold,
                cat_threshold=cat_threshold,
                per_column_threshold=_only(per_column_threshold, split.testable),
            )
        )
    items += [ValueDrift(column=c, method=num_method or method, threshold=num_threshold or threshold, tests=[])
              for c in context]
    title = title or f"{_label(kind)}: reference vs current"
    shown_num = keep_num + context
    snapshot = _run(
        items, ref[shown_num + keep_cat], cur[shown_num + keep_cat], shown_num, keep_cat, kind=kind, title=title,
        total_rows=(len(reference), len(current)),
    )
    metrics, tests = _metric_rows(snapshot), _test_rows(snapshot) + _empty_column_tests(split.empty)
    headline = _drift_headline(snapshot, split)
    headline["context_scores"] = {c: _find_value(snapshot, "ValueDrift", column=c) for c in context}
    _write_html(snapshot, html_path)
    return _result(kind, html_path, snapshot, metrics, tests, len(ref), len(cur), headline)


def data_quality_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numerical: Sequence[str],
    categorical: Sequence[str],
    html_path: Path | str,
    *,
    row_cap: int = DEFAULT_ROW_CAP,
    seed: int = DEFAULT_SEED,
    drift_share: float = 0.5,
    title: str | None = None,
) -> ReportResult:
    """Data summary (dataset and column statistics) plus ``DataDriftPreset``, current against reference.

    The summary is ``DataSummaryPreset``'s own parts, ``DatasetStats`` + one ``ValueStats`` per column (the
    HTML is the same), because in 0.7.23 the preset always adds a bare ``RowCount()`` (through ``TextEvals``
    / ``RowTestSummary``) whose default test "row count equal to the reference's within 10%" cannot be
    switched off and fails whenever the two windows differ in length.

    Evidently's other default tests are not used either: with a reference they compare *counts* (missing
    values, empty rows, duplicated rows) within 10%, which again depends on the sample sizes, and min/max,
    which one outlier moves. The tests here are explicit:

    * schema: same column count; no more empty, constant, almost constant or duplicated columns than the
      reference;
    * per column: missing-value *share* at most the reference's + max(10% of it, 0.01);
    * per numerical column: mean and median within max(10% of the reference value, e reference std), where
      e = max(0.1, 4 / sqrt(current rows)) is four standard errors of the current mean in std units: a week
      of a small shop has a hundred or so rows, whose mean and median move by more than 10% from one week to
      the next on noise alone. The other quartiles and the std are shown untested: on skewed amounts a
      single large basket moves them, and the drift test below already judges the whole distribution;
    * drift: those of :func:`drift_report`.

    ``passed`` is True when all of them pass. ``headline``: the drift keys of :func:`drift_report` plus
    ``missing_share`` (current, whole dataset) and ``failed_tests``.
    """
    numerical, categorical = list(numerical), list(categorical)
    columns = numerical + categorical
    ref, cur = _sampled_pair(reference, current, columns, row_cap, seed)
    split = _split_columns(ref, cur, columns)
    # Every list is explicit: with include_tests=False, 0.7.23's ValueStats renders by looking up metrics built
    # from its raw (None) test fields while it computed them with [], and fails with a KeyError.
    column_tests = {c: ValueStatsTests(**{f: [] for f in _VALUE_STATS_FIELDS}) for c in categorical}
    noise = max(0.1, 4 / math.sqrt(len(cur)))
    for column in numerical:
        spread = float(pd.to_numeric(ref[column], errors="coerce").std())
        floor = noise * spread if math.isfinite(spread) and spread > 0 else None
        near = [eq(Reference(relative=0.1, absolute=floor))]
        column_tests[column] = ValueStatsTests(**{**{f: [] for f in _VALUE_STATS_FIELDS}, "mean_tests": near, "q50_tests": near})
    items: list[Any] = [
        DatasetStats(
            include_tests=False,
            column_count_tests=[eq(Reference())],
            empty_column_count_tests=[lte(Reference())],
            constant_columns_count_tests=[lte(Reference())],
            almost_constant_column_count_tests=[lte(Reference())],
            duplicated_column_count_tests=[lte(Reference())],
        ),
        *[ValueStats(c, include_tests=False, **dataclasses.asdict(column_tests[c])) for c in columns],
        *[
            MissingValueCount(column=c, tests=[], share_tests=[lte(Reference(relative=0.1, absolute=0.01))])
            for c in columns
        ],
    ]
    if split.testable:
        items.append(DataDriftPreset(columns=split.testable, drift_share=drift_share))
    title = title or f"{_label('data_quality')}: reference vs current"
    snapshot = _run(
        items, ref[columns], cur[columns], numerical, categorical, kind="data_quality", title=title,
        total_rows=(len(reference), len(current)),
    )
    metrics, tests = _metric_rows(snapshot), _test_rows(snapshot) + _empty_column_tests(split.empty)
    headline = _drift_headline(snapshot, split)
    headline["missing_share"] = _find_value(snapshot, "DatasetMissingValueCount", "share")
    headline["failed_tests"] = sum(t["status"] not in PASSING_STATUSES for t in tests)
    _write_html(snapshot, html_path)
    return _result("data_quality", html_path, snapshot, metrics, tests, len(ref), len(cur), headline)


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
    and ``headline["roc_auc"]`` is None.
    """
    columns = [spend_actual, spend_predicted, churn_actual, churn_probability]
    if len(set(columns)) != 4:
        raise ValueError(f"the four performance columns must be distinct, got {columns}")
    _require_columns(frame, columns, "frame")
    complete = frame[columns].dropna()
    data = sample(complete, row_cap, seed).copy()
    if data.empty:
        raise ValueError("performance report needs at least one row with actuals and predictions")
    data[churn_actual] = data[churn_actual].astype(int)
    data[spend_actual] = data[spend_actual].astype(float)
    data[spend_predicted] = data[spend_predicted].astype(float)
    data[churn_probability] = data[churn_probability].astype(float)

    actual = data[spend_actual].to_numpy()
    baseline_rmse = float(np.sqrt(np.mean((actual - actual.mean()) ** 2)))
    rmse_bound = baseline_rmse if max_rmse is None else float(max_rmse)
    two_classes = data[churn_actual].nunique() == 2

    items: list[Any] = [
        RowCount(tests=[]),
        # Every test list explicit (and include_tests left on): with include_tests=False the 0.7.23 presets
        # render by looking up metrics that carry their raw (None) test fields and fail with a KeyError.
        RegressionPreset(
            mean_error_tests=MeanStdMetricTests(mean=[], std=[]),
            mape_tests=MeanStdMetricTests(mean=[], std=[]),
            mae_tests=MeanStdMetricTests(mean=[], std=[]),
            rmse_tests=[lt(rmse_bound)],
            r2score_tests=[],
            abs_max_error_tests=[],
        ),
    ]
    classification = None
    if two_classes:
        items.append(ClassificationPreset(
            rocauc_tests=[gt(min_roc_auc)],
            **{f"{name}_tests": [] for name in ("accuracy", "precision", "recall", "f1score", "logloss", "tpr", "tnr", "fpr", "fnr")},
        ))
        classification = [
            BinaryClassification(target=churn_actual, prediction_probas=churn_probability, pos_label=1)
        ]
    definition = DataDefinition(
        numerical_columns=[spend_actual, spend_predicted, churn_probability],
        categorical_columns=[churn_actual],
        regression=[Regression(target=spend_actual, prediction=spend_predicted)],
        classification=classification,
    )
    title = title or f"{_label('model_performance')}: matured labels"
    snapshot = _run_definition(
        items, data, None, definition, kind="model_performance", title=title, total_rows=(0, len(complete))
    )
    metrics, tests = _metric_rows(snapshot), _test_rows(snapshot)
    headline = {
        "rmse": _find_value(snapshot, "RMSE"),
        "baseline_rmse": baseline_rmse,
        "mae": _find_value(snapshot, "MAE", "mean"),
        "r2": _find_value(snapshot, "R2Score"),
        "roc_auc": _find_value(snapshot, "RocAuc") if two_classes else None,
        "log_loss": _find_value(snapshot, "LogLoss") if two_classes else None,
        "churn_rate": float(data[churn_actual].mean()),
        "mean_churn_probability": float(data[churn_probability].mean()),
    }
    if len(complete) < len(frame):
        headline["dropped_rows"] = len(frame) - len(complete)
    _write_html(snapshot, html_path)
    return _result("model_performance", html_path, snapshot, metrics, tests, 0, len(data), headline)


def render_html(snapshot_json: str, html_path: Path | str) -> Path:
    """Rebuild a report's HTML from its stored snapshot JSON alone (``Snapshot.loads``), written atomically."""
    snapshot = Snapshot.loads(snapshot_json)
    return _write_html(snapshot, html_path)


# --------------------------------------------------------------------------------------------- internals


@dataclasses.dataclass(frozen=True)
class _ColumnSplit:
    testable: list[str]  # drift-tested by Evidently
    constant: list[str]  # one value (or only nulls) on both sides: left out
    empty: list[str]  # entirely null on one side only: reported as drifted


def _split_columns(ref: pd.DataFrame, cur: pd.DataFrame, columns: Sequence[str]) -> _ColumnSplit:
    testable, constant, empty = [], [], []
    for column in columns:
        ref_empty, cur_empty = ref[column].isna().all(), cur[column].isna().all()
        values = pd.concat([ref[column], cur[column]], ignore_index=True).dropna()
        if values.nunique() <= 1 and ref_empty == cur_empty:
            constant.append(column)
        elif ref_empty or cur_empty:
            empty.append(column)
        else:
            testable.append(column)
    return _ColumnSplit(testable, constant, empty)


def _only(mapping: Mapping[str, Any] | None, columns: Iterable[str]) -> dict[str, Any] | None:
    if mapping is None:
        return None
    keep = set(columns)
    return {k: v for k, v in mapping.items() if k in keep}


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], side: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"{side} lacks column(s) {missing}")


def _sampled_pair(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str], row_cap: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    if not columns:
        raise ValueError("no columns to report on")
    _require_columns(reference, columns, "reference")
    _require_columns(current, columns, "current")
    if reference.empty or current.empty:
        raise ValueError(f"reference ({len(reference)} rows) and current ({len(current)} rows) must both have rows")
    ref = sample(reference, row_cap, seed)[list(columns)]
    cur = sample(current, row_cap, seed)[list(columns)]
    return ref, cur


def _label(kind: str) -> str:
    return kind.replace("_", " ").capitalize()


def _run(
    items: list[Any],
    ref: pd.DataFrame,
    cur: pd.DataFrame,
    numerical: list[str],
    categorical: list[str],
    *,
    kind: str,
    title: str,
    total_rows: tuple[int, int],
) -> Snapshot:
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    return _run_definition(items, cur, ref, definition, kind=kind, title=title, total_rows=total_rows)


def _run_definition(
    items: list[Any],
    cur: pd.DataFrame,
    ref: pd.DataFrame | None,
    definition: DataDefinition,
    *,
    kind: str,
    title: str,
    total_rows: tuple[int, int],
) -> Snapshot:
    ref_rows = 0 if ref is None else len(ref)
    # Metadata values must be strings in 0.7; the tags make the sizes visible in Evidently's own UI too.
    metadata = {
        "kind": kind,
        "title": title,
        "reference_rows": str(ref_rows),
        "current_rows": str(len(cur)),
        "reference_rows_before_sampling": str(total_rows[0]),
        "current_rows_before_sampling": str(total_rows[1]),
    }
    tags = [f"kind={kind}", f"reference_rows={ref_rows}", f"current_rows={len(cur)}"]
    report = Report(items, metadata=metadata, tags=tags, include_tests=True)
    with warnings.catch_warnings():
        # numpy warns on constant columns (correlations, std of a single value); the values are handled below.
        warnings.simplefilter("ignore", RuntimeWarning)
        # Evidently's regression widgets score small error segments, where R^2 is undefined (shown as such).
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        current_ds = Dataset.from_pandas(cur.reset_index(drop=True), data_definition=definition)
        reference_ds = None if ref is None else Dataset.from_pandas(ref.reset_index(drop=True), data_definition=definition)
        return report.run(current_ds, reference_ds, name=title)


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)  # enums (ColumnType, TestStatus) -> their value


def _metric_name(config: Mapping[str, Any]) -> str:
    name = str(config.get("type", "metric")).rsplit(":", 1)[-1]
    params = [
        f"{k}={_plain(v)}"
        for k, v in config.items()
        if k not in _UNNAMED_PARAMS and v is not None and not isinstance(v, (bool, list, dict, tuple))
    ]
    return f"{name}({','.join(params)})" if params else name


def _flatten(prefix: str, value: Any) -> Iterable[tuple[str, float]]:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            yield from _flatten(f"{prefix}.{_plain(key)}", inner)
        return
    if isinstance(value, (bool, np.bool_)):
        yield prefix, float(value)
        return
    try:
        number = float(value)
    except (TypeError, ValueError):
        return
    yield prefix, number


def _metric_rows(snapshot: Snapshot) -> list[dict]:
    """One row per finite metric value; dict values (count/share, mean/std, per label) become ``name.key``."""
    rows, seen = [], set()
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config") or {}
        column = None if config.get("column") is None else str(config["column"])
        for name, value in _flatten(_metric_name(config), metric.get("value")):
            # The same statistic can come from two metrics that differ only in their tests: keep it once.
            if math.isfinite(value) and (name, column) not in seen:
                seen.add((name, column))
                rows.append({"metric": name, "column": column, "value": value})
    return rows


def _test_rows(snapshot: Snapshot) -> list[dict]:
    rows = []
    for test in snapshot.tests_results:
        params = test.metric_config.params if test.metric_config is not None else {}
        column = params.get("column")
        rows.append({
            "test": test.name,
            "column": None if column is None else str(column),
            "status": str(_plain(test.status)),
            "description": test.description,
        })
    return rows


def _empty_column_tests(columns: Sequence[str]) -> list[dict]:
    return [
        {
            "test": f"Value Drift for column {c}",
            "column": c,
            "status": "FAIL",
            "description": f"Column '{c}' is entirely null on one side only, so its drift cannot be measured; "
                           "counted as drifted.",
        }
        for c in columns
    ]


def _find_value(snapshot: Snapshot, metric_type: str, key: str | None = None, column: str | None = None) -> float | None:
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config") or {}
        if str(config.get("type", "")).rsplit(":", 1)[-1] != metric_type:
            continue
        if column is not None and config.get("column") != column:
            continue
        value = metric.get("value")
        if key is not None:
            value = value.get(key) if isinstance(value, Mapping) else None
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        return number if math.isfinite(number) else None
    return None


def _drift_headline(snapshot: Snapshot, split: _ColumnSplit) -> dict:
    drifted = [t["column"] for t in _test_rows(snapshot) if t["test"].startswith("Value Drift for column")
               and t["status"] not in PASSING_STATUSES and t["column"] is not None]
    drifted += list(split.empty)
    columns = len(split.testable) + len(split.empty)
    return {
        "drift_share": len(drifted) / columns if columns else 0.0,
        "drifted_columns": len(drifted),
        "columns": columns,
        "drifted_column_names": drifted,
        "constant_columns": list(split.constant),
        "empty_columns": list(split.empty),
    }


_HEADER_STYLE = (
    "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;padding:12px 24px;"
    "border-bottom:1px solid #ddd;background:#fafafa;color:#222"
)


def _header(snapshot: Snapshot) -> tuple[str, str]:
    """The page title and a header naming the report and its sample sizes (from the snapshot's metadata)."""
    model = snapshot.to_snapshot_model()
    meta = model.metadata or {}
    title = str(meta.get("title") or snapshot.get_name() or "Evidently report")
    sizes = []
    for side in ("reference", "current"):
        rows, before = _as_int(meta.get(f"{side}_rows")), _as_int(meta.get(f"{side}_rows_before_sampling"))
        if rows is None or (side == "reference" and rows == 0):
            continue
        text = f"{side}: {rows:,} rows"
        if before is not None and before > rows:
            text += f" (sampled from {before:,})"
        sizes.append(text)
    line = " · ".join([*sizes, f"created {model.timestamp:%Y-%m-%d %H:%M}"])
    block = (
        f'<div class="mlsys-report-header" style="{_HEADER_STYLE}">'
        f'<div style="font-size:18px;font-weight:600">{html.escape(title)}</div>'
        f'<div style="font-size:13px;color:#555">{html.escape(line)}</div></div>'
    )
    return title, block


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _finish_page(page: str, title: str, header: str) -> str:
    """Add the title and header to Evidently's page, and escape ``<`` in its embedded data.

    0.7.23 embeds the report data as JSON in a ``<script>`` block without escaping, so a category value such
    as ``</script><script>...`` would end the block and inject markup. ``<`` only occurs inside JSON strings,
    where ``\\u003c`` means the same. The block lies between ``var <dashboard id> =`` and the last
    ``</script>`` before the dashboard's root ``<div>``; the id is the random one of the final
    ``drawDashboard`` call, which data cannot forge. If the layout is not recognised the page is kept as is,
    with only the title added.
    """
    page = page.replace("<head>", f"<head>\n<title>{html.escape(title)}</title>", 1)
    calls = re.findall(r"window\.drawDashboard\((metric_[0-9a-f]{32}),", page)
    if not calls:
        return page
    dashboard = calls[-1]
    root = page.rfind(f'<div id="root_{dashboard}">')
    start = page.find(f"var {dashboard} = ")
    end = page.rfind("</script>", start, root) if 0 <= start < root else -1
    if end < 0:
        return page
    data = page[start:end].replace("<", "\\u003c")
    return page[:start] + data + page[end:root] + header + "\n" + page[root:]


def _write_html(snapshot: Snapshot, html_path: Path | str) -> Path:
    """Evidently's standalone HTML (script bundle and font embedded) with our header, written atomically.

    ``Snapshot.save_html`` silently writes nothing for a ``Path``; we render the string ourselves instead.
    """
    path = Path(html_path)
    title, block = _header(snapshot)
    page = _finish_page(snapshot.get_html_str(as_iframe=False), title, block)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, page)
    return path


def _result(
    kind: str, html_path: Path | str, snapshot: Snapshot, metrics: list[dict], tests: list[dict],
    reference_rows: int, current_rows: int, headline: dict,
) -> ReportResult:
    return ReportResult(
        kind=kind,
        html_path=Path(html_path),
        snapshot_json=snapshot.dumps(),
        metrics=metrics,
        tests=tests,
        reference_rows=int(reference_rows),
        current_rows=int(current_rows),
        headline=headline,
        passed=all(t["status"] in PASSING_STATUSES for t in tests),
    )
