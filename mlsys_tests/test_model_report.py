"""Model quality is visible in the UI: every headline metric as a plottable number with a stable name, the
registry's decision in full, and one self-contained HTML report per evaluated version."""

from __future__ import annotations

import html
import math
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from dagster import DagsterInstance, FloatMetadataValue, TextMetadataValue, UrlMetadataValue

from mlsys_assets.cli import main as mlsys_cli

from mlsys_assets.ml.gate import KEEP_PRODUCTION, PROMOTE, SERVE_BTYD
from mlsys_assets.ml.metrics import CHURN_METRICS, SPEND_METRICS
from mlsys_assets.ml.model_report import headline_metadata, model_report_path, record_decision, served_metadata
from mlsys_assets.ml.model_store import read_pointer

HEADLINE = {"ltv": [m for m in SPEND_METRICS if m != "abs_bias_pct"], "churn": list(CHURN_METRICS)}
SCORERS = ("candidate", "naive", "historical", "bgnbd", "oracle")  # the shop is simulated: the oracle scores too


@pytest.fixture(scope="module")
def two_retrains(tmp_path_factory, shop_factory):
    """The whole retraining pipeline twice on the shop; the first candidates are forced into production (on this
    small shop BG/NBD wins), so the second evaluation also scores a production CatBoost model."""
    with DagsterInstance.ephemeral() as instance:
        shop = shop_factory(tmp_path_factory.mktemp("model_report"), instance)
        first = shop.retrain()
        for version in _metadata(first, "model_evaluation")["candidates"].value.values():
            forced = CliRunner().invoke(mlsys_cli, ["models", "promote", version, "--force", "--data-dir", str(shop.data_dir)])
            assert forced.exit_code == 0, forced.output
        yield shop, [first, shop.retrain()]


def _metadata(result, asset: str) -> dict:
    return result.asset_materializations_for_node(f"ml__{asset}")[0].metadata


def _floats(metadata: dict) -> dict[str, float]:
    return {name: entry.value for name, entry in metadata.items() if isinstance(entry, FloatMetadataValue)}


def _assert_plottable(values: dict[str, float]) -> None:
    for name, value in values.items():
        assert isinstance(value, float) and math.isfinite(value), name
        assert value == round(value, 4), (name, value)


def test_evaluation_plots_every_headline_metric_of_every_scorer_under_stable_names(two_retrains):
    shop, (first, second) = two_retrains
    expected = {f"{t}_{m}_{s}" for t, metrics in HEADLINE.items() for m in metrics for s in SCORERS}

    before, after = _floats(_metadata(first, "model_evaluation")), _floats(_metadata(second, "model_evaluation"))

    assert set(before) == expected
    # A retrain keeps every name (the Plots tab draws lines); the production CatBoost models' own backtest joins.
    assert set(after) == expected | {n.replace("_candidate", "_production") for n in expected if n.endswith("_candidate")}
    for values in (before, after):
        _assert_plottable(values)
    assert _metadata(second, "model_evaluation")["metrics_not_defined"].value == "none"
    evaluation_id = _metadata(second, "model_evaluation")["evaluation_id"].value
    stored = shop.query("SELECT model, metric, scorer, value FROM ml.model_evaluation WHERE evaluation_id = ? "
                        "AND cutoff IS NULL AND scorer = 'candidate'", [evaluation_id])
    assert {f"{m}_{metric}_{s}": round(v, 4) for m, metric, s, v in stored if f"{m}_{metric}_{s}" in after} == {
        name: value for name, value in after.items() if name.endswith("_candidate")}


def test_tables_in_the_evaluation_metadata_are_rounded(two_retrains):
    _, (_, result) = two_retrains
    metadata = _metadata(result, "model_evaluation")
    for name in ("metrics", "gate_metrics_by_cutoff"):
        numbers = re.findall(r"\| (-?\d+\.\d+)(?= \|)", metadata[name].value)
        assert numbers and all(len(n.split(".")[1]) == 4 for n in numbers), name


def test_the_registry_states_each_decision_in_full_and_what_serves(two_retrains):
    shop, (_, result) = two_retrains
    metadata = _metadata(result, "model_registry")
    candidates = _metadata(result, "model_evaluation")["candidates"].value
    served = {m: e["version"] for m, e in read_pointer(shop.layout.serving)["models"].items()}
    for name, version in candidates.items():
        reason = shop.query("SELECT gate_reason FROM ml.model_registry WHERE version = ?", [version])[0][0]
        decision = metadata[f"{name}_decision"]
        assert isinstance(decision, TextMetadataValue)
        assert re.match(r"(PROMOTE|SERVE_BTYD|KEEP_PRODUCTION): ", decision.value), decision.value
        assert f"{served[name]} serves" in decision.value and f"Candidate {version}" in decision.value
        assert decision.value.endswith(f"Reason: {reason}") and len(reason) > 40
    served_metrics = _floats(metadata)
    assert set(served_metrics) == {f"{t}_{m}_served" for t, metrics in HEADLINE.items() for m in metrics}
    _assert_plottable(served_metrics)
    assert metadata["served_metrics_not_defined"].value == "none"


def test_the_registry_stores_the_gate_action_of_each_candidate_and_its_fallback(two_retrains):
    shop, results = two_retrains
    for result in results:
        metadata = _metadata(result, "model_registry")
        for name, version in _metadata(result, "model_evaluation")["candidates"].value.items():
            decided = metadata[f"{name}_decision"].value.split(":")[0]  # PROMOTE, SERVE_BTYD or KEEP_PRODUCTION
            # the candidate's row, and the BG/NBD fallback registered in the same run if the classic model serves
            rows = shop.query("SELECT version, gate_action FROM ml.model_registry WHERE model = ? AND run_id = ? "
                              "AND (version = ? OR starts_with(gate_reason, 'fallback:'))",
                              [name, result.run_id, version])
            assert version in {v for v, _ in rows}
            for row_version, action in rows:
                assert action in {PROMOTE, SERVE_BTYD, KEEP_PRODUCTION}, (row_version, action)
                assert action.upper().replace(" ", "_") == decided, (row_version, action, decided)


def test_each_candidate_has_a_self_contained_report_with_its_decision(two_retrains):
    shop, (_, result) = two_retrains
    evaluation, registry = _metadata(result, "model_evaluation"), _metadata(result, "model_registry")
    for name, version in evaluation["candidates"].value.items():
        path = model_report_path(shop.layout.reports, name, version)
        page = path.read_text()
        link = evaluation[f"{name}_model_report"]
        assert isinstance(link, UrlMetadataValue) and link.value.endswith(f"/models/{name}/{version}.html")
        assert registry[f"{name}_model_report"].value == link.value
        assert page.count('<img alt="') == 2 and page.count('src="data:image/png;base64,') == 2
        assert not re.search(r"https?://", page), "a report must open offline"
        assert html.escape(registry[f"{name}_decision"].value) in page and "Pending" not in page
        for scorer in SCORERS:
            assert f"<th>{scorer}</th>" in page
        assert not list(path.parent.glob(".*.tmp-*"))


def test_an_undefined_metric_is_left_out_and_named():
    nan = float("nan")
    table = pd.DataFrame({
        "model": ["ltv", "ltv", "ltv", "churn"], "scorer": ["candidate", "naive", "naive", "candidate"],
        "metric": ["gini", "gini", "abs_bias_pct", "roc_auc"], "value": [0.812345, nan, 3.0, 0.9],
        "cutoff": [pd.NaT, pd.NaT, pd.NaT, pd.Timestamp("2024-01-01")]})

    values, undefined = headline_metadata(table)

    assert values == {"ltv_gini_candidate": 0.8123} and undefined == ["ltv_gini_naive"]
    assert not any(np.isnan(v) for v in values.values())


def test_what_serves_without_metrics_is_named_not_plotted():
    evaluated = pd.DataFrame({"model": ["ltv", "ltv", "churn"], "metric": ["gini", "abs_bias_pct", "brier"]})
    cards = {"ltv": {"metrics": {"backtest": {"gini": 0.812345, "abs_bias_pct": 3.0}}},
             "churn": {"metrics": {}}}  # the classic model registered before any training

    assert served_metadata(cards, evaluated) == ({"ltv_gini_served": 0.8123}, ["churn_brier_served"])


def test_a_decision_for_a_missing_report_is_not_written(tmp_path):
    assert not record_decision(tmp_path / "models" / "ltv" / "ltv-1.html", "PROMOTE: x serves.", True)
    assert not (tmp_path / "models").exists()
