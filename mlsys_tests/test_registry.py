"""The promotion gate, the registry's state changes and the production pointer."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pytest
from click.testing import CliRunner

from mlsys_assets.cli import main as mlsys_cli
from mlsys_assets.ml import registry
from mlsys_assets.ml.evaluation_assets import _outcome, model_evaluation, model_registry
from mlsys_assets.ml.gate import KEEP_PRODUCTION, PROMOTE, SERVE_BTYD, GateDecision, gate_decision
from mlsys_assets.ml.targets import TARGETS
from mlsys_assets.ml.model_store import (
    ModelVersion,
    NoProductionModelError,
    pointer_path,
    production_version,
    read_pointer,
    write_pointer,
)

WEAK = {"iterations": 1, "depth": 1}


def ltv_values(**overrides: float) -> dict[tuple[str, str], float]:
    """Backtest means of a candidate that matches or beats BG/NBD and beats naive and historical; keys like
    `candidate_gini=0.6` override one value."""
    values = {
        ("candidate", "rmse"): 100.0, ("candidate", "gini"): 0.80, ("candidate", "top10_capture"): 0.50,
        ("candidate", "abs_bias_pct"): 5.0,
        ("bgnbd", "rmse"): 101.0, ("bgnbd", "gini"): 0.75, ("bgnbd", "top10_capture"): 0.48, ("bgnbd", "abs_bias_pct"): 8.0,
        ("naive", "gini"): 0.50, ("naive", "top10_capture"): 0.40, ("historical", "gini"): 0.70,
        ("historical", "top10_capture"): 0.45,
    }
    for key, value in overrides.items():
        scorer, metric = key.split("_", 1)
        values[(scorer, metric)] = value
    return values


def churn_values(**overrides: float) -> dict[tuple[str, str], float]:
    values = {("candidate", "roc_auc"): 0.85, ("candidate", "brier"): 0.15, ("bgnbd", "roc_auc"): 0.84,
              ("bgnbd", "brier"): 0.16, ("naive", "roc_auc"): 0.75, ("historical", "roc_auc"): 0.80}
    for key, value in overrides.items():
        scorer, metric = key.split("_", 1)
        values[(scorer, metric)] = value
    return values


def decide(name: str, values: dict, production: dict | None = None, tolerance: float = 0.02, bias: float = 10.0):
    return gate_decision(TARGETS[name], values, production, tolerance, bias)


# --- gate_decision -----------------------------------------------------------------------------------


def test_gate_promotes_a_candidate_that_matches_or_beats_btyd_and_beats_the_baselines():
    for name, values in (("ltv", ltv_values()), ("churn", churn_values())):
        decision = decide(name, values)
        assert (decision.passed, decision.action) == (True, PROMOTE), decision.reason
        assert decision.reason.startswith("matches or beats BG/NBD on the backtest")
    # A tie with the classic model is enough: the candidate is then at least as good.
    assert decide("churn", churn_values(candidate_roc_auc=0.84, candidate_brier=0.16)).passed


@pytest.mark.parametrize(
    ("name", "values", "expected"),
    [
        ("ltv", ltv_values(candidate_rmse=101.5), ["rmse 101.5000 is worse than BG/NBD's 101.0000"]),
        ("ltv", ltv_values(candidate_gini=0.74), ["gini 0.7400 is worse than BG/NBD's 0.7500"]),
        ("ltv", ltv_values(candidate_top10_capture=0.44), ["top10_capture 0.4400 is worse than BG/NBD's 0.4800",
                                                           "top10_capture 0.4400 does not beat historical 0.4500"]),
        ("ltv", ltv_values(candidate_abs_bias_pct=12.0), ["|bias| 12.0% is beyond 10.0% (max of ±10.0% and BG/NBD's)"]),
        ("ltv", ltv_values(bgnbd_gini=0.6, candidate_gini=0.70), ["gini 0.7000 does not beat historical 0.7000"]),
        ("churn", churn_values(candidate_brier=0.17), ["brier 0.1700 is worse than BG/NBD's 0.1600"]),
        ("churn", churn_values(candidate_roc_auc=0.78, bgnbd_roc_auc=0.7),
         ["roc_auc 0.7800 does not beat historical 0.8000"]),
        ("ltv", ltv_values(candidate_gini=float("nan")), ["gini could not be computed on the backtest"]),
    ],
)
def test_a_candidate_short_of_btyd_or_the_baselines_hands_the_target_to_btyd(name, values, expected):
    decision = decide(name, values)
    assert (decision.passed, decision.action) == (False, SERVE_BTYD)
    assert decision.reason.split("; ") == expected


def test_on_its_error_metric_a_candidate_must_be_clearly_better_than_btyd():
    assert decide("ltv", ltv_values(candidate_rmse=100.0, bgnbd_rmse=100.4)).passed
    decision = gate_decision(TARGETS["ltv"], ltv_values(candidate_rmse=100.0, bgnbd_rmse=100.4), None, 0.02, 10.0, 0.005)
    assert (decision.passed, decision.action) == (False, SERVE_BTYD)
    assert decision.reason == "rmse 100.0000 is not 0.5% better than BG/NBD's 100.4000"
    assert gate_decision(TARGETS["ltv"], ltv_values(candidate_rmse=100.0, bgnbd_rmse=100.6), None, 0.02, 10.0, 0.005).passed


def test_better_on_average_but_worse_at_one_cutoff_is_not_enough():
    by_cutoff = {"2025-11-09": {("candidate", "rmse"): 127.2, ("bgnbd", "rmse"): 126.4},
                 "2026-02-15": {("candidate", "rmse"): 88.7, ("bgnbd", "rmse"): 90.9}}
    decision = gate_decision(TARGETS["ltv"], ltv_values(), None, 0.02, 10.0, 0.0, by_cutoff)
    assert (decision.passed, decision.action) == (False, SERVE_BTYD)
    assert decision.reason == "rmse 127.2000 is worse than BG/NBD's 126.4000 at the cutoff 2025-11-09"
    by_cutoff["2025-11-09"][("candidate", "rmse")] = 126.0
    assert gate_decision(TARGETS["ltv"], ltv_values(), None, 0.02, 10.0, 0.0, by_cutoff).passed


def test_bias_bound_is_the_larger_of_the_setting_and_btyd_own_bias():
    assert decide("ltv", ltv_values(candidate_abs_bias_pct=14.0, bgnbd_abs_bias_pct=15.0)).passed
    assert not decide("ltv", ltv_values(candidate_abs_bias_pct=16.0, bgnbd_abs_bias_pct=15.0)).passed
    assert decide("ltv", ltv_values(candidate_abs_bias_pct=14.0), bias=20.0).passed


def test_tolerance_against_the_production_models_own_backtest_keeps_production():
    assert decide("ltv", ltv_values(), {"gini": 0.815, "top10_capture": 0.51}).passed
    decision = decide("ltv", ltv_values(), {"gini": 0.83, "top10_capture": 0.51})
    assert (decision.passed, decision.action) == (False, KEEP_PRODUCTION)
    assert decision.reason == "gini 0.8000 is worse than production's backtest 0.8300 beyond the tolerance 0.02"
    assert decide("ltv", ltv_values(), {"gini": 0.83}, tolerance=0.05).passed
    decision = decide("churn", churn_values(), {"roc_auc": 0.90})
    assert (decision.passed, decision.action) == (False, KEEP_PRODUCTION)


# --- the gate end to end -----------------------------------------------------------------------------


def _versions(result) -> dict[str, str]:
    return {name: result.asset_materializations_for_node(f"ml__{name}_model")[0].metadata["version"].value
            for name in ("ltv", "churn")}


def _states(shop) -> dict[str, tuple]:
    return {version: (state, gate_passed, reason) for version, state, gate_passed, reason in
            shop.query("SELECT version, state, gate_passed, gate_reason FROM ml.model_registry")}


def _check(result, name: str = "production_model_loadable"):
    evaluations = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    assert len(evaluations) == 1
    return evaluations[0]


def _served(shop) -> dict[str, str]:
    return {m: e["version"] for m, e in read_pointer(shop.layout.serving)["models"].items()}


def test_weak_candidates_are_rejected_and_btyd_serves_their_targets(shop):
    weak = shop.retrain(ltv=WEAK, churn=WEAK, raise_on_error=False)

    assert weak.success
    states = _states(shop)
    served = _served(shop)
    for model_name, version in _versions(weak).items():
        state, gate_passed, reason = states[version]
        assert (state, gate_passed) == ("rejected", False), (model_name, reason)
        assert "BG/NBD" in reason
        assert shop.query("SELECT state FROM ml.model_state_history WHERE version = ? ORDER BY changed_at",
                          [version]) == [("candidate",), ("rejected",)]
        # The classic model serves the target, registered like any version and said so in its reason.
        assert f"{model_name}-btyd-" in served[model_name]
        assert states[served[model_name]][0] == "production"
        assert "BG/NBD + Gamma-Gamma serves" in shop.query(
            "SELECT reason FROM ml.model_state_history WHERE version = ? AND state = 'production'", [served[model_name]])[0][0]
    assert _check(weak).passed
    metadata = weak.asset_materializations_for_node("ml__model_registry")[0].metadata
    assert (metadata["ltv_served_by"].value, metadata["churn_served_by"].value) == ("btyd", "btyd")
    # The evaluation tells its story in the UI: every scorer's backtest means as numbers, each cutoff's gate metrics.
    evaluation = weak.asset_materializations_for_node("ml__model_evaluation")[0].metadata
    assert isinstance(evaluation["ltv_gini_candidate"].value, float)
    assert isinstance(evaluation["churn_roc_auc_bgnbd"].value, float)
    for cutoff in evaluation["backtest_cutoffs"].value:
        assert f"| ltv | rmse | {cutoff} |" in evaluation["gate_metrics_by_cutoff"].value
    # Each refit names the version its backtest evaluated.
    for version in _versions(weak).values():
        refit_of = shop.query("SELECT refit_of FROM ml.model_registry WHERE version = ?", [version])[0][0]
        assert shop.query("SELECT state FROM ml.model_registry WHERE version = ?", [refit_of]) == [("evaluated",)]


def test_rerunning_the_gate_without_retraining_keeps_what_serves(shop):
    shop.retrain(ltv=WEAK, churn=WEAK)
    pointer_bytes = pointer_path(shop.layout.serving).read_bytes()

    again = shop.materialize([model_evaluation, model_registry], raise_on_error=False)

    assert again.success
    assert pointer_path(shop.layout.serving).read_bytes() == pointer_bytes


def test_forcing_a_rejected_candidate_by_hand(shop):
    result = shop.retrain(ltv=WEAK, churn=WEAK, gate={"approval": "manual"})
    versions = _versions(result)
    runner = CliRunner()

    refused = runner.invoke(mlsys_cli, ["models", "promote", versions["ltv"], "--data-dir", str(shop.data_dir)])
    assert refused.exit_code != 0 and "did not pass the gate" in refused.output and "--force" in refused.output

    forced = runner.invoke(mlsys_cli, ["models", "promote", versions["ltv"], "--force", "--data-dir", str(shop.data_dir)])

    assert forced.exit_code == 0, forced.output
    assert _served(shop)["ltv"] == versions["ltv"] and "-btyd-" in _served(shop)["churn"]
    assert production_version(shop.layout.serving, "ltv").version == versions["ltv"]
    unknown = runner.invoke(mlsys_cli, ["models", "promote", "ltv-19990101T000000-deadbeef", "--data-dir", str(shop.data_dir)])
    assert unknown.exit_code != 0 and "no version 'ltv-19990101T000000-deadbeef'" in unknown.output


@pytest.mark.parametrize(("passed", "action", "approval", "current", "outcome"), [
    (True, PROMOTE, "auto", "btyd", "promote"),
    (True, PROMOTE, "manual", "catboost", "wait"),
    (True, PROMOTE, "manual", "none", "wait+btyd"),  # never no forecast while a candidate waits
    (False, SERVE_BTYD, "auto", "catboost", "btyd"),
    (False, SERVE_BTYD, "auto", "btyd", "keep"),
    (False, KEEP_PRODUCTION, "auto", "catboost", "keep"),
    (False, KEEP_PRODUCTION, "auto", "none", "btyd"),
])
def test_what_the_registry_does_after_the_gate(passed, action, approval, current, outcome):
    assert _outcome(GateDecision(passed, action, "reason"), approval, current) == outcome


def test_production_version_without_any_pointer_or_without_the_model(tmp_path):
    serving = tmp_path / "serving"
    with pytest.raises(NoProductionModelError, match="no candidate has passed the promotion gate"):
        production_version(serving, "ltv")

    write_pointer(serving, {"churn": ModelVersion("churn", "churn-1", tmp_path / "churn-1")}, "test")

    assert production_version(serving, "churn") == ModelVersion("churn", "churn-1", tmp_path / "churn-1")
    with pytest.raises(NoProductionModelError, match="no production ltv model yet: none has passed the promotion gate"):
        production_version(serving, "ltv")


# --- registry round trip and rollback ----------------------------------------------------------------


def _card(name: str) -> dict:
    return {
        "training_window": {"first_as_of": "2024-04-01", "last_as_of": "2024-08-01"},
        "holdout_as_of": "2024-09-01", "source_partitions": "2024-01-01 … 2024-10-01", "code_version": "test",
        "params": {"iterations": 1}, "features": ["recency_days"], "metrics": {"holdout": {"gini": 0.5}}, "name": name,
    }


@pytest.fixture
def registry_db(tmp_path):
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute("CREATE SCHEMA ml")
    registry.ensure_tables(con)
    yield con
    con.close()


def _register(con, models_root: Path, model: str, version: str) -> ModelVersion:
    model_version = ModelVersion(model, version, models_root / model / version)
    model_version.path.mkdir(parents=True)
    model_version.card_file.write_text(json.dumps({**_card(version), "model": model, "version": version}))
    registry.register_candidate(con, model_version, model_version.card(), "run-1")
    return model_version


def _registry_rows(con) -> dict[str, tuple]:
    return {v: (s, p) for v, s, p in con.execute("SELECT version, state, previous_production FROM ml.model_registry").fetchall()}


def _pointer_versions(serving: Path) -> dict[str, str]:
    return {m: e["version"] for m, e in read_pointer(serving)["models"].items()}


def test_promote_then_rollback_round_trip(registry_db, tmp_path):
    con, serving, models = registry_db, tmp_path / "serving", tmp_path / "models"
    v1, v2 = _register(con, models, "ltv", "ltv-1"), _register(con, models, "ltv", "ltv-2")
    churn = _register(con, models, "churn", "churn-1")

    registry.promote(con, serving, "ltv", "ltv-1", "first")
    registry.promote(con, serving, "churn", "churn-1", "first churn")
    assert _registry_rows(con) == {"ltv-1": ("production", None), "ltv-2": ("candidate", None),
                                   "churn-1": ("production", None)}
    assert _pointer_versions(serving) == {"ltv": "ltv-1", "churn": "churn-1"}

    registry.promote(con, serving, "ltv", "ltv-2", "better")

    assert _registry_rows(con) == {"ltv-1": ("retired", None), "ltv-2": ("production", "ltv-1"),
                                   "churn-1": ("production", None)}
    assert production_version(serving, "ltv") == v2
    assert read_pointer(serving)["models"]["ltv"] == {"version": "ltv-2", "path": str(v2.path)}
    assert registry.production(con, "ltv") == ("ltv-2", str(v2.path))
    with pytest.raises(registry.RegistryError, match="already the production ltv model"):
        registry.promote(con, serving, "ltv", "ltv-2", "again")
    with pytest.raises(registry.RegistryError, match="no ltv version 'ltv-9'"):
        registry.promote(con, serving, "ltv", "ltv-9", "unknown")

    assert registry.rollback(con, serving, "ltv") == ("ltv-2", "ltv-1")

    assert {v: s for v, (s, _) in _registry_rows(con).items()} == {"ltv-1": "production", "ltv-2": "retired",
                                                                   "churn-1": "production"}
    assert production_version(serving, "ltv") == v1
    assert production_version(serving, "churn") == churn
    assert "rollback from ltv-2 to ltv-1" in read_pointer(serving)["reason"]
    with pytest.raises(registry.RegistryError, match="nothing to roll back to"):
        registry.rollback(con, serving, "ltv")
    with pytest.raises(registry.RegistryError, match="nothing to roll back to"):
        registry.rollback(con, serving, "churn")
    assert production_version(serving, "ltv") == v1  # a refused rollback changes nothing

    history = con.execute(
        "SELECT version, state, reason FROM ml.model_state_history WHERE model = 'ltv' ORDER BY changed_at, rowid"
    ).fetchall()
    assert [row for row in history if row[0] == "ltv-1"] == [
        ("ltv-1", "candidate", "trained"), ("ltv-1", "production", "first"),
        ("ltv-1", "retired", "replaced by ltv-2"), ("ltv-1", "production", "rollback from ltv-2")]
    assert [row for row in history if row[0] == "ltv-2"] == [
        ("ltv-2", "candidate", "trained"), ("ltv-2", "production", "better"), ("ltv-2", "retired", "rolled back to ltv-1")]
    assert con.execute("SELECT model, count(*) FROM ml.model_registry WHERE state = 'production' GROUP BY ALL "
                       "ORDER BY ALL").fetchall() == [("churn", 1), ("ltv", 1)]


def test_rollback_without_production_raises(registry_db, tmp_path):
    _register(registry_db, tmp_path / "models", "ltv", "ltv-1")
    with pytest.raises(registry.RegistryError, match="no production ltv model to roll back"):
        registry.rollback(registry_db, tmp_path / "serving", "ltv")
    assert not pointer_path(tmp_path / "serving").exists()


# --- never no forecast ----------------------------------------------------------------------------------


def test_before_any_training_btyd_serves_the_first_predictions(shop):
    from mlsys_assets.features.assets import customer_features
    from mlsys_assets.predictions.assets import customer_predictions

    day = shop.query("SELECT max(delivery_date) FROM raw.transactions")[0][0].isoformat()
    shop.materialize([customer_features], partition_key=day)

    result = shop.materialize([customer_predictions], partition_key=day)

    assert result.success
    served = _served(shop)
    assert set(served) == {"ltv", "churn"} and all("-btyd-" in v for v in served.values())
    assert {state for v in served.values() for state in [_states(shop)[v][0]]} == {"production"}
    scored = shop.frame(
        "SELECT p.predicted_spend, p.churn_probability, p.ltv_version, f.btyd_expected_spend, f.btyd_p_no_purchase "
        "FROM predictions.customer_predictions p JOIN features.customer_features f USING (as_of, customer_id)")
    assert len(scored) > 100 and set(scored["ltv_version"]) == {served["ltv"]}
    assert np.allclose(scored["predicted_spend"], scored["btyd_expected_spend"].fillna(0.0))
    assert np.allclose(scored["churn_probability"], scored["btyd_p_no_purchase"].fillna(1.0))
    # A later training replaces it through the gate as usual; the classic versions stay in the registry.
    assert shop.query("SELECT count(*) FROM ml.model_registry WHERE kind = 'btyd'")[0][0] == 2


def test_a_reason_shows_values_that_differ_when_they_agree_to_four_decimals():
    from mlsys_assets.ml.gate import _distinct

    assert _distinct(0.85571, 0.85573) == ("0.85571", "0.85573")
    assert _distinct(101.5, 101.0) == ("101.5000", "101.0000")
