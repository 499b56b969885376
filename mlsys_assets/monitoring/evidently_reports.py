"""Run an Evidently (0.7, new API) report, save its HTML, and turn it into rows for the warehouse.

Plain library code: no Dagster here; the monitoring assets call these functions. This module is the public
face; the code is split by concern: evidently_engine.py (result type, sampling, running a report, metric and
test rows), evidently_html.py (the page), and one module per kind (evidently_drift.py, evidently_quality.py,
evidently_performance.py).

Four kinds of report:

* ``feature_drift`` / ``prediction_drift`` (:func:`drift_report`): ``DataDriftPreset`` on the given columns.
  With more than 1,000 reference rows Evidently picks the normed Wasserstein distance for numerical
  columns (Jensen-Shannon when a numerical column has at most 5 distinct values) and the Jensen-Shannon
  distance for categorical ones, both with threshold 0.1. These are effect sizes, not p-values, so they
  stay quiet on large stable samples (a KS/chi-square p-value flags negligible shifts once n is large) and
  fire on real drift. With 1,000 reference rows or fewer Evidently switches to KS / chi-square / z-test
  p-values (threshold 0.05). Every ``DataDriftPreset`` option (method, per-column method and threshold) can
  be passed through. Context columns (``context_numerical``) are shown untested: their medians and
  distributions without a drift verdict, and their scores in the page header.
* ``data_quality`` (:func:`data_quality_report`): the parts of ``DataSummaryPreset`` + ``DataDriftPreset``.
* ``model_performance`` (:func:`performance_report`): ``RegressionPreset`` on spend and
  ``ClassificationPreset`` on churn, on one frame of matured labels; no reference dataset
  (``ReportResult.has_reference`` is False).

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

from mlsys_assets.monitoring.evidently_drift import drift_report
from mlsys_assets.monitoring.evidently_engine import (
    DEFAULT_ROW_CAP,
    DEFAULT_SEED,
    DRIFT_KINDS,
    KINDS,
    PASSING_STATUSES,
    ReportResult,
    sample,
)
from mlsys_assets.monitoring.evidently_html import render_html
from mlsys_assets.monitoring.evidently_performance import performance_report
from mlsys_assets.monitoring.evidently_quality import data_quality_report

__all__ = [
    "DEFAULT_ROW_CAP", "DEFAULT_SEED", "DRIFT_KINDS", "KINDS", "PASSING_STATUSES", "ReportResult",
    "data_quality_report", "drift_report", "performance_report", "render_html", "sample",
]
