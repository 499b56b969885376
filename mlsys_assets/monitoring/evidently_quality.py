"""The ``data_quality`` report kind: a data summary with explicit tests, plus the drift of each column.

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
* drift: those of :func:`~mlsys_assets.monitoring.evidently_drift.drift_report`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from evidently.metrics import MissingValueCount
from evidently.presets import DataDriftPreset, DatasetStats, ValueStats
from evidently.presets.dataset_stats import ValueStatsTests
from evidently.tests import Reference, eq, lte

from mlsys_assets.monitoring.evidently_engine import (
    DEFAULT_ROW_CAP,
    DEFAULT_SEED,
    PASSING_STATUSES,
    ReportResult,
    drift_headline,
    empty_column_tests,
    evidently_tests,
    find_value,
    label,
    make_result,
    metric_rows,
    run_report,
    sampled_pair,
    split_columns,
)
from mlsys_assets.monitoring.evidently_html import write_html

VALUE_STATS_FIELDS = tuple(f.name for f in dataclasses.fields(ValueStatsTests))


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
    """Data summary (dataset and column statistics) plus ``DataDriftPreset``, current against reference, with
    the explicit tests listed in this module's docstring. ``passed`` is True when all of them pass.
    ``headline``: the drift keys of ``drift_report`` plus ``missing_share`` (current, whole dataset) and
    ``failed_tests``.
    """
    numerical, categorical = list(numerical), list(categorical)
    columns = numerical + categorical
    ref, cur = sampled_pair(reference, current, columns, row_cap, seed)
    split = split_columns(ref, cur, columns)
    column_tests = _column_tests(ref, numerical, categorical, len(cur))
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
    snapshot = run_report(
        items, ref[columns], cur[columns], numerical, categorical, kind="data_quality",
        title=title or f"{label('data_quality')}: reference vs current", total_rows=(len(reference), len(current)),
    )
    metrics, tests = metric_rows(snapshot), evidently_tests(snapshot) + empty_column_tests(split.empty)
    headline = drift_headline(snapshot, split)
    headline["missing_share"] = find_value(snapshot, "DatasetMissingValueCount", "share")
    headline["failed_tests"] = sum(t["status"] not in PASSING_STATUSES for t in tests)
    write_html(snapshot, html_path)
    return make_result("data_quality", html_path, snapshot, metrics, tests, len(ref), len(cur), headline)


def _column_tests(
    ref: pd.DataFrame, numerical: list[str], categorical: list[str], current_rows: int
) -> dict[str, ValueStatsTests]:
    """Per column: no test for a categorical one, mean and median near the reference's for a numerical one.

    Every list is explicit: with include_tests=False, 0.7.23's ValueStats renders by looking up metrics built
    from its raw (None) test fields while it computed them with [], and fails with a KeyError.
    """
    none = {f: [] for f in VALUE_STATS_FIELDS}
    tests = {c: ValueStatsTests(**none) for c in categorical}
    noise = max(0.1, 4 / math.sqrt(current_rows))
    for column in numerical:
        spread = float(pd.to_numeric(ref[column], errors="coerce").std())
        floor = noise * spread if math.isfinite(spread) and spread > 0 else None
        near = [eq(Reference(relative=0.1, absolute=floor))]
        tests[column] = ValueStatsTests(**{**none, "mean_tests": near, "q50_tests": near})
    return tests
