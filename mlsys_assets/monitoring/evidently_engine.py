"""What every Evidently report kind shares: the result type, sampling, column checks, running a report, and
turning its snapshot into metric and test rows. The report kinds are in evidently_drift.py,
evidently_quality.py and evidently_performance.py; the page in evidently_html.py."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.core.report import Snapshot
from sklearn.exceptions import UndefinedMetricWarning

DEFAULT_ROW_CAP = 100_000
DEFAULT_SEED = 7
DRIFT_KINDS = ("feature_drift", "prediction_drift")
KINDS = (*DRIFT_KINDS, "model_performance", "data_quality")
PASSING_STATUSES = frozenset({"SUCCESS", "WARNING", "SKIPPED"})  # a WARNING is a non-critical test that failed

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
    reference_rows: int  # after sampling (0 when there is no reference: see has_reference)
    current_rows: int  # after sampling
    headline: dict  # the few numbers the index shows, e.g. drift_share / drifted_columns / columns, or rmse / roc_auc
    passed: bool  # every test in the report passed (the tests each kind includes are listed on its function)
    has_reference: bool = True  # False for model_performance: matured labels only, no reference dataset


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


# --------------------------------------------------------------------------------------------- columns


@dataclasses.dataclass(frozen=True)
class ColumnSplit:
    testable: list[str]  # drift-tested by Evidently
    constant: list[str]  # one value (or only nulls) on both sides: left out
    empty: list[str]  # entirely null on one side only: reported as drifted


def split_columns(ref: pd.DataFrame, cur: pd.DataFrame, columns: Sequence[str]) -> ColumnSplit:
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
    return ColumnSplit(testable, constant, empty)


def only(mapping: Mapping[str, Any] | None, columns: Iterable[str]) -> dict[str, Any] | None:
    """The entries of ``mapping`` (a per-column option) for ``columns``; None stays None."""
    if mapping is None:
        return None
    keep = set(columns)
    return {k: v for k, v in mapping.items() if k in keep}


def require_columns(frame: pd.DataFrame, columns: Sequence[str], side: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"{side} lacks column(s) {missing}")


def sampled_pair(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str], row_cap: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    if not columns:
        raise ValueError("no columns to report on")
    require_columns(reference, columns, "reference")
    require_columns(current, columns, "current")
    if reference.empty or current.empty:
        raise ValueError(f"reference ({len(reference)} rows) and current ({len(current)} rows) must both have rows")
    ref = sample(reference, row_cap, seed)[list(columns)]
    cur = sample(current, row_cap, seed)[list(columns)]
    return ref, cur


def label(kind: str) -> str:
    return kind.replace("_", " ").capitalize()


# --------------------------------------------------------------------------------------------- running


def run_report(
    items: list[Any],
    ref: pd.DataFrame,
    cur: pd.DataFrame,
    numerical: list[str],
    categorical: list[str],
    *,
    kind: str,
    title: str,
    total_rows: tuple[int, int],
    notes: Mapping[str, str] | None = None,
) -> Snapshot:
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    return run_with_definition(items, cur, ref, definition, kind=kind, title=title, total_rows=total_rows, notes=notes)


def run_with_definition(
    items: list[Any],
    cur: pd.DataFrame,
    ref: pd.DataFrame | None,
    definition: DataDefinition,
    *,
    kind: str,
    title: str,
    total_rows: tuple[int, int],
    notes: Mapping[str, str] | None = None,
) -> Snapshot:
    """Run the report; ``notes`` (strings) go into the snapshot's metadata, where the page header reads them."""
    ref_rows = 0 if ref is None else len(ref)
    # Metadata values must be strings in 0.7; the tags make the sizes visible in Evidently's own UI too.
    metadata = {
        "kind": kind,
        "title": title,
        "reference_rows": str(ref_rows),
        "current_rows": str(len(cur)),
        "reference_rows_before_sampling": str(total_rows[0]),
        "current_rows_before_sampling": str(total_rows[1]),
        **(notes or {}),
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


# --------------------------------------------------------------------------------------------- rows


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


def metric_rows(snapshot: Snapshot) -> list[dict]:
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


def evidently_tests(snapshot: Snapshot) -> list[dict]:
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


def empty_column_tests(columns: Sequence[str]) -> list[dict]:
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


def find_metric(snapshot: Snapshot, metric_type: str, column: str | None = None) -> dict | None:
    """The first metric of that type (and column) in the snapshot: its resolved ``config`` and its ``value``."""
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config") or {}
        if str(config.get("type", "")).rsplit(":", 1)[-1] != metric_type:
            continue
        if column is None or config.get("column") == column:
            return metric
    return None


def find_value(snapshot: Snapshot, metric_type: str, key: str | None = None, column: str | None = None) -> float | None:
    metric = find_metric(snapshot, metric_type, column)
    value = None if metric is None else metric.get("value")
    if key is not None:
        value = value.get(key) if isinstance(value, Mapping) else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def drift_headline(snapshot: Snapshot, split: ColumnSplit) -> dict:
    drifted = [t["column"] for t in evidently_tests(snapshot) if t["test"].startswith("Value Drift for column")
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


def make_result(
    kind: str, html_path: Path | str, snapshot: Snapshot, metrics: list[dict], tests: list[dict],
    reference_rows: int, current_rows: int, headline: dict, has_reference: bool = True,
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
        has_reference=has_reference,
    )
