"""The drift report kinds (``feature_drift``, ``prediction_drift``): ``DataDriftPreset`` on the tested columns,
and the distributions of context columns shown without a drift verdict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from evidently.metrics import QuantileValue, RowCount, ValueDrift
from evidently.presets import DataDriftPreset

from mlsys_assets.monitoring.evidently_engine import (
    DEFAULT_ROW_CAP,
    DEFAULT_SEED,
    DRIFT_KINDS,
    ReportResult,
    drift_headline,
    empty_column_tests,
    evidently_tests,
    find_metric,
    find_value,
    label,
    make_result,
    metric_rows,
    only,
    run_report,
    sampled_pair,
    split_columns,
)
from mlsys_assets.monitoring.evidently_html import UNTESTED_NOTE, write_html

DRIFT_OPTIONS = frozenset({"method", "num_method", "cat_method", "per_column_method",
                           "threshold", "num_threshold", "cat_threshold", "per_column_threshold"})


def context_distribution(column: str) -> QuantileValue:
    """A context column's median and distribution, reference against current, with no test and no verdict.

    One statistic per column: every Evidently statistic draws the column's whole distribution, so
    ``ValueStats`` (eight of them, one plot shown) cost ~0.16 s per column and made the 22 context
    columns of the demo's feature drift report two thirds of its time (docs/benchmarks.md).
    """
    return QuantileValue(column=column, quantile=0.5, tests=[])


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
    context_numerical: Sequence[str] = (),
    **drift_options: Any,
) -> ReportResult:
    """Data drift of ``current`` against ``reference`` on the given columns (``DataDriftPreset``).

    ``context_numerical`` columns carry no test: they neither fail the report nor count in the drift share.
    The page shows their medians and distributions (``QuantileValue``) but no drift verdict (Evidently's
    ``ValueDrift`` widget would say "Data drift detected" by its threshold), and its header lists their scores
    (``ValueDrift`` with ``num_method``/``num_threshold``, computed in a report of their own that is never
    rendered). The scores are in ``headline["context_scores"]`` and among the metric rows (``ValueDrift``).

    Tests: one per drift-tested column (drift detected = FAIL) and the dataset-level "share of drifted
    columns < ``drift_share``"; plus a FAIL for each column that is entirely null on one side only.
    ``passed`` is True when all of them pass, i.e. no column drifted. ``headline``: ``drift_share``,
    ``drifted_columns``, ``columns``, ``drifted_column_names``, ``constant_columns``, ``empty_columns``,
    ``context_scores``.

    ``drift_options`` are ``DataDriftPreset``'s: ``method``/``num_method``/``cat_method``/
    ``per_column_method`` and the matching ``*threshold`` (e.g. ``per_column_method={"country": "psi"}``); by
    default Evidently picks by sample size.
    """
    if kind not in DRIFT_KINDS:
        raise ValueError(f"drift report kind must be one of {DRIFT_KINDS}, got {kind!r}")
    unknown = sorted(set(drift_options) - DRIFT_OPTIONS)
    if unknown:
        raise TypeError(f"unknown drift option(s) {unknown}; DataDriftPreset takes {sorted(DRIFT_OPTIONS)}")
    numerical, categorical, context_numerical = list(numerical), list(categorical), list(context_numerical)
    overlap = set(context_numerical) & set(numerical + categorical)
    if overlap:
        raise ValueError(f"context columns must not also be tested: {sorted(overlap)}")
    ref, cur = sampled_pair(reference, current, numerical + categorical + context_numerical, row_cap, seed)
    split = split_columns(ref, cur, numerical + categorical)
    context = split_columns(ref, cur, context_numerical).testable
    scores, score_rows, note = _context_scores(ref, cur, context, drift_options)
    items: list[Any] = [RowCount(tests=[])]
    if split.testable:
        items.append(drift_preset(split.testable, drift_share, drift_options))
    items += [context_distribution(c) for c in context]
    shown_num = [c for c in numerical if c in split.testable] + context
    shown_cat = [c for c in categorical if c in split.testable]
    snapshot = run_report(
        items, ref[shown_num + shown_cat], cur[shown_num + shown_cat], shown_num, shown_cat, kind=kind,
        title=title or f"{label(kind)}: reference vs current", total_rows=(len(reference), len(current)),
        notes={UNTESTED_NOTE: note} if note else None,
    )
    metrics = metric_rows(snapshot) + score_rows
    tests = evidently_tests(snapshot) + empty_column_tests(split.empty)
    headline = {**drift_headline(snapshot, split), "context_scores": scores}
    write_html(snapshot, html_path)
    return make_result(kind, html_path, snapshot, metrics, tests, len(ref), len(cur), headline)


def drift_preset(columns: list[str], drift_share: float, options: Mapping[str, Any]) -> DataDriftPreset:
    """``DataDriftPreset`` on ``columns``; per-column options are narrowed to them (Evidently rejects others)."""
    return DataDriftPreset(
        columns=columns,
        drift_share=drift_share,
        **{k: v for k, v in options.items() if not k.startswith("per_column_")},
        per_column_method=only(options.get("per_column_method"), columns),
        per_column_threshold=only(options.get("per_column_threshold"), columns),
    )


def _context_scores(
    ref: pd.DataFrame, cur: pd.DataFrame, columns: list[str], options: Mapping[str, Any]
) -> tuple[dict[str, float | None], list[dict], str]:
    """Each context column's drift score, its metric rows, and the header's line naming them as not tested."""
    if not columns:
        return {}, [], ""
    method = options.get("num_method") or options.get("method")
    threshold = options.get("num_threshold") or options.get("threshold")
    items = [ValueDrift(column=c, method=method, threshold=threshold, tests=[]) for c in columns]
    snapshot = run_report(items, ref[columns], cur[columns], columns, [], kind="context_scores",
                          title="context scores", total_rows=(len(ref), len(cur)))
    scores = {c: find_value(snapshot, "ValueDrift", column=c) for c in columns}
    resolved = (find_metric(snapshot, "ValueDrift", columns[0]) or {}).get("config", {}).get("method")
    shown = ", ".join(f"{c} {s:.3f}" if s is not None else f"{c} n/a" for c, s in scores.items())
    note = f"Shown for context, not tested and without a drift verdict (drift scores, method {resolved}): {shown}"
    return scores, metric_rows(snapshot), note
