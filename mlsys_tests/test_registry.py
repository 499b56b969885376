"""The promotion gate, the registry's state changes and the production pointer."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from click.testing import CliRunner

from mlsys_assets.cli import main as mlsys_cli
from mlsys_assets.ml import registry
from mlsys_assets.ml.assets import (
    PromotionGateConfig,
    churn_model,
    gate_decision,
    ltv_model,
    model_evaluation,
    model_registry,
)
from mlsys_assets.ml.model_store import (
    ModelVersion,
    NoProductionModelError,
    pointer_path,
    production_version,
    read_pointer,
    write_pointer,
)

WEAK = {"iterations": 1, "depth": 1}


def metrics(values: dict[tuple[str, str], float]) -> pd.DataFrame:
    return pd.DataFrame([{"scorer": s, "metric": m, "value": v} for (s, m), v in values.items()])


def ltv_metrics(**overrides: float) -> pd.DataFrame:
    """A candidate that beats naive and historical on both gate metrics with a small bias; keys like
    `candidate_gini=0.6` override one value, `production_gini=0.8` adds one."""
    values = {
        ("candidate", "gini"): 0.80, ("candidate", "top10_capture"): 0.50, ("candidate", "bias_pct"): 5.0,
        ("naive", "gini"): 0.50, ("naive", "top10_capture"): 0.40, ("naive", "bias_pct"): 30.0,
        ("historical", "gini"): 0.70, ("historical", "top10_capture"): 0.45, ("historical", "bias_pct"): 60.0,
        ("bgnbd", "gini"): 0.75, ("bgnbd", "top10_capture"): 0.48, ("bgnbd", "bias_pct"): -10.0,
    }
    for key, value in overrides.items():
        scorer, metric = key.split("_", 1)
        values[(scorer, metric)] = value
    return metrics(values)


def churn_metrics_frame(**overrides: float) -> pd.DataFrame:
    values = {("candidate", "roc_auc"): 0.85, ("naive", "roc_auc"): 0.75, ("historical", "roc_auc"): 0.80,
              ("bgnbd", "roc_auc"): 0.84, ("candidate", "brier"): 0.5}
    for key, value in overrides.items():
        scorer, metric = key.split("_", 1)
        values[(scorer, metric)] = value
    return metrics(values)


# --- gate_decision -----------------------------------------------------------------------------------


def test_gate_passes_a_candidate_that_beats_naive_and_historical():
    passed, reason = gate_decision(ltv_metrics(), "ltv", PromotionGateConfig())
    assert passed, reason
    assert reason == "beats naive, historical on gini 0.8000, top10_capture 0.5000"

    passed, reason = gate_decision(churn_metrics_frame(), "churn", PromotionGateConfig())
    assert (passed, reason) == (True, "beats naive, historical on roc_auc 0.8500")


@pytest.mark.parametrize(
    ("model_name", "frame", "expected"),
    [
        ("ltv", ltv_metrics(candidate_top10_capture=0.44), ["top10_capture 0.4400 does not beat historical 0.4500"]),
        ("ltv", ltv_metrics(candidate_gini=0.60),
         ["gini 0.6000 does not beat historical 0.7000"]),
        ("ltv", ltv_metrics(candidate_gini=0.40), ["gini 0.4000 does not beat naive 0.5000",
                                                   "gini 0.4000 does not beat historical 0.7000"]),
        ("ltv", ltv_metrics(candidate_gini=0.70), ["gini 0.7000 does not beat historical 0.7000"]),  # a tie is no win
        ("churn", churn_metrics_frame(candidate_roc_auc=0.78), ["roc_auc 0.7800 does not beat historical 0.8000"]),
        ("ltv", ltv_metrics(candidate_gini=float("nan")), ["gini could not be computed on the holdout"]),
    ],
)
def test_gate_fails_naming_the_metric_and_the_baseline(model_name, frame, expected):
    passed, reason = gate_decision(frame, model_name, PromotionGateConfig())
    assert not passed
    assert reason.split("; ") == expected


def test_require_beat_bgnbd_adds_the_btyd_baseline():
    frame = ltv_metrics(candidate_gini=0.74)  # beats naive 0.50 and historical 0.70, not BG/NBD 0.75
    assert gate_decision(frame, "ltv", PromotionGateConfig())[0]

    passed, reason = gate_decision(frame, "ltv", PromotionGateConfig(require_beat_bgnbd=True))

    assert not passed and reason == "gini 0.7400 does not beat bgnbd 0.7500"
    passed, reason = gate_decision(ltv_metrics(), "ltv", PromotionGateConfig(require_beat_bgnbd=True))
    assert passed and reason.startswith("beats naive, historical, bgnbd on ")
    passed, reason = gate_decision(churn_metrics_frame(candidate_roc_auc=0.83), "churn", PromotionGateConfig(require_beat_bgnbd=True))
    assert (passed, reason) == (False, "roc_auc 0.8300 does not beat bgnbd 0.8400")


def test_tolerance_against_production():
    within = ltv_metrics(production_gini=0.815, production_top10_capture=0.51)  # candidate 0.80 / 0.50
    passed, reason = gate_decision(within, "ltv", PromotionGateConfig())
    assert passed and reason.endswith("; within tolerance of production")

    worse = ltv_metrics(production_gini=0.83, production_top10_capture=0.51)
    passed, reason = gate_decision(worse, "ltv", PromotionGateConfig())
    assert (passed, reason) == (False, "gini 0.8000 is worse than production 0.8300 beyond the tolerance 0.02")
    assert gate_decision(worse, "ltv", PromotionGateConfig(tolerance=0.05))[0]

    passed, reason = gate_decision(churn_metrics_frame(production_roc_auc=0.90), "churn", PromotionGateConfig())
    assert (passed, reason) == (False, "roc_auc 0.8500 is worse than production 0.9000 beyond the tolerance 0.02")


@pytest.mark.parametrize(
    ("bias", "limit", "passes"),
    [(25.0, 25.0, True), (-25.0, 25.0, True), (25.1, 25.0, False), (-30.0, 25.0, False), (-30.0, 40.0, True),
     (float("nan"), 25.0, False)],
)
def test_bias_bound(bias, limit, passes):
    passed, reason = gate_decision(ltv_metrics(candidate_bias_pct=bias), "ltv", PromotionGateConfig(max_abs_bias_pct=limit))
    assert passed is passes
    if not passes:
        assert reason == f"aggregate bias {bias:.1f}% is beyond ±{limit}%"


def test_bias_bound_does_not_apply_to_churn():
    frame = churn_metrics_frame(candidate_bias_pct=500.0)
    assert gate_decision(frame, "churn", PromotionGateConfig())[0]


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


def test_weak_candidate_is_rejected_and_production_keeps_serving(shop):
    first = shop.retrain()
    promoted = _versions(first)
    assert {promoted[m]: _states(shop)[promoted[m]][0] for m in promoted} == {v: "production" for v in promoted.values()}
    pointer = pointer_path(shop.layout.serving)
    pointer_bytes = pointer.read_bytes()

    weak = shop.retrain([ltv_model, churn_model, model_evaluation, model_registry], ltv=WEAK, churn=WEAK)

    assert weak.success
    states = _states(shop)
    for model_name, version in _versions(weak).items():
        state, gate_passed, reason = states[version]
        assert (state, gate_passed) == ("rejected", False), (model_name, reason)
        assert "does not beat" in reason or "worse than production" in reason
        assert shop.query("SELECT state, reason FROM ml.model_state_history WHERE version = ? ORDER BY changed_at",
                          [version]) == [("candidate", "trained"), ("rejected", reason)]
        assert states[promoted[model_name]][0] == "production"
    assert pointer.read_bytes() == pointer_bytes
    assert {m: e["version"] for m, e in read_pointer(shop.layout.serving)["models"].items()} == promoted
    assert _check(weak).passed


def test_rerunning_the_gate_without_retraining_keeps_production(shop):
    first = shop.retrain()
    pointer_bytes = pointer_path(shop.layout.serving).read_bytes()

    again = shop.materialize([model_evaluation, model_registry], raise_on_error=False)

    assert again.success
    assert pointer_path(shop.layout.serving).read_bytes() == pointer_bytes
    assert {_states(shop)[v][0] for v in _versions(first).values()} == {"production"}


def test_no_model_ever_passed(shop):
    result = shop.retrain(ltv=WEAK, churn=WEAK, raise_on_error=False)

    assert {state for state, _, _ in _states(shop).values()} == {"rejected"}
    assert not pointer_path(shop.layout.serving).exists()
    assert not _check(result).passed  # nothing serves yet
    for model_name in ("ltv", "churn"):
        with pytest.raises(NoProductionModelError, match="no candidate has passed the promotion gate"):
            production_version(shop.layout.serving, model_name)


def test_production_version_without_any_pointer_or_without_the_model(tmp_path):
    serving = tmp_path / "serving"
    with pytest.raises(NoProductionModelError, match="no candidate has passed the promotion gate"):
        production_version(serving, "ltv")

    write_pointer(serving, {"churn": ModelVersion("churn", "churn-1", tmp_path / "churn-1")}, "test")

    assert production_version(serving, "churn") == ModelVersion("churn", "churn-1", tmp_path / "churn-1")
    with pytest.raises(NoProductionModelError, match="no production ltv model yet: none has passed the promotion gate"):
        production_version(serving, "ltv")


# --- manual approval ---------------------------------------------------------------------------------


def test_manual_approval_waits_for_the_cli(shop):
    result = shop.retrain(gate={"approval": "manual"}, raise_on_error=False)
    versions = _versions(result)

    states = _states(shop)
    for version in versions.values():
        state, gate_passed, reason = states[version]
        assert (state, gate_passed) == ("candidate", True)
        assert reason.startswith("beats naive, historical on ")
    assert not pointer_path(shop.layout.serving).exists()
    decisions = result.asset_materializations_for_node("ml__model_registry")[0].metadata["decisions"].value
    assert decisions.count("awaiting approval") == 2

    runner = CliRunner()
    promoted = runner.invoke(mlsys_cli, ["models", "promote", versions["ltv"], "--data-dir", str(shop.data_dir)])

    assert promoted.exit_code == 0, promoted.output
    assert f"{versions['ltv']} is now the production ltv model" in promoted.output
    assert _states(shop)[versions["ltv"]][0] == "production"
    assert _states(shop)[versions["churn"]][0] == "candidate"
    assert production_version(shop.layout.serving, "ltv").version == versions["ltv"]
    assert set(read_pointer(shop.layout.serving)["models"]) == {"ltv"}
    assert shop.query("SELECT state, reason FROM ml.model_state_history WHERE version = ? ORDER BY changed_at",
                      [versions["ltv"]]) == [("candidate", "trained"), ("production", "promoted by hand")]

    unknown = runner.invoke(mlsys_cli, ["models", "promote", "ltv-19990101T000000-deadbeef", "--data-dir", str(shop.data_dir)])
    assert unknown.exit_code != 0 and "no version 'ltv-19990101T000000-deadbeef'" in unknown.output


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
