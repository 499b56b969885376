"""Evidently reports (drift, data quality, performance), their HTML, and the report index.

Small frames (2-5k rows) keep the file fast. With more than 1,000 reference rows Evidently measures drift
with the normed Wasserstein distance (numerical) and the Jensen-Shannon distance (categorical).
Set MLSYS_EVIDENTLY_BENCH=1 to also time a drift report on 1,000,000 rows per side.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsys_assets.monitoring.evidently_reports import (
    ReportResult,
    data_quality_report,
    drift_report,
    performance_report,
    render_html,
    sample,
)
from mlsys_assets.monitoring.report_index import prune_reports, write_index

NUMERICAL = ["recency_days", "spend_90", "tx_90", "avg_basket"]
CATEGORICAL = ["country", "acquisition_channel"]
REMOTE_SCRIPT = re.compile(r"""<script[^>]+src=["']https?://""", re.IGNORECASE)
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DASHBOARD_ID = re.compile(r"metric_[0-9a-f]{32}")
STATUSES = {"SUCCESS", "FAIL", "WARNING", "ERROR", "SKIPPED"}


def features(n: int, seed: int, *, shift: float = 0.0, new_country: bool = False) -> pd.DataFrame:
    """Customer-feature-like data; `shift` moves the mean of recency_days and spend_90 by `shift` std."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "recency_days": rng.normal(40 + 15 * shift, 15, n),
        "spend_90": rng.gamma(2.0, 50.0, n) + 100 * shift,
        "tx_90": rng.poisson(4, n).astype(float),
        "avg_basket": rng.lognormal(3.0, 0.4, n),
        "country": rng.choice(["DE", "FR", "US", "UK"], n, p=[0.4, 0.3, 0.2, 0.1]),
        "acquisition_channel": rng.choice(["ads", "seo", "referral"], n),
    })
    if new_country:
        frame.loc[: n // 3, "country"] = "BR"
    return frame


def assert_rows_well_formed(result: ReportResult) -> None:
    assert result.metrics and result.tests
    for row in result.metrics:
        assert set(row) == {"metric", "column", "value"}
        assert isinstance(row["metric"], str) and row["metric"]
        assert isinstance(row["value"], float) and math.isfinite(row["value"])
    for row in result.tests:
        assert set(row) == {"test", "column", "status", "description"}
        assert row["status"] in STATUSES
    json.dumps(result.headline)  # the caller stores it as JSON
    assert result.passed == all(t["status"] in {"SUCCESS", "WARNING", "SKIPPED"} for t in result.tests)


def normalised(path: Path) -> str:
    """The page without the ids Evidently draws at random on every render."""
    return UUID.sub("U", DASHBOARD_ID.sub("metric_X", path.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def reports_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reports")


@pytest.fixture(scope="module")
def stable(reports_dir: Path) -> ReportResult:
    return drift_report("feature_drift", features(5000, 1), features(5000, 2), NUMERICAL, CATEGORICAL,
                        reports_dir / "feature_drift" / "2024-03-01.html", title="Feature drift 2024-03-01")


@pytest.fixture(scope="module")
def drifted(reports_dir: Path) -> ReportResult:
    return drift_report("feature_drift", features(5000, 1), features(5000, 2, shift=1.0, new_country=True),
                        NUMERICAL, CATEGORICAL, reports_dir / "feature_drift" / "2024-03-02.html")


# --------------------------------------------------------------------------------------------- drift


def test_stable_data_passes_with_distance_methods(stable: ReportResult) -> None:
    assert stable.passed
    assert stable.headline["drift_share"] <= 0.1
    assert stable.headline["drifted_column_names"] == []
    assert stable.headline["columns"] == len(NUMERICAL) + len(CATEGORICAL)
    scores = {m["column"]: m["value"] for m in stable.metrics if m["metric"] == "ValueDrift"}
    assert set(scores) == set(NUMERICAL + CATEGORICAL)
    assert max(scores.values()) < 0.05  # far below the 0.1 threshold: the distances stay quiet
    methods = {t["column"]: t["description"] for t in stable.tests if t["column"]}
    assert all("Wasserstein distance (normed)" in methods[c] for c in NUMERICAL)
    assert all("Jensen-Shannon distance" in methods[c] for c in CATEGORICAL)
    assert_rows_well_formed(stable)


def test_drifted_data_fails_on_exactly_the_shifted_columns(drifted: ReportResult) -> None:
    assert not drifted.passed
    assert set(drifted.headline["drifted_column_names"]) == {"recency_days", "spend_90", "country"}
    assert drifted.headline["drifted_columns"] == 3
    assert drifted.headline["drift_share"] == pytest.approx(3 / 6)
    failed = {t["column"] for t in drifted.tests if t["status"] == "FAIL" and t["column"]}
    assert failed == {"recency_days", "spend_90", "country"}
    share_test = next(t for t in drifted.tests if t["test"].startswith("Share of Drifted Columns"))
    assert share_test["status"] == "FAIL"  # 0.5 is not below drift_share=0.5
    assert_rows_well_formed(drifted)


def test_context_columns_are_scored_but_never_fail_the_report(tmp_path: Path) -> None:
    shifted = ["recency_days", "spend_90"]
    tested = [c for c in NUMERICAL if c not in shifted]
    result = drift_report("feature_drift", features(3000, 1), features(3000, 2, shift=1.0), tested, CATEGORICAL,
                          tmp_path / "r.html", num_method="wasserstein", num_threshold=0.15,
                          context_numerical=shifted)
    assert result.passed and result.headline["drifted_column_names"] == []
    assert result.headline["columns"] == len(tested) + len(CATEGORICAL)
    assert all(result.headline["context_scores"][c] > 0.5 for c in shifted)
    assert {row["column"] for row in result.metrics if row["metric"] == "ValueDrift"} >= set(shifted)
    with pytest.raises(ValueError, match="must not also be tested"):
        drift_report("feature_drift", features(100, 1), features(100, 2), NUMERICAL, [], tmp_path / "x.html",
                     context_numerical=["tx_90"])


def test_context_columns_show_no_drift_verdict(tmp_path: Path) -> None:
    """The page judges only the tested columns: a shifted context column must not read "Data drift detected"
    right under "Dataset Drift is NOT detected"; its score is in the header, marked as not tested."""
    shifted = ["recency_days", "spend_90"]
    tested = [c for c in NUMERICAL if c not in shifted]
    result = drift_report("feature_drift", features(3000, 1), features(3000, 2, shift=1.0), tested, CATEGORICAL,
                          tmp_path / "r.html", num_method="wasserstein", num_threshold=0.15,
                          context_numerical=shifted)
    rebuilt = render_html(result.snapshot_json, tmp_path / "rebuilt.html")
    for text in (result.html_path.read_text(encoding="utf-8"), rebuilt.read_text(encoding="utf-8"),
                 result.snapshot_json):
        assert "Data drift detected" not in text
        assert all(f"Drift for column {c}" in text for c in tested + CATEGORICAL)  # the tested ones are judged
        # Evidently's ValueDrift widget ("Drift in column 'x'") and test ("Drift for column x") state a verdict.
        assert not any(f"Drift in column '{c}'" in text or f"Drift for column {c}" in text for c in shifted)
    # ... but each context column's median and distribution are on the page, reference against current.
    page = result.html_path.read_text(encoding="utf-8")
    assert all(re.search(rf"Quantile 0.5 of '{c}': current: [-0-9.]+, reference: [-0-9.]+", page) for c in shifted)
    header = re.search(r"Shown for context, not tested[^<]*", result.html_path.read_text(encoding="utf-8"))
    assert header and all(f"{c} {result.headline['context_scores'][c]:.3f}" in header.group() for c in shifted)
    with pytest.raises(TypeError, match="unknown drift option"):
        drift_report("feature_drift", features(100, 1), features(100, 2), tested, [], tmp_path / "y.html",
                     num_methd="wasserstein")


def test_explicit_methods_and_thresholds_pass_through(tmp_path: Path) -> None:
    result = drift_report(
        "feature_drift", features(3000, 1), features(3000, 2), NUMERICAL, CATEGORICAL, tmp_path / "r.html",
        num_method="ks", per_column_method={"country": "psi"}, per_column_threshold={"country": 0.2},
    )
    descriptions = {t["column"]: t["description"] for t in result.tests if t["column"]}
    assert "K-S p_value" in descriptions["spend_90"]
    assert "PSI" in descriptions["country"] and "threshold is 0.20" in descriptions["country"]


@pytest.mark.parametrize("cat_method", [None, "chisquare"])
def test_constant_categorical_column_is_left_out_without_nan(tmp_path: Path, cat_method: str | None) -> None:
    # 800 rows: below Evidently's 1,000-row switch, so p-value tests are used; chi-square on a single
    # category scores NaN (and calls it "not drifted").
    reference, current = features(800, 1), features(800, 2)
    reference["plan"] = current["plan"] = "basic"
    reference["segment"] = "a"  # constant in the reference only: a new value appears, which is drift
    current["segment"] = np.where(np.arange(800) % 2 == 0, "a", "b")
    result = drift_report("feature_drift", reference, current, NUMERICAL, [*CATEGORICAL, "plan", "segment"],
                          tmp_path / "r.html", cat_method=cat_method)
    assert result.headline["constant_columns"] == ["plan"]
    assert "plan" not in {m["column"] for m in result.metrics}
    assert "plan" not in {t["column"] for t in result.tests}
    assert "segment" in result.headline["drifted_column_names"]
    assert "NaN" not in result.snapshot_json
    assert_rows_well_formed(result)


def test_column_empty_on_one_side_counts_as_drifted(tmp_path: Path) -> None:
    current = features(3000, 2)
    current["avg_basket"] = np.nan
    result = drift_report("feature_drift", features(3000, 1), current, NUMERICAL, CATEGORICAL, tmp_path / "r.html")
    assert result.headline["empty_columns"] == ["avg_basket"]
    assert "avg_basket" in result.headline["drifted_column_names"]
    assert any(t["column"] == "avg_basket" and t["status"] == "FAIL" for t in result.tests)
    assert not result.passed


def test_rejects_unknown_kind_and_missing_columns(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        drift_report("model_performance", features(10, 1), features(10, 2), NUMERICAL, [], tmp_path / "r.html")
    with pytest.raises(KeyError, match="nope"):
        drift_report("feature_drift", features(10, 1), features(10, 2), ["nope"], [], tmp_path / "r.html")


# --------------------------------------------------------------------------------------------- HTML


def test_html_is_self_contained_and_states_sample_sizes(stable: ReportResult) -> None:
    page = stable.html_path.read_text(encoding="utf-8")
    assert stable.html_path.stat().st_size > 1_000_000  # the script bundle is embedded (~3.9 MB)
    assert "window.drawDashboard(" in page
    assert not REMOTE_SCRIPT.search(page)
    assert not re.search(r"""<link[^>]+href=["']?(https?:)?//""", page, re.IGNORECASE)
    assert "<title>Feature drift 2024-03-01</title>" in page
    assert "reference: 5,000 rows" in page and "current: 5,000 rows" in page
    assert "Row count in dataset (reference)" in page  # Evidently's own RowCount widget


def test_render_html_rebuilds_the_same_page_from_the_snapshot_alone(stable: ReportResult, tmp_path: Path) -> None:
    snapshot_json = stable.snapshot_json
    again = render_html(snapshot_json, tmp_path / "nested" / "again.html")
    assert again == tmp_path / "nested" / "again.html"
    assert again.stat().st_size > 1_000_000
    assert normalised(again) == normalised(stable.html_path)
    assert not REMOTE_SCRIPT.search(again.read_text(encoding="utf-8"))


def test_category_values_cannot_break_out_of_the_data_script(tmp_path: Path) -> None:
    frame = features(2000, 1)
    frame.loc[::2, "country"] = "</script><script>alert(1)</script>"
    result = drift_report("feature_drift", frame, frame.copy(), NUMERICAL, CATEGORICAL, tmp_path / "r.html",
                          title="<b>day</b>")
    page = result.html_path.read_text(encoding="utf-8")
    assert "<script>alert(1)" not in page
    assert "\\u003c/script>\\u003cscript>alert(1)" in page  # still in the data, as an escaped string
    assert "&lt;b&gt;day&lt;/b&gt;" in page and "<b>day</b>" not in page


# --------------------------------------------------------------------------------------------- sampling


def test_sample_is_deterministic_by_seed_and_respects_the_cap() -> None:
    frame = features(5000, 3)
    first, again, other = sample(frame, 1000, 7), sample(frame, 1000, 7), sample(frame, 1000, 8)
    assert len(first) == 1000
    pd.testing.assert_frame_equal(first, again)
    assert not first.index.equals(other.index)
    assert first.index.is_monotonic_increasing  # original order kept
    assert sample(frame, 5000, 7) is frame and sample(frame, 10_000, 7) is frame
    with pytest.raises(ValueError):
        sample(frame, 0, 7)


def test_report_row_counts_reflect_the_sample(tmp_path: Path) -> None:
    result = drift_report("prediction_drift", features(5000, 1), features(3000, 2), ["spend_90", "avg_basket"], [],
                          tmp_path / "r.html", row_cap=1500, seed=3)
    assert (result.reference_rows, result.current_rows) == (1500, 1500)
    assert next(m["value"] for m in result.metrics if m["metric"] == "RowCount") == 1500
    page = result.html_path.read_text(encoding="utf-8")
    assert "reference: 1,500 rows (sampled from 5,000)" in page
    assert "current: 1,500 rows (sampled from 3,000)" in page
    assert '"reference_rows": "1500"' in result.snapshot_json  # in the snapshot's metadata too


# --------------------------------------------------------------------------------------------- performance


def outcomes(n: int, seed: int, *, good: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    churned = (rng.random(n) < 0.3).astype(int)
    spend = np.where(churned == 1, 0.0, rng.gamma(2.0, 60.0, n))
    if good:
        predicted = spend * 0.9 + rng.normal(0, 10, n)
        probability = np.clip(0.15 + 0.6 * churned + rng.normal(0, 0.12, n), 0, 1)
    else:
        predicted, probability = rng.permutation(spend), rng.random(n)
    return pd.DataFrame({"customer_id": np.arange(n), "actual_spend": spend, "predicted_spend": predicted,
                         "churned": churned, "churn_probability": probability})


def run_performance(frame: pd.DataFrame, path: Path) -> ReportResult:
    return performance_report(frame, path, spend_actual="actual_spend", spend_predicted="predicted_spend",
                              churn_actual="churned", churn_probability="churn_probability", row_cap=100_000, seed=7)


def test_performance_headline_separates_good_from_random_predictions(tmp_path: Path) -> None:
    good = run_performance(outcomes(3000, 1, good=True), tmp_path / "good.html")
    bad = run_performance(outcomes(3000, 1, good=False), tmp_path / "bad.html")
    assert good.passed and not bad.passed
    assert good.headline["rmse"] < 0.3 * good.headline["baseline_rmse"]
    assert bad.headline["rmse"] > bad.headline["baseline_rmse"]
    assert good.headline["roc_auc"] > 0.95
    assert 0.4 < bad.headline["roc_auc"] < 0.6
    assert {t["status"] for t in bad.tests} == {"FAIL"}  # RMSE above the baseline, AUC not above 0.5
    assert (good.reference_rows, good.current_rows) == (0, 3000)
    assert not good.has_reference  # matured labels only: no reference dataset to claim 0 rows of
    names = {m["metric"] for m in good.metrics}
    assert {"RMSE", "MAE.mean", "R2Score", "RocAuc", "LogLoss", "Accuracy"} <= names
    assert_rows_well_formed(good)
    assert_rows_well_formed(bad)
    assert not REMOTE_SCRIPT.search(good.html_path.read_text(encoding="utf-8"))


def test_performance_with_a_single_churn_class_and_null_rows(tmp_path: Path) -> None:
    frame = outcomes(2000, 2, good=True)
    frame["churned"] = 0
    frame.loc[:9, "actual_spend"] = np.nan
    result = run_performance(frame, tmp_path / "one.html")
    assert result.headline["roc_auc"] is None
    assert result.headline["dropped_rows"] == 10
    assert result.current_rows == 1990
    assert result.passed


# --------------------------------------------------------------------------------------------- data quality


def test_data_quality_passes_on_stable_windows_of_different_length(tmp_path: Path) -> None:
    reference, current = features(4000, 1), features(1000, 2)  # four weeks against one
    reference["plan"] = current["plan"] = "basic"
    result = data_quality_report(reference, current, NUMERICAL, [*CATEGORICAL, "plan"], tmp_path / "dq.html",
                                 row_cap=100_000, seed=7)
    assert result.passed, [t for t in result.tests if t["status"] != "SUCCESS"]
    assert result.headline["failed_tests"] == 0 and result.headline["missing_share"] == 0.0
    assert result.headline["constant_columns"] == ["plan"]
    assert (result.reference_rows, result.current_rows) == (4000, 1000)
    assert_rows_well_formed(result)


def test_data_quality_fails_on_missing_values_and_a_shifted_mean(tmp_path: Path) -> None:
    current = features(1000, 2, shift=1.0)
    current.loc[::10, "tx_90"] = np.nan
    result = data_quality_report(features(4000, 1), current, NUMERICAL, CATEGORICAL, tmp_path / "dq.html",
                                 row_cap=100_000, seed=7)
    failed = {(t["column"], t["test"].split(":")[0]) for t in result.tests if t["status"] == "FAIL"}
    assert ("tx_90", "Column 'tx_90' missing values") in failed
    assert ("recency_days", "Mean value of 'recency_days'") in failed
    assert not result.passed and result.headline["failed_tests"] == len(failed)


# --------------------------------------------------------------------------------------------- index


def index_rows(root: Path) -> list[dict]:
    for kind, day in [("feature_drift", "2024-03-01"), ("feature_drift", "2024-03-03"),
                      ("model_performance", "2024-03-03")]:
        (root / kind).mkdir(parents=True, exist_ok=True)
        (root / kind / f"{day}.html").write_text("<html></html>")
    base = {"reference_rows": 100_000, "current_rows": 4_812, "created_at": "2024-03-03 06:00:00"}
    return [
        {**base, "report_id": "feature_drift:2024-03-01:aaaa", "kind": "feature_drift", "partition": "2024-03-01",
         "model_version": "ltv-20240301", "passed": True, "html_path": str(root / "feature_drift" / "2024-03-01.html"),
         "headline": {"drift_share": 0.0, "drifted_columns": 0, "columns": 30, "drifted_column_names": []}},
        {**base, "report_id": "feature_drift:2024-03-03:bbbb", "kind": "feature_drift", "partition": "2024-03-03",
         "model_version": "<script>alert('x')</script>", "passed": False,
         "html_path": str(root / "feature_drift" / "2024-03-03.html"),
         "headline": {"drift_share": 0.4, "drifted_columns": 12, "columns": 30,
                      "drifted_column_names": ["spend_90", "<i>evil</i>"]}},
        {**base, "report_id": "feature_drift:2024-02-01:cccc", "kind": "feature_drift", "partition": "2024-02-01",
         "model_version": "ltv-20240101", "passed": True, "html_path": str(root / "feature_drift" / "2024-02-01.html"),
         "headline": {"drift_share": 0.1, "drifted_columns": 3, "columns": 30}},
        {**base, "report_id": "model_performance:2024-03-03:dddd", "kind": "model_performance",
         "partition": "2024-03-03", "model_version": "ltv-1,churn-1", "passed": True, "reference_rows": 0,
         "html_path": "model_performance/2024-03-03.html",  # relative to the reports root
         "headline": {"rmse": 41.2345678, "baseline_rmse": 80.0, "roc_auc": 0.8123456, "log_loss": None}},
        {**base, "report_id": "data_quality:2024-03-03:eeee", "kind": "data_quality", "partition": "2024-03-03",
         "model_version": None, "passed": True, "html_path": str(root / "data_quality" / "2024-03-03.html"),
         "headline": {"drift_share": 0.0, "missing_share": 0.0, "failed_tests": 0}},
    ]


def test_index_lists_every_report_with_relative_links(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    rows = index_rows(root)
    index = write_index(root, rows)
    assert index == root / "index.html"
    page = index.read_text(encoding="utf-8")
    for row in rows:
        assert row["partition"] in page
    links = re.findall(r'href="([^"]+)"', page)
    assert sorted(links) == ["feature_drift/2024-03-01.html", "feature_drift/2024-03-03.html",
                             "model_performance/2024-03-03.html"]
    assert all((root / link).is_file() for link in links)
    # pruned (or never written) reports say how to get them back
    assert "pruned, re-render with <code>mlsys reports render feature_drift:2024-02-01:cccc</code>" in page
    assert "mlsys reports render data_quality:2024-03-03:eeee" in page
    # grouped by kind in a fixed order, newest first within a kind
    assert page.index("Feature drift") < page.index("Model performance") < page.index("Data quality")
    drift_part = page[page.index('id="feature_drift"'):page.index('id="model_performance"')]
    assert drift_part.index("2024-03-03") < drift_part.index("2024-03-01") < drift_part.index("2024-02-01")
    # headline numbers and sizes
    assert "drift share <b>0.4</b>" in page and "drifted columns <b>12</b>" in page
    assert "RMSE <b>41.23</b>" in page and "AUC <b>0.8123</b>" in page
    assert "100,000" in page and "4,812" in page
    assert not list(root.glob(".index.html.*"))  # the temporary file was renamed away


def test_index_marks_failures_escapes_text_and_is_self_contained(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    page = write_index(root, index_rows(root)).read_text(encoding="utf-8")
    assert page.count('class="badge fail"') == 1 and page.count('class="badge pass"') == 4
    assert '<tr class="failed">' in page
    assert "<script" not in page.lower() and "<i>evil</i>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&lt;i&gt;evil&lt;/i&gt;" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page, re.IGNORECASE)
    assert "http://" not in page and "https://" not in page and "<link" not in page and "@import" not in page
    assert "<style>" in page


def test_index_of_no_reports(tmp_path: Path) -> None:
    page = write_index(tmp_path / "new", []).read_text(encoding="utf-8")
    assert "No reports yet" in page


def test_index_links_a_real_report(stable: ReportResult, reports_dir: Path) -> None:
    row = {"report_id": "feature_drift:2024-03-01:r", "kind": stable.kind, "partition": "2024-03-01",
           "model_version": "ltv-1", "reference_rows": stable.reference_rows, "current_rows": stable.current_rows,
           "passed": stable.passed, "html_path": str(stable.html_path),
           "headline": json.loads(json.dumps(stable.headline, default=float)), "created_at": "2024-03-02 01:00"}
    page = write_index(reports_dir, [row]).read_text(encoding="utf-8")
    assert 'href="feature_drift/2024-03-01.html"' in page and "PASS" in page


def test_prune_keeps_the_newest_days(tmp_path: Path) -> None:
    folder = tmp_path / "feature_drift"
    folder.mkdir()
    days = ["2024-01-05", "2024-01-01", "2024-02-10", "2023-12-31", "2024-01-20"]
    for day in days:
        (folder / f"{day}.html").write_text("x")
    (folder / "notes.html").write_text("not a day")
    deleted = prune_reports(tmp_path, "feature_drift", keep_latest=2)
    assert [p.name for p in deleted] == ["2023-12-31.html", "2024-01-01.html", "2024-01-05.html"]
    assert sorted(p.name for p in folder.iterdir()) == ["2024-01-20.html", "2024-02-10.html", "notes.html"]
    assert prune_reports(tmp_path, "feature_drift", keep_latest=2) == []
    assert prune_reports(tmp_path, "no_such_kind", keep_latest=1) == []
    with pytest.raises(ValueError):
        prune_reports(tmp_path, "feature_drift", keep_latest=-1)
