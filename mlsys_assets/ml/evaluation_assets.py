"""ML layer, judging: backtest evaluation against the baselines, and the gate with its BTYD fallback."""

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from mlsys_assets.features.snapshot import FEATURES
from mlsys_assets.metadata import markdown_table, report_link
from mlsys_assets.ml import registry
from mlsys_assets.ml.assets import (
    MODEL_ASSETS,
    REFERENCE_ROWS,
    TRAINING_EXAMPLES,
    code_version,
    example_lineage,
    load_examples,
    reference_sample,
    upstream_metadata,
)
from mlsys_assets.ml.backtest import matured_by
from mlsys_assets.ml.baselines import baseline_forecasts
from mlsys_assets.ml.gate import SERVE_BTYD, GateDecision, gate_decision
from mlsys_assets.ml.model_report import (
    decision_text,
    gate_metrics_markdown,
    headline_metadata,
    metrics_markdown,
    model_report_path,
    record_decision,
    served_metadata,
    write_model_reports,
)
from mlsys_assets.ml.model_store import ModelVersion, save_version, version_from_path
from mlsys_assets.ml.scoring import ProductionModels
from mlsys_assets.ml.targets import TARGETS
from mlsys_assets.resources import WAREHOUSE_POOL, ForecastOracle, LandingZone, Warehouse

MODEL_EVALUATION, MODEL_REGISTRY = AssetKey(["ml", "model_evaluation"]), AssetKey(["ml", "model_registry"])


def _cutoff_frames(warehouse: Warehouse, cutoffs: list[dt.date], horizon: int):
    """Per cutoff: its customers' examples, and the examples known by then (for the naive churn rates)."""
    with warehouse.connect(read_only=True) as con:
        tests = con.execute("SELECT * FROM ml.training_examples WHERE as_of IN (SELECT unnest(?::DATE[])) "
                            "ORDER BY as_of, customer_id", [cutoffs]).df()
        known = con.execute("SELECT as_of, churned, tx_30, tx_90, tx_180, tx_365 FROM ml.training_examples").df()
    for cutoff in cutoffs:
        stamp = pd.Timestamp(cutoff)
        yield cutoff, tests[tests["as_of"] == stamp], matured_by(known, cutoff, horizon)


def _backtest_forecasts(warehouse: Warehouse, versions: dict[str, str]) -> pd.DataFrame:
    with warehouse.connect(read_only=True) as con:
        return con.execute("SELECT model, cutoff, customer_id, candidate FROM ml.backtest_predictions "
                           "WHERE version IN (SELECT unnest(?::VARCHAR[]))", [list(versions.values())]).df()


def _metric_rows(cutoff, test, forecasts: dict[str, dict[str, np.ndarray]], versions: dict) -> list[tuple]:
    rows = []
    for scorer, by_target in forecasts.items():
        for name, values in by_target.items():
            target = TARGETS[name]
            for metric, value in target.metrics(test[target.label].to_numpy(float), values).items():
                rows.append((name, scorer, versions.get((scorer, name)), cutoff, metric, value))
    return rows


def evaluate_backtest(warehouse: Warehouse, candidates: dict[str, str], cutoffs: list[dt.date], horizon: int,
                      oracle: ForecastOracle) -> tuple[pd.DataFrame, dict]:
    """Metrics of every scorer at every cutoff (cutoff = NaT: the mean), and the newest cutoff's forecasts."""
    backtests = _backtest_forecasts(warehouse, candidates)
    versions = {("candidate", name): version for name, version in candidates.items()}
    rows, newest = [], {}
    for cutoff, test, known in _cutoff_frames(warehouse, cutoffs, horizon):
        forecasts = {"candidate": {}}
        for name in candidates:
            mine = backtests[(backtests["model"] == name) & (backtests["cutoff"] == pd.Timestamp(cutoff))]
            forecasts["candidate"][name] = mine.set_index("customer_id")["candidate"].reindex(test["customer_id"]).to_numpy()
        forecasts.update(baseline_forecasts(test, known, horizon))
        truth = oracle.forecasts(test, cutoff, horizon)
        if truth:
            forecasts["oracle"] = truth
        rows += _metric_rows(cutoff, test, forecasts, versions)
        newest = {"test": test, "forecasts": forecasts}
    table = pd.DataFrame(rows, columns=["model", "scorer", "version", "cutoff", "metric", "value"])
    means = table.groupby(["model", "scorer", "metric"], as_index=False).agg(
        version=("version", "first"), value=("value", lambda v: float(np.nanmean(v)) if v.notna().any() else np.nan))
    return pd.concat([table, means.assign(cutoff=pd.NaT)], ignore_index=True), newest


def _production_rows(warehouse: Warehouse) -> list[dict]:
    """The production CatBoost versions' own backtest means (their cards), for the 'not worse' rule."""
    rows = []
    with warehouse.connect(read_only=True) as con:
        for name in TARGETS:
            current = registry.production(con, name)
            card = version_from_path(Path(current[1])).card() if current else {}
            for metric, value in card.get("metrics", {}).get("backtest", {}).items():
                if card.get("kind") == "catboost":
                    rows.append({"model": name, "scorer": "production", "version": current[0], "cutoff": pd.NaT,
                                 "metric": metric, "value": value})
    return rows


@asset(
    key=MODEL_EVALUATION,
    group_name="ml",
    deps=[*MODEL_ASSETS.values(), TRAINING_EXAMPLES],
    pool=WAREHOUSE_POOL,
    kinds={"duckdb"},
    description=(
        "Rolling-origin backtest: at every cutoff, the candidates' forecasts (each model fitted only on what was "
        "known then) beside the classic baselines (naive: last H days; historical average rate; BG/NBD + "
        "Gamma-Gamma) and, on simulated data, the oracle; per cutoff and the mean. Spend: RMSE, MAE, tie-averaged "
        "Gini and top-10% capture, aggregate bias. Churn: ROC-AUC, PR-AUC, Brier, calibration error."
    ),
    metadata={"dagster/table_name": "ml.model_evaluation"},
)
def model_evaluation(
    context: AssetExecutionContext, warehouse: Warehouse, landing: LandingZone, oracle: ForecastOracle
) -> MaterializeResult:
    cutoffs, horizon, _ = example_lineage(context)
    candidates = {name: str(upstream_metadata(context, key)["version"]) for name, key in MODEL_ASSETS.items()}
    table, newest = evaluate_backtest(warehouse, candidates, cutoffs, horizon, oracle)
    production = pd.DataFrame(_production_rows(warehouse), columns=table.columns)
    table = pd.concat([table, production], ignore_index=True) if len(production) else table
    with warehouse.connect() as con:
        registry.ensure_tables(con)
        con.register("_evaluation_frame", table)
        con.execute(
            "INSERT INTO ml.model_evaluation (evaluation_id, evaluated_at, holdout_as_of, model, scorer, version, "
            "metric, value, cutoff) SELECT ?, now(), ?, model, scorer, version, metric, value, cutoff::DATE "
            "FROM _evaluation_frame", [context.run_id, cutoffs[-1]])
        con.unregister("_evaluation_frame")
    test = newest["test"]
    reports = write_model_reports(landing.layout.reports, landing.layout.models, candidates, table, newest, {
        "evaluation": context.run_id, "backtest cutoffs": ", ".join(str(c) for c in cutoffs),
        "customers at the newest cutoff": str(len(test))})
    headline, undefined = headline_metadata(table)
    return MaterializeResult(metadata={
        "evaluation_id": context.run_id,
        "backtest_cutoffs": MetadataValue.json([str(c) for c in cutoffs]),
        "newest_cutoff": str(cutoffs[-1]),
        "customers_at_newest_cutoff": len(test),
        **{name: MetadataValue.float(value) for name, value in headline.items()},
        # Stable names: a metric with no value this time is left out of the plots and named here.
        "metrics_not_defined": MetadataValue.text(", ".join(undefined) or "none"),
        "candidates": MetadataValue.json(candidates),
        **{f"{name}_model_report": report_link(path, landing.layout.reports) for name, path in reports.items()},
        "metrics": MetadataValue.md(metrics_markdown(table)),
        "gate_metrics_by_cutoff": MetadataValue.md(gate_metrics_markdown(table)),
    })


class PromotionGateConfig(Config):
    approval: str = Field(default="auto", description="'auto' promotes a passing candidate; 'manual' waits for "
                          "`mlsys models promote VERSION` (BG/NBD serves a target that has nothing yet).")
    tolerance: float = Field(default=0.02, description="How much worse than the production CatBoost model's backtest "
                             "a candidate may be on each ranking metric (absolute).")
    max_abs_bias_pct: float = Field(default=10.0, description="Largest |aggregate spend bias| (percent, backtest mean) "
                                    "a candidate may have, unless BG/NBD's own is larger.")
    min_improvement: float = Field(default=0.005, description="How much better (relative) than BG/NBD + Gamma-Gamma a "
                                   "candidate must be on its error metric (LTV RMSE, churn Brier) to serve.")


def _btyd_version(context: AssetExecutionContext, warehouse: Warehouse, landing: LandingZone, name: str,
                  metrics: pd.DataFrame, lineage: dict) -> ModelVersion:
    """A servable BG/NBD + Gamma-Gamma version of one target (registry.btyd_card), with this backtest's
    lineage and the classic model's own metrics, and the monitoring reference."""
    target = TARGETS[name]
    cutoffs = [dt.date.fromisoformat(day) for day in lineage["backtest_cutoffs"]]
    sample, tests = load_examples(warehouse, REFERENCE_ROWS, cutoffs)
    newest = tests[tests["as_of"] == pd.Timestamp(cutoffs[-1])]
    mine = metrics[(metrics["model"] == name) & (metrics["scorer"] == "bgnbd")]
    at = {"backtest": mine["cutoff"].isna(), "holdout": mine["cutoff"] == pd.Timestamp(cutoffs[-1])}
    days = sorted(sample["as_of"].dt.date.unique())
    card = registry.btyd_card(
        name, lineage.get("label_window_days"),
        training_window={"first_as_of": str(days[0]), "last_as_of": str(days[-1])},
        holdout_as_of=str(cutoffs[-1]), backtest_cutoffs=[str(c) for c in cutoffs],
        source_partitions=lineage.get("source_partitions"),
        metrics={key: dict(zip(mine.loc[rows, "metric"], mine.loc[rows, "value"])) for key, rows in at.items()},
        code_version=code_version(), trained_at=dt.datetime.now(dt.timezone.utc).isoformat(),
        dagster_run_id=context.run_id,
    )
    reference = reference_sample(sample, target.btyd_forecast(sample[target.btyd_column]), newest,
                                 target.btyd_forecast(newest[target.btyd_column]), list(FEATURES), target.label, 7)
    return save_version(landing.layout.models, name, None, card, reference)


def _decide(con, name: str, version: str, metrics: pd.DataFrame, config: PromotionGateConfig) -> tuple[GateDecision, str | None, str]:
    """The gate's decision for one target, and what serves it now: (decision, production version, its kind)."""
    mine = metrics[metrics["model"] == name]
    value = {(r.scorer, r.metric): r.value for r in mine[mine["cutoff"].isna()].itertuples()}
    by_cutoff: dict[str, dict] = {}
    for r in mine[mine["cutoff"].notna()].itertuples():
        by_cutoff.setdefault(str(pd.Timestamp(r.cutoff).date()), {})[(r.scorer, r.metric)] = r.value
    current = registry.production(con, name)
    card = version_from_path(Path(current[1])).card() if current else {}
    kind = card.get("kind", "catboost") if current else "none"
    production_backtest = card.get("metrics", {}).get("backtest") if kind == "catboost" else None
    decision = gate_decision(TARGETS[name], value, production_backtest, config.tolerance, config.max_abs_bias_pct,
                             config.min_improvement, by_cutoff)
    return decision, current[0] if current else None, kind


def _outcome(decision: GateDecision, approval: str, current_kind: str) -> str:
    """promote | btyd | wait | keep: what the registry does with a target after its gate."""
    if decision.passed:
        if approval == "auto":
            return "promote"
        return "wait" if current_kind != "none" else "wait+btyd"
    if decision.action == SERVE_BTYD and current_kind != "btyd":
        return "btyd"
    return "keep" if current_kind != "none" else "btyd"


def _apply_gate(context, config, warehouse, landing, candidates, metrics, lineage) -> list[tuple]:
    plans = []
    with warehouse.connect() as con:
        registry.ensure_tables(con)
        for name, version in candidates.items():
            decision, current, kind = _decide(con, name, version, metrics, config)
            if current == version:
                plans.append((name, version, "already production", decision, None))
                continue
            registry.record_gate(con, name, version, decision.passed, decision.action, decision.reason)
            registry.supersede_unevaluated(con, name, keep=version)
            plans.append((name, version, _outcome(decision, config.approval, kind), decision, None))
    # BTYD versions are written outside the warehouse connection (they read examples for their reference).
    plans = [(n, v, o, d, _btyd_version(context, warehouse, landing, n, metrics, lineage) if "btyd" in o else None)
             for n, v, o, d, _ in plans]
    decisions = []
    with warehouse.connect() as con:
        for name, version, outcome, decision, fallback in plans:
            reason = decision.reason
            if fallback is not None:
                registry.register_candidate(con, fallback, fallback.card(), context.run_id)
                # The fallback carries the decision that made it serve, as its reason does.
                registry.record_gate(con, name, fallback.version, True, decision.action, f"fallback: {reason}")
                registry.promote(con, landing.layout.serving, name, fallback.version,
                                 f"BG/NBD + Gamma-Gamma serves: the CatBoost candidate {version} did not pass ({reason})",
                                 write=False)
                outcome = f"BG/NBD + Gamma-Gamma serves ({fallback.version})" + (
                    "; candidate awaits approval" if outcome.startswith("wait") else "")
            elif outcome == "promote":
                registry.promote(con, landing.layout.serving, name, version, f"passed the gate: {reason}", write=False)
                outcome = "promoted"
            elif outcome == "wait":
                outcome = "awaiting approval (mlsys models promote)"
            elif outcome == "keep":
                outcome = "rejected; production keeps serving"
            decisions.append((name, version, outcome, decision))
        if any(p[2] == "promote" or p[4] is not None for p in plans):
            registry.write_pointer_from_table(con, landing.layout.serving, "; ".join(f"{d[0]}: {d[2]}" for d in decisions))
    return decisions


def _loadable(landing: LandingZone, warehouse: Warehouse, cutoffs: list[dt.date]) -> list[str]:
    """Problems of the production pointer: both targets must load and score the newest cutoff's rows."""
    try:
        models = ProductionModels.load(landing.layout.serving)
        with warehouse.connect(read_only=True) as con:
            newest = con.execute("SELECT * FROM ml.training_examples WHERE as_of = ? ORDER BY customer_id LIMIT 100",
                                 [cutoffs[-1]]).df()
        scores = models.score(newest)
        if not np.isfinite(scores[["predicted_spend", "churn_probability"]].to_numpy()).all():
            return ["the production models give non-finite forecasts"]
    except Exception as exc:  # the check must report, not crash, whatever is wrong with the files
        return [str(exc)]
    return []


@asset(
    key=MODEL_REGISTRY,
    group_name="ml",
    deps=[MODEL_EVALUATION],
    pool=WAREHOUSE_POOL,
    kinds={"duckdb"},
    description=(
        "The promotion gate, per target, on the backtest: a CatBoost candidate that matches or beats BG/NBD + "
        "Gamma-Gamma on every gate metric (LTV: RMSE, Gini, top-10% capture, bias; churn: ROC-AUC, Brier), beats "
        "naive and historical and is not worse than production's backtest beyond a tolerance is promoted; where "
        "it cannot, BG/NBD + Gamma-Gamma serves the target, so there is always a forecast at least as good as the "
        "classic one. Both targets change in one write of the production pointer."
    ),
    metadata={"dagster/table_name": "ml.model_registry"},
    check_specs=[AssetCheckSpec("production_model_loadable", asset=MODEL_REGISTRY, blocking=True,
                                description="The production pointer names a version of each model that loads and forecasts.")],
)
def model_registry(
    context: AssetExecutionContext, config: PromotionGateConfig, warehouse: Warehouse, landing: LandingZone
) -> MaterializeResult:
    evaluation = upstream_metadata(context, MODEL_EVALUATION)
    cutoffs, _, lineage = example_lineage(context)
    with warehouse.connect(read_only=True) as con:
        metrics = con.execute("SELECT model, scorer, metric, value, cutoff FROM ml.model_evaluation "
                              "WHERE evaluation_id = ?", [evaluation["evaluation_id"]]).df()
    decisions = _apply_gate(context, config, warehouse, landing, dict(evaluation["candidates"]), metrics, lineage)
    with warehouse.connect(read_only=True) as con:
        production = {m: registry.production(con, m) for m in TARGETS}
        history = markdown_table(con, "SELECT model, version, kind, state, state_changed_at, gate_reason "
                                      "FROM ml.model_registry WHERE state <> 'evaluated' ORDER BY created_at DESC LIMIT 10")
    problems = _loadable(landing, warehouse, cutoffs)
    served, undefined = served_metadata({m: version_from_path(Path(p[1])).card() for m, p in production.items() if p},
                                        metrics)
    return MaterializeResult(
        metadata={
            **_decision_metadata(landing, decisions, production),
            "production": MetadataValue.json({m: (p[0] if p else None) for m, p in production.items()}),
            **{f"{m}_served_by": ("btyd" if p and "-btyd-" in p[0] else "catboost" if p else "none")
               for m, p in production.items()},
            **{name: MetadataValue.float(value) for name, value in served.items()},
            "served_metrics_not_defined": MetadataValue.text(", ".join(undefined) or "none"),
            "approval_mode": config.approval,
            "recent_versions": history,
            "production_pointer": MetadataValue.path(str(landing.layout.production_pointer)),
        },
        check_results=[AssetCheckResult(check_name="production_model_loadable", passed=not problems,
                                        metadata={"problems": MetadataValue.json(problems)})],
    )


def _decision_metadata(landing: LandingZone, decisions: list[tuple], production: dict) -> dict[str, MetadataValue]:
    """Per target, the decision in full as text (a Markdown table cell is cut off in the UI), also written into
    the candidate's report, and the link to that report."""
    metadata = {}
    for name, version, outcome, decision in decisions:
        text = decision_text(decision.action, production[name][0] if production[name] else None, version, outcome,
                             decision.reason)
        metadata[f"{name}_decision"] = MetadataValue.text(text)
        report = model_report_path(landing.layout.reports, name, version)
        if record_decision(report, text, decision.passed):
            metadata[f"{name}_model_report"] = report_link(report, landing.layout.reports)
    return metadata
