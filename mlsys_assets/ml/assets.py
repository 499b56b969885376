"""ML layer, training: the labelled example grid and the CatBoost candidates with their backtests.

Lineage: each downstream asset reads what its upstream asset produced (from that asset's latest
materialization in the Dagster instance), never "the newest file" on disk. Evaluation and the gate
are in evaluation_assets.py.
"""

import datetime as dt
import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
from catboost import CatBoost
from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from mlsys_assets.features.snapshot import CATEGORICAL_FEATURES, FEATURES
from mlsys_assets.metadata import markdown_table, report_link
from mlsys_assets.ml import registry
from mlsys_assets.ml.backtest import (
    ModelSpec,
    choose_postprocessing,
    cutoff_days,
    leave_one_out_forecasts,
    matured_by,
    run_backtest,
)
from mlsys_assets.ml.charts import importance_chart
from mlsys_assets.ml.grid import MAX_GRID_ROWS, build_grid, grid_customers
from mlsys_assets.ml.model_report import model_report_path
from mlsys_assets.ml.model_store import ModelVersion, save_version
from mlsys_assets.ml.targets import TARGETS, Target
from mlsys_assets.resources import WAREHOUSE_POOL, ForecastSettings, LandingZone, Warehouse

PACKAGE_DIR = Path(__file__).parent.parent
TRAINING_EXAMPLES = AssetKey(["ml", "training_examples"])
LTV_MODEL, CHURN_MODEL = AssetKey(["ml", "ltv_model"]), AssetKey(["ml", "churn_model"])
MODEL_ASSETS = {"ltv": LTV_MODEL, "churn": CHURN_MODEL}
# CatBoost's fit time grows linearly with rows while the metrics stop improving long before a million
# customers' grid (bench/pipeline.py, docs/benchmarks.md): training uses a fixed-size sample.
MAX_TRAINING_ROWS = 250_000
REFERENCE_ROWS = 100_000


def code_version() -> str:
    """Hash of the feature and model code (plus the git commit when there is one)."""
    digest = hashlib.sha256()
    for path in sorted([*PACKAGE_DIR.glob("features/*.*"), *PACKAGE_DIR.glob("ml/*.*")]):
        if path.suffix in (".py", ".sql"):
            digest.update(path.read_bytes())
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PACKAGE_DIR, capture_output=True,
                                text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{commit or 'nogit'}+{digest.hexdigest()[:12]}"


def upstream_metadata(context: AssetExecutionContext, key: AssetKey) -> dict:
    """The metadata of the upstream asset's current materialization."""
    event = context.instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        raise Failure(description=f"{key.to_user_string()} has never been materialized; materialize it first")
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def example_lineage(context: AssetExecutionContext) -> tuple[list[dt.date], int, dict]:
    """The backtest cutoffs and horizon of the training examples this step builds on, and their metadata."""
    metadata = upstream_metadata(context, TRAINING_EXAMPLES)
    if "backtest_cutoffs" not in metadata:
        raise Failure(description="ml/training_examples predates backtests: rematerialize it (`mlsys train`)")
    cutoffs = [dt.date.fromisoformat(day) for day in metadata["backtest_cutoffs"]]
    return cutoffs, int(metadata["label_window_days"]), metadata


def load_examples(warehouse: Warehouse, max_rows: int, cutoffs: list[dt.date]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(sample, tests): at most max_rows examples chosen by a hash of the key (so the same examples
    always give the same sample) to train on, and every example of the cutoff days to forecast."""
    with warehouse.connect() as con:
        sample = con.execute(
            "SELECT * FROM (SELECT * FROM ml.training_examples ORDER BY hash(customer_id, as_of) LIMIT ?) "
            "ORDER BY as_of, customer_id", [int(max_rows)]).df()
        tests = con.execute("SELECT * FROM ml.training_examples WHERE as_of IN (SELECT unnest(?::DATE[])) "
                            "ORDER BY as_of, customer_id", [cutoffs]).df()
    return sample, tests


class TrainingExamplesConfig(Config):
    grid_step_days: int = Field(default=14, ge=1, description="Days between as-of days of the training grid.")
    min_history_days: int = Field(default=90, ge=1, description="History before the first as-of day (features need it).")
    backtest_cutoffs: int = Field(default=4, ge=1, description="At most this many backtest cutoffs, spaced by H "
                                  "(as many as the history allows up to this).")
    max_grid_rows: int = Field(default=MAX_GRID_ROWS, ge=1, description="When the grid (a row per as-of day for every "
                               "customer known by then) would have more rows, it covers a deterministic sample of "
                               "customers (by a hash of the id) that makes about this many.")


def example_grid(first_day: dt.date, last_day: dt.date, horizon: int, config: TrainingExamplesConfig) -> list[dt.date]:
    """As-of days every grid_step_days, from min_history_days after the first delivery to the newest day
    whose label window (A, A+H] has fully arrived."""
    grid: list[dt.date] = []
    as_of = last_day - dt.timedelta(days=horizon)
    while as_of >= first_day + dt.timedelta(days=config.min_history_days):
        grid.insert(0, as_of)
        as_of -= dt.timedelta(days=config.grid_step_days)
    return grid


def _grid_or_refuse(first_day, last_day, horizon: int, config: TrainingExamplesConfig) -> tuple[list, list]:
    grid = example_grid(first_day, last_day, horizon, config)
    cutoffs = cutoff_days(grid, horizon, config.backtest_cutoffs)
    if not cutoffs:
        needed = config.min_history_days + 2 * horizon + config.grid_step_days
        raise Failure(description=(
            f"not enough history for training: {first_day} … {last_day} ({(last_day - first_day).days + 1} days) gives "
            f"{len(grid)} grid day(s) and no backtest cutoff with horizon {horizon}, min_history_days "
            f"{config.min_history_days}, grid_step_days {config.grid_step_days}; that needs about {needed} days of "
            "deliveries. Deliver more history, or lower them: `mlsys train --min-history-days N --grid-step-days N` "
            "(the horizon is MLSYS_HORIZON_DAYS)"))
    return grid, cutoffs


@asset(
    key=TRAINING_EXAMPLES,
    group_name="ml",
    deps=[AssetDep(["features", "customer_daily"]), AssetDep(["raw", "customers"]), AssetDep(["raw", "transactions"])],
    pool=WAREHOUSE_POOL,
    kinds={"duckdb"},
    description=(
        "Labelled examples on a grid of as-of days A whose label window (A, A+H] has fully arrived: features "
        "as of A (the same snapshot definition as serving), spend and purchases in (A, A+H], churned = no "
        "purchase. The metadata names the backtest cutoffs (spaced by H); split = 'holdout' marks the newest one."
    ),
    metadata={"dagster/table_name": "ml.training_examples"},
)
def training_examples(
    context: AssetExecutionContext, config: TrainingExamplesConfig, warehouse: Warehouse, forecast: ForecastSettings
) -> MaterializeResult:
    horizon = forecast.horizon_days
    with warehouse.connect() as con:
        first_day, last_day = con.execute("SELECT min(delivery_date), max(delivery_date) FROM raw.transactions").fetchone()
        if first_day is None:
            raise Failure(description="raw.transactions is empty: run `mlsys ingest` first")
        grid, cutoffs = _grid_or_refuse(first_day, last_day, horizon, config)
        customers, sampled, customers_table = grid_customers(con, grid, config.max_grid_rows)
        build_grid(con, grid, [cutoffs[-1]], horizon, sampled, customers_table)
        rows = dict(con.execute("SELECT split, count(*) FROM ml.training_examples GROUP BY split").fetchall())
        summary = markdown_table(
            con,
            """SELECT as_of, count(*) AS customers, round(avg(churned), 3) AS churn_rate,
                      round(avg(label_spend), 2) AS mean_spend FROM ml.training_examples GROUP BY ALL ORDER BY as_of""",
        )
    return MaterializeResult(
        metadata={
            "dagster/row_count": sum(rows.values()),
            "grid_days": len(grid),
            "grid_as_of": f"{grid[0]} … {grid[-1]}",
            "backtest_cutoffs": MetadataValue.json([str(day) for day in cutoffs]),
            "backtest_cutoff_count": len(cutoffs),
            "newest_cutoff_rows": rows.get("holdout", 0),
            "label_window_days": horizon,
            "grid_customers": sampled,
            "customers": customers,
            "source_partitions": f"{first_day} … {last_day}",
            "by_as_of_day": summary,
        }
    )


class ModelConfig(Config):
    iterations: int = Field(default=400, ge=1, description="Boosting rounds.")
    learning_rate: float = 0.05
    depth: int = 4
    l2_leaf_reg: float = 3.0
    one_hot_max_size: int = Field(default=16, ge=1, description="Categorical features with at most this many values "
                                  "are one-hot encoded; larger ones get CatBoost's target statistics (CTRs).")
    leaf_estimation_iterations: int = Field(default=1, ge=1, description="Newton steps per leaf value (CatBoost "
                                            "takes 10 for Logloss; one was as good against the true future, and faster).")
    seed: int = Field(default=7, description="Training is deterministic for a given seed.")
    max_training_rows: int = Field(default=MAX_TRAINING_ROWS, ge=1, description="Train on a deterministic sample of "
                                   "at most this many examples (all of them when there are fewer).")
    boost_from_btyd: bool = Field(default=True, description="Start boosting from the BG/NBD + Gamma-Gamma forecast, so "
                                  "CatBoost learns a correction of the classic model (docs/models.md says why).")


class LtvModelConfig(ModelConfig):
    # Chosen by measurement (bench/ltv_loss.py, docs/models.md): on zero-heavy spend Tweedie 1.2 ranked
    # best (Gini, top-decile capture) and kept the total closest; RMSE had the worst MAE and ranking.
    loss_function: str = Field(default=TARGETS["ltv"].default_loss, description="CatBoost loss for spend.")


class ChurnModelConfig(ModelConfig):
    loss_function: str = Field(default=TARGETS["churn"].default_loss, description="CatBoost loss for churn.")


def model_spec(target: Target, config: ModelConfig) -> ModelSpec:
    params = {
        "loss_function": config.loss_function, "iterations": config.iterations,
        "learning_rate": config.learning_rate, "depth": config.depth, "l2_leaf_reg": config.l2_leaf_reg,
        "one_hot_max_size": config.one_hot_max_size, "leaf_estimation_iterations": config.leaf_estimation_iterations,
        "random_seed": config.seed, "allow_writing_files": False, "verbose": False,
    }
    return ModelSpec(target, params, list(FEATURES), list(CATEGORICAL_FEATURES), config.boost_from_btyd)


def _stamp(model: CatBoost, spec: ModelSpec, train: pd.DataFrame) -> None:
    """CatBoost stamps a random guid and the wall-clock time into model.cbm; fixed values derived from
    the inputs make the file itself reproducible (same data, code and seed -> the same bytes)."""
    inputs = json.dumps([spec.params, spec.features, spec.boost_from_btyd, len(train),
                         float(train[spec.target.label].sum()), str(train["as_of"].max())])
    metadata = model.get_metadata()
    metadata["model_guid"] = hashlib.sha256(inputs.encode()).hexdigest()[:32]
    metadata["train_finish_time"] = str(train["as_of"].max().date())


def backtest_metrics(target: Target, backtest: pd.DataFrame, column: str) -> tuple[dict[str, float], dict[str, dict]]:
    """(mean over cutoffs, per cutoff) of the target's metrics for one forecast column."""
    by_cutoff = {str(cutoff): target.metrics(part["actual"].to_numpy(), part[column].to_numpy())
                 for cutoff, part in backtest.groupby("cutoff")}
    mean = {metric: float(np.nanmean([m[metric] for m in by_cutoff.values()])) for metric in next(iter(by_cutoff.values()))}
    return mean, by_cutoff


def _card(spec: ModelSpec, model: CatBoost, train: pd.DataFrame, post: dict, metrics: dict, lineage: dict,
          context: AssetExecutionContext, role: str) -> dict:
    days = sorted(train["as_of"].dt.date.unique())
    return {
        "kind": "catboost",
        "role": role,
        "catboost_class": type(model).__name__,
        "params": spec.params,
        "features": spec.features,
        "categorical_features": spec.categorical,
        "target": spec.target.label,
        "boost_from": "btyd" if spec.boost_from_btyd else None,
        "postprocessing": post,
        "training_window": {"first_as_of": str(days[0]), "last_as_of": str(days[-1]), "as_of_days": [str(d) for d in days]},
        "holdout_as_of": lineage["backtest_cutoffs"][-1],
        "backtest_cutoffs": list(lineage["backtest_cutoffs"]),
        "label_window_days": lineage.get("label_window_days"),
        "source_partitions": lineage.get("source_partitions"),
        "training_rows": len(train),
        "metrics": metrics,
        "feature_importance": dict(zip(spec.features, map(float, model.get_feature_importance()))),
        "code_version": code_version(),
        "seed": spec.params["random_seed"],
        "trained_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "dagster_run_id": context.run_id,
    }


def reference_sample(train: pd.DataFrame, train_predictions: np.ndarray, newest: pd.DataFrame,
                     newest_predictions: np.ndarray, features: list[str], label: str, seed: int) -> pd.DataFrame:
    """What monitoring compares against: features, target and the model's predictions for a sample of the
    training rows (split "train") and the newest cutoff's customers (split "holdout", forecast out of
    sample by the backtest: the newest cross-section the model was validated on)."""
    columns = ["as_of", "customer_id", *features, label]
    parts = []
    for frame, predictions, split in ((train, train_predictions, "train"), (newest, newest_predictions, "holdout")):
        part = frame[columns].assign(prediction=predictions, split=split)
        parts.append(part.sample(REFERENCE_ROWS, random_state=seed) if len(part) > REFERENCE_ROWS else part)
    return pd.concat(parts, ignore_index=True)


def _save_backtest(warehouse: Warehouse, version: ModelVersion, backtest: pd.DataFrame) -> None:
    with warehouse.connect() as con:
        registry.ensure_tables(con)
        con.register("_backtest_frame", backtest)
        con.execute("INSERT INTO ml.backtest_predictions SELECT ?, ?, cutoff, customer_id, actual, catboost, btyd, "
                    "candidate FROM _backtest_frame", [version.model, version.version])
        con.unregister("_backtest_frame")


def _train(context: AssetExecutionContext, target: Target, config: ModelConfig, warehouse: Warehouse,
           landing: LandingZone) -> MaterializeResult:
    cutoffs, horizon, lineage = example_lineage(context)
    spec = model_spec(target, config)
    sample, tests = load_examples(warehouse, config.max_training_rows, cutoffs)
    backtest, fitted = run_backtest(spec, sample, tests, cutoffs, horizon)
    backtest["candidate"] = leave_one_out_forecasts(target, backtest)
    post = choose_postprocessing(target, backtest)
    mean, by_cutoff = backtest_metrics(target, backtest, "candidate")
    newest = tests[tests["as_of"] == pd.Timestamp(cutoffs[-1])]
    metrics = {"backtest": mean, "by_cutoff": by_cutoff, "holdout": by_cutoff[str(cutoffs[-1])]}
    layout = landing.layout
    # The evaluated version: the configuration fitted at the newest cutoff (what the backtest graded last).
    evaluated_train = matured_by(sample, cutoffs[-1], horizon)
    _stamp(fitted[cutoffs[-1]], spec, evaluated_train)
    evaluated = save_version(layout.models, target.name, fitted[cutoffs[-1]],
                             _card(spec, fitted[cutoffs[-1]], evaluated_train, post, metrics, lineage, context, "evaluated"))
    # The refit: the same settings on every matured example, so the served model has seen the newest windows.
    refit = spec.fit(sample)
    _stamp(refit, spec, sample)
    card = {**_card(spec, refit, sample, post, metrics, lineage, context, "refit"), "refit_of": evaluated.version}
    forecaster = spec.forecaster(refit, post["blend_weight"], post["scale"])
    reference = reference_sample(sample, forecaster.predict(sample), newest,
                                 backtest.loc[backtest["cutoff"] == cutoffs[-1], "candidate"].to_numpy(),
                                 spec.features, target.label, config.seed)
    version = save_version(layout.models, target.name, refit, card, reference)
    _save_backtest(warehouse, version, backtest)
    with warehouse.connect() as con:
        registry.ensure_tables(con)
        registry.register_candidate(con, evaluated, evaluated.card(), context.run_id, state="evaluated")
        registry.register_candidate(con, version, version.card(), context.run_id, refit_of=evaluated.version)
    chart = importance_chart(spec.features, refit.get_feature_importance(), f"{target.name} feature importance",
                             layout.reports / "evaluation" / version.version / "feature_importance.png")
    return MaterializeResult(metadata={
        "version": version.version,
        "evaluated_version": evaluated.version,
        "path": MetadataValue.path(str(version.path)),
        "training_rows": len(sample),
        "training_window": f"{card['training_window']['first_as_of']} … {card['training_window']['last_as_of']}",
        "backtest_cutoffs": MetadataValue.json([str(c) for c in cutoffs]),
        "blend_weight": post["blend_weight"],
        "bias_scale": round(post["scale"], 4),
        **{f"backtest_{metric}": round(value, 4) for metric, value in mean.items() if np.isfinite(value)},
        "source_partitions": card["source_partitions"],
        "code_version": card["code_version"],
        "params": MetadataValue.json(spec.params),
        # Links, not inline Markdown images (which the UI shows only behind "[Show Markdown]").
        "feature_importance": report_link(chart, layout.reports),
        "model_report": report_link(model_report_path(layout.reports, target.name, version.version), layout.reports),
    })


@asset(
    key=LTV_MODEL, group_name="ml", deps=[TRAINING_EXAMPLES], pool=WAREHOUSE_POOL, kinds={"catboost"},
    description="Candidate LTV model: CatBoostRegressor (Tweedie 1.2) boosted from the BG/NBD + Gamma-Gamma spend "
                "forecast, backtested at every cutoff (each fit only on what was known then), then refit on every "
                "matured example. Writes the evaluated and the refit version and registers both.",
)
def ltv_model(context: AssetExecutionContext, config: LtvModelConfig, warehouse: Warehouse, landing: LandingZone):
    return _train(context, TARGETS["ltv"], config, warehouse, landing)


@asset(
    key=CHURN_MODEL, group_name="ml", deps=[TRAINING_EXAMPLES], pool=WAREHOUSE_POOL, kinds={"catboost"},
    description="Candidate churn model: CatBoostClassifier of no purchase in the next H days, boosted from BG/NBD's "
                "exact P(no purchase), backtested at every cutoff, then refit on every matured example.",
)
def churn_model(context: AssetExecutionContext, config: ChurnModelConfig, warehouse: Warehouse, landing: LandingZone):
    return _train(context, TARGETS["churn"], config, warehouse, landing)
