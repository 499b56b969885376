"""ML layer: training examples, CatBoost candidates, holdout evaluation against baselines, and the gate.

Lineage: each downstream asset reads the version its upstream asset produced (from that asset's latest
materialization in the Dagster instance), never "the newest file" on disk.
"""

import datetime as dt
import hashlib
import json
import subprocess
from pathlib import Path
from string import Template

import numpy as np
import pandas as pd
from catboost import CatBoostClassifier, CatBoostRegressor, Pool
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
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

from mlsys_assets.features.snapshot import CATEGORICAL_FEATURES, FEATURES, WINDOWS_DAYS, build_snapshot
from mlsys_assets.metadata import markdown_table
from mlsys_assets.ml import registry
from mlsys_assets.ml.charts import calibration_chart, gains_chart, importance_chart, markdown_image
from mlsys_assets.ml.metrics import churn_metrics, spend_metrics
from mlsys_assets.ml.model_store import ModelVersion, read_pointer, save_version, version_from_path
from mlsys_assets.ml.scoring import model_frame
from mlsys_assets.resources import WAREHOUSE_POOL, ForecastSettings, LandingZone, Warehouse, transaction

SQL_DIR = Path(__file__).parent
LABELS_SQL = Template((SQL_DIR / "labels.sql").read_text())
EXAMPLES_SQL = (SQL_DIR / "examples.sql").read_text()
PACKAGE_DIR = SQL_DIR.parent
TRAINING_EXAMPLES = AssetKey(["ml", "training_examples"])
LTV_MODEL, CHURN_MODEL = AssetKey(["ml", "ltv_model"]), AssetKey(["ml", "churn_model"])
MODEL_EVALUATION, MODEL_REGISTRY = AssetKey(["ml", "model_evaluation"]), AssetKey(["ml", "model_registry"])
LABEL_COLUMNS = ("label_spend", "label_transactions", "churned")


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


def _window_column(prefix: str, horizon_days: int) -> tuple[str, float]:
    """The snapshot window matching the horizon, and the factor that scales it to the horizon."""
    days = min(WINDOWS_DAYS, key=lambda w: abs(w - horizon_days))
    return f"{prefix}_{days}", horizon_days / days


# CatBoost's fit time grows linearly with rows while the holdout metrics stop improving long before a
# million customers' grid (bench/pipeline.py, docs/benchmarks.md): training uses a fixed-size sample.
MAX_TRAINING_ROWS = 250_000
GRID_CHUNK_ROWS = 2_000_000


def load_examples(warehouse: Warehouse, split: str | None = None, max_train_rows: int | None = None) -> pd.DataFrame:
    """Training examples in (as_of, customer_id) order; with max_train_rows, the train split is a sample of
    that many rows, chosen by a hash of the key so the same examples always give the same sample."""
    train = "SELECT * FROM ml.training_examples WHERE split = 'train'"
    if max_train_rows is not None:
        train = f"({train} ORDER BY hash(customer_id, as_of) LIMIT {int(max_train_rows)})"
    holdout = "SELECT * FROM ml.training_examples WHERE split = 'holdout'"
    parts = {"train": [train], "holdout": [holdout], None: [train, holdout]}[split]
    with warehouse.connect() as con:
        return con.execute(" UNION ALL ".join(parts) + " ORDER BY as_of, customer_id").df()


class TrainingExamplesConfig(Config):
    grid_step_days: int = Field(default=14, description="Days between as-of days of the training grid.")
    holdout_as_of_days: int = Field(default=1, description="How many of the latest grid days form the holdout.")
    min_history_days: int = Field(default=90, description="History before the first as-of day (features need it).")


@asset(
    key=TRAINING_EXAMPLES,
    group_name="ml",
    deps=[AssetDep(["features", "customer_daily"]), AssetDep(["raw", "customers"]), AssetDep(["raw", "transactions"])],
    pool=WAREHOUSE_POOL,
    kinds={"duckdb"},
    description=(
        "Labelled examples on a grid of as-of days A whose label window (A, A+H] has fully arrived: features "
        "as of A (the same snapshot definition as serving), spend and purchases in (A, A+H], churned = no "
        "purchase. The latest grid days are the holdout; training uses only days whose label window ends by "
        "the holdout's as-of day, so nothing of the holdout's future reaches training."
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
            raise Failure(description="raw.transactions is empty: ingest some days first")
        grid: list[dt.date] = []
        as_of = last_day - dt.timedelta(days=horizon)
        while as_of >= first_day + dt.timedelta(days=config.min_history_days):
            grid.insert(0, as_of)
            as_of -= dt.timedelta(days=config.grid_step_days)
        holdout = grid[-config.holdout_as_of_days:]
        train = [a for a in grid if a + dt.timedelta(days=horizon) <= min(holdout)] if holdout else []
        if len(train) < 2:
            raise Failure(
                description=f"not enough history for training: {first_day} … {last_day} gives {len(grid)} grid day(s) "
                f"with H={horizon}, min_history_days={config.min_history_days}, grid_step_days={config.grid_step_days}; "
                f"need at least {config.min_history_days + 2 * horizon + config.grid_step_days} days of deliveries"
            )
        days = train + holdout
        # The grid has one row per customer and as-of day (~11M at a million customers): it is built a few
        # days at a time so that only about GRID_CHUNK_ROWS rows are in pandas at once (for the BTYD fits).
        customers = con.execute("SELECT count(DISTINCT customer_id) FROM raw.transactions").fetchone()[0]
        chunk_days = max(1, GRID_CHUNK_ROWS // max(customers, 1))
        # Built beside the current table and swapped in at the end: a failure keeps the old examples.
        con.execute("DROP TABLE IF EXISTS ml.training_examples_next")
        labels_sql = LABELS_SQL.substitute(horizon=horizon)
        for first in range(0, len(days), chunk_days):
            chunk = days[first:first + chunk_days]
            snapshots = build_snapshot(con, chunk, horizon)
            con.execute(labels_sql)
            con.register("_snapshots", snapshots)
            con.execute(("INSERT INTO ml.training_examples_next " if first else
                         "CREATE TABLE ml.training_examples_next AS ") + EXAMPLES_SQL, [holdout])
            con.unregister("_snapshots")
            del snapshots
        with transaction(con):
            con.execute("DROP TABLE IF EXISTS ml.training_examples")
            con.execute("ALTER TABLE ml.training_examples_next RENAME TO training_examples")
        rows = dict(con.execute("SELECT split, count(*) FROM ml.training_examples GROUP BY split").fetchall())
        summary = markdown_table(
            con,
            """SELECT split, as_of, count(*) AS customers, round(avg(churned), 3) AS churn_rate,
                      round(avg(label_spend), 2) AS mean_spend FROM ml.training_examples GROUP BY ALL ORDER BY as_of""",
        )
    return MaterializeResult(
        metadata={
            "dagster/row_count": sum(rows.values()),
            "train_rows": rows.get("train", 0),
            "holdout_rows": rows.get("holdout", 0),
            "train_as_of": f"{train[0]} … {train[-1]} ({len(train)} days)",
            "holdout_as_of": ", ".join(map(str, holdout)),
            "label_window_days": horizon,
            "source_partitions": f"{first_day} … {last_day}",
            "by_as_of_day": summary,
        }
    )


REFERENCE_ROWS = 100_000


def reference_sample(
    train: pd.DataFrame, holdout: pd.DataFrame, features: list[str], train_predictions: np.ndarray,
    holdout_predictions: np.ndarray, target: str, seed: int,
) -> pd.DataFrame:
    """What monitoring compares against: features, target and the model's own predictions, for a sample of
    the training rows (split "train", a year of as-of days) and the holdout day (split "holdout", the newest
    cross-section the model was validated on)."""
    columns = ["as_of", "customer_id", *features, target]
    parts = []
    for frame, predictions, split in ((train, train_predictions, "train"), (holdout, holdout_predictions, "holdout")):
        part = frame[columns].assign(prediction=predictions, split=split)
        parts.append(part.sample(REFERENCE_ROWS, random_state=seed) if len(part) > REFERENCE_ROWS else part)
    return pd.concat(parts, ignore_index=True)


class ModelConfig(Config):
    iterations: int = Field(default=400, description="Boosting rounds.")
    learning_rate: float = 0.05
    depth: int = 4
    l2_leaf_reg: float = 3.0
    seed: int = Field(default=7, description="Training is deterministic for a given seed.")
    max_training_rows: int = Field(default=MAX_TRAINING_ROWS, description="Train on a deterministic sample of at "
                                   "most this many examples (all of them when there are fewer).")


class LtvModelConfig(ModelConfig):
    # Chosen by measurement (bench/ltv_loss.py, docs/models.md): on zero-heavy spend Tweedie 1.2 ranked
    # best (Gini, top-decile capture) and kept the total closest; RMSE had the worst MAE and ranking.
    loss_function: str = Field(default="Tweedie:variance_power=1.2", description="CatBoost loss for spend.")


class ChurnModelConfig(ModelConfig):
    loss_function: str = Field(default="Logloss", description="CatBoost loss for churn.")


def _train(
    context: AssetExecutionContext, model_name: str, config: ModelConfig, warehouse: Warehouse, landing: LandingZone
) -> MaterializeResult:
    examples = load_examples(warehouse, max_train_rows=config.max_training_rows)
    train, holdout = examples[examples["split"] == "train"], examples[examples["split"] == "holdout"]
    features = list(FEATURES)
    params = {
        "loss_function": config.loss_function, "iterations": config.iterations,
        "learning_rate": config.learning_rate, "depth": config.depth, "l2_leaf_reg": config.l2_leaf_reg,
        "random_seed": config.seed, "allow_writing_files": False, "verbose": False,
    }
    if model_name == "ltv":
        model, target = CatBoostRegressor(**params), "label_spend"
    else:
        model, target = CatBoostClassifier(**params), "churned"
    train_matrix = model_frame(train, features, list(CATEGORICAL_FEATURES))
    model.fit(Pool(train_matrix, train[target], cat_features=list(CATEGORICAL_FEATURES)))
    holdout_matrix = model_frame(holdout, features, list(CATEGORICAL_FEATURES))
    if model_name == "ltv":
        holdout_predictions, train_predictions = model.predict(holdout_matrix), model.predict(train_matrix)
    else:
        holdout_predictions = model.predict_proba(holdout_matrix)[:, 1]
        train_predictions = model.predict_proba(train_matrix)[:, 1]
    metrics = (spend_metrics if model_name == "ltv" else churn_metrics)(holdout[target].to_numpy(), holdout_predictions)
    # CatBoost stamps a random guid and the wall-clock time into model.cbm; fixed values derived from
    # the inputs make the file itself reproducible (same data, code and seed -> the same bytes).
    inputs = json.dumps([params, features, len(train), float(train[target].sum()), str(train["as_of"].max())])
    metadata = model.get_metadata()
    metadata["model_guid"] = hashlib.sha256(inputs.encode()).hexdigest()[:32]
    metadata["train_finish_time"] = str(train["as_of"].max().date())
    importance = model.get_feature_importance()
    train_days = sorted(train["as_of"].dt.date.unique())
    holdout_day = holdout["as_of"].dt.date.max()
    training_metadata = upstream_metadata(context, TRAINING_EXAMPLES)
    card = {
        "kind": type(model).__name__,
        "params": params,
        "features": features,
        "categorical_features": list(CATEGORICAL_FEATURES),
        "target": target,
        "training_window": {"first_as_of": str(train_days[0]), "last_as_of": str(train_days[-1]),
                            "as_of_days": [str(d) for d in train_days]},
        "holdout_as_of": str(holdout_day),
        "label_window_days": training_metadata.get("label_window_days"),
        "source_partitions": training_metadata.get("source_partitions"),
        "training_rows": len(train),
        "metrics": {"holdout": metrics},
        "feature_importance": dict(zip(features, map(float, importance))),
        "code_version": code_version(),
        "seed": config.seed,
        "trained_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "dagster_run_id": context.run_id,
    }
    layout = landing.layout
    version = save_version(
        layout.models, model_name, model, card,
        reference_sample(train, holdout, features, train_predictions, holdout_predictions, target, config.seed),
    )
    with warehouse.connect() as con:
        registry.ensure_tables(con)
        registry.register_candidate(con, version, version.card(), context.run_id)
    chart = importance_chart(features, importance, f"{model_name} feature importance",
                             layout.reports / "evaluation" / version.version / "feature_importance.png")
    return MaterializeResult(
        metadata={
            "version": version.version,
            "path": MetadataValue.path(str(version.path)),
            "training_rows": len(train),
            "training_window": f"{train_days[0]} … {train_days[-1]} ({len(train_days)} as-of days)",
            "holdout_as_of": str(holdout_day),
            "source_partitions": card["source_partitions"],
            "code_version": card["code_version"],
            "params": MetadataValue.json(params),
            "holdout_metrics": MetadataValue.json({k: round(v, 4) for k, v in metrics.items()}),
            "feature_importance": MetadataValue.md(markdown_image(chart, "feature importance")),
        }
    )


@asset(
    key=LTV_MODEL, group_name="ml", deps=[TRAINING_EXAMPLES], pool=WAREHOUSE_POOL, kinds={"catboost"},
    description="Candidate LTV model: CatBoostRegressor (Tweedie loss, variance power 1.2) forecasting each customer's spend in the next "
                "H days. Each run writes an immutable version (model.cbm + card.json) and registers it as a candidate.",
)
def ltv_model(context: AssetExecutionContext, config: LtvModelConfig, warehouse: Warehouse, landing: LandingZone):
    return _train(context, "ltv", config, warehouse, landing)


@asset(
    key=CHURN_MODEL, group_name="ml", deps=[TRAINING_EXAMPLES], pool=WAREHOUSE_POOL, kinds={"catboost"},
    description="Candidate churn model: CatBoostClassifier forecasting the probability of no purchase in the next "
                "H days. Each run writes an immutable version and registers it as a candidate.",
)
def churn_model(context: AssetExecutionContext, config: ChurnModelConfig, warehouse: Warehouse, landing: LandingZone):
    return _train(context, "churn", config, warehouse, landing)


def baseline_forecasts(holdout: pd.DataFrame, train: pd.DataFrame, horizon_days: int) -> dict[str, dict[str, np.ndarray]]:
    """Classic forecasts from the same as-of features: {scorer: {"spend": ..., "churn": ...}}."""
    spend_column, spend_scale = _window_column("spend", horizon_days)
    tx_column, _ = _window_column("tx", horizon_days)
    # Naive churn: the churn rate of training customers with and without a purchase in the last window.
    active_rate = train.loc[train[tx_column] > 0, "churned"].mean()
    inactive_rate = train.loc[train[tx_column] == 0, "churned"].mean()
    # Historical average rate; the 30-day floor keeps a brand-new customer's one purchase from exploding.
    observed_days = np.maximum(holdout["days_since_signup"].fillna(0).to_numpy(float), 30.0)
    daily_spend = holdout["spend_lifetime"].to_numpy(float) / observed_days
    daily_purchases = holdout["tx_lifetime"].to_numpy(float) / observed_days
    return {
        "naive": {
            "spend": holdout[spend_column].to_numpy(float) * spend_scale,
            "churn": np.where(holdout[tx_column] > 0, active_rate, inactive_rate),
        },
        "historical": {"spend": daily_spend * horizon_days, "churn": np.exp(-daily_purchases * horizon_days)},
        "bgnbd": {
            "spend": holdout["btyd_expected_spend"].fillna(0).to_numpy(float),
            # Customers without a purchase yet have no BG/NBD forecast; the naive inactive rate stands in.
            "churn": holdout["btyd_p_no_purchase"].fillna(inactive_rate).to_numpy(float),
        },
    }


def oracle_forecasts(holdout: pd.DataFrame, simulation_dir: Path, horizon_days: int) -> dict[str, np.ndarray] | None:
    """The simulator's truth: what the best possible model would forecast (demo data only)."""
    truth_file = simulation_dir / "ground_truth.parquet"
    if not truth_file.exists():
        return None
    from mlsys_assets.simulate import oracle_expectations

    as_of = holdout["as_of"].dt.date.max()
    oracle = oracle_expectations(pd.read_parquet(truth_file), as_of, horizon_days).set_index("customer_id")
    known = holdout["customer_id"].isin(oracle.index)
    if known.mean() < 0.99:
        return None  # not the simulated shop's customers
    # The few unknown ids are the simulator's deliberately dirty rows: customers that do not exist.
    matched = oracle.reindex(holdout["customer_id"])
    return {"spend": matched["expected_spend"].fillna(0.0).to_numpy(float),
            "churn": matched["p_no_purchase"].fillna(1.0).to_numpy(float)}


def _score(version: ModelVersion, holdout: pd.DataFrame) -> np.ndarray | None:
    card = version.card()
    if not set(card["features"]) <= set(holdout.columns):
        return None  # an older feature set: cannot be scored on today's snapshot
    model = version.load()
    matrix = model_frame(holdout, card["features"], card.get("categorical_features", []))
    return model.predict(matrix) if version.model == "ltv" else model.predict_proba(matrix)[:, 1]


@asset(
    key=MODEL_EVALUATION,
    group_name="ml",
    deps=[LTV_MODEL, CHURN_MODEL, TRAINING_EXAMPLES],
    pool=WAREHOUSE_POOL,
    kinds={"duckdb"},
    description=(
        "Holdout metrics of the candidates beside the production models and the classic baselines (naive: last "
        "H days; historical average rate; BG/NBD + Gamma-Gamma) and, on simulated data, the oracle. Spend: RMSE, "
        "MAE, normalized Gini, top-10% revenue capture, aggregate bias. Churn: ROC-AUC, PR-AUC, Brier, "
        "calibration error. Gains, calibration and importance charts are in the metadata."
    ),
    metadata={"dagster/table_name": "ml.model_evaluation"},
)
def model_evaluation(
    context: AssetExecutionContext, warehouse: Warehouse, landing: LandingZone, forecast: ForecastSettings
) -> MaterializeResult:
    layout = landing.layout
    candidates = {
        "ltv": version_from_path(Path(upstream_metadata(context, LTV_MODEL)["path"])),
        "churn": version_from_path(Path(upstream_metadata(context, CHURN_MODEL)["path"])),
    }
    examples = load_examples(warehouse, max_train_rows=MAX_TRAINING_ROWS)
    train, holdout = examples[examples["split"] == "train"], examples[examples["split"] == "holdout"]
    holdout_as_of = holdout["as_of"].dt.date.max()
    actual_spend, churned = holdout["label_spend"].to_numpy(float), holdout["churned"].to_numpy(int)

    forecasts: dict[str, dict[str, np.ndarray]] = {}
    versions: dict[tuple[str, str], str] = {}
    for model_name, candidate in candidates.items():
        forecasts.setdefault("candidate", {})[model_name] = _score(candidate, holdout)
        versions[("candidate", model_name)] = candidate.version
    with warehouse.connect() as con:
        registry.ensure_tables(con)
        for model_name in candidates:
            current = registry.production(con, model_name)
            if current:
                scored = _score(ModelVersion(model_name, current[0], Path(current[1])), holdout)
                if scored is not None:
                    forecasts.setdefault("production", {})[model_name] = scored
                    versions[("production", model_name)] = current[0]
    renamed = {"spend": "ltv", "churn": "churn"}
    for scorer, values in baseline_forecasts(holdout, train, forecast.horizon_days).items():
        forecasts[scorer] = {renamed[k]: v for k, v in values.items()}
    oracle = oracle_forecasts(holdout, layout.simulation, forecast.horizon_days)
    if oracle:
        forecasts["oracle"] = {renamed[k]: v for k, v in oracle.items()}

    rows = []
    for scorer, by_model in forecasts.items():
        if "ltv" in by_model:
            for metric, value in spend_metrics(actual_spend, by_model["ltv"]).items():
                rows.append(("ltv", scorer, versions.get((scorer, "ltv")), metric, value))
        if "churn" in by_model:
            for metric, value in churn_metrics(churned, by_model["churn"]).items():
                rows.append(("churn", scorer, versions.get((scorer, "churn")), metric, value))
    table = pd.DataFrame(rows, columns=["model", "scorer", "version", "metric", "value"])
    with warehouse.connect() as con:
        registry.ensure_tables(con)
        con.register("_evaluation_frame", table)
        con.execute(
            "INSERT INTO ml.model_evaluation SELECT ?, now(), ?, model, scorer, version, metric, value FROM _evaluation_frame",
            [context.run_id, holdout_as_of],
        )
        con.unregister("_evaluation_frame")

    folder = layout.reports / "evaluation" / candidates["ltv"].version
    gains = gains_chart(actual_spend, {s: f["ltv"] for s, f in forecasts.items() if "ltv" in f}, folder / "gains.png")
    calibration = calibration_chart(
        churned, {s: f["churn"] for s, f in forecasts.items() if "churn" in f}, folder / "calibration.png"
    )
    wide = table.pivot_table(index=["model", "metric"], columns="scorer", values="value").round(4)
    scorers = [s for s in ("candidate", "production", "naive", "historical", "bgnbd", "oracle") if s in wide.columns]
    wide = wide[scorers].reset_index()
    lines = ["| model | metric | " + " | ".join(scorers) + " |", "|---|---|" + "---|" * len(scorers)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in wide.itertuples(index=False)]
    return MaterializeResult(
        metadata={
            "evaluation_id": context.run_id,
            "holdout_as_of": str(holdout_as_of),
            "holdout_customers": len(holdout),
            "candidates": MetadataValue.json({k: v.version for k, v in candidates.items()}),
            "metrics": MetadataValue.md("\n".join(lines)),
            "gains_chart": MetadataValue.md(markdown_image(gains, "gains chart")),
            "calibration_chart": MetadataValue.md(markdown_image(calibration, "calibration chart")),
            "report_folder": MetadataValue.path(str(folder)),
        }
    )


class PromotionGateConfig(Config):
    approval: str = Field(default="auto", description="'auto' promotes a passing candidate; 'manual' waits for "
                          "`mlsys models promote VERSION`.")
    require_beat_bgnbd: bool = Field(default=False, description="Also require beating BG/NBD + Gamma-Gamma.")
    tolerance: float = Field(default=0.02, description="How much worse than production a candidate may be on each "
                             "gate metric (absolute).")
    max_abs_bias_pct: float = Field(default=25.0, description="Largest aggregate spend bias (percent) a candidate may have.")


GATE_METRICS = {"ltv": ("gini", "top10_capture"), "churn": ("roc_auc",)}


def gate_decision(metrics: pd.DataFrame, model_name: str, config: PromotionGateConfig) -> tuple[bool, str]:
    """Does the candidate pass? `metrics` has columns scorer, metric, value for one model."""
    value = {(r.scorer, r.metric): r.value for r in metrics.itertuples()}
    baselines = ["naive", "historical"] + (["bgnbd"] if config.require_beat_bgnbd else [])
    failures, passes = [], []
    for metric in GATE_METRICS[model_name]:
        mine = value.get(("candidate", metric), float("nan"))
        if np.isnan(mine):
            failures.append(f"{metric} could not be computed on the holdout")
            continue
        for baseline in baselines:
            theirs = value.get((baseline, metric))
            if theirs is not None and not np.isnan(theirs) and not mine > theirs:
                failures.append(f"{metric} {mine:.4f} does not beat {baseline} {theirs:.4f}")
        produced = value.get(("production", metric))
        if produced is not None and not np.isnan(produced) and mine < produced - config.tolerance:
            failures.append(f"{metric} {mine:.4f} is worse than production {produced:.4f} beyond the tolerance {config.tolerance}")
        passes.append(f"{metric} {mine:.4f}")
    if model_name == "ltv":
        bias = value.get(("candidate", "bias_pct"), float("nan"))
        if np.isnan(bias) or abs(bias) > config.max_abs_bias_pct:
            failures.append(f"aggregate bias {bias:.1f}% is beyond ±{config.max_abs_bias_pct}%")
    if failures:
        return False, "; ".join(failures)
    return True, f"beats {', '.join(baselines)} on " + ", ".join(passes) + (
        "; within tolerance of production" if any(s == "production" for s, _ in value) else "")


@asset(
    key=MODEL_REGISTRY,
    group_name="ml",
    deps=[MODEL_EVALUATION],
    pool=WAREHOUSE_POOL,
    kinds={"duckdb"},
    description=(
        "The promotion gate and the registry (ml.model_registry): a candidate that beats the naive and historical "
        "baselines on Gini, top-10% capture (LTV) and ROC-AUC (churn), keeps its aggregate bias in bounds and is "
        "not worse than production beyond a tolerance is promoted (the production pointer is rewritten "
        "atomically); a failing one is rejected with its reasons and production keeps serving."
    ),
    metadata={"dagster/table_name": "ml.model_registry"},
    check_specs=[AssetCheckSpec("production_model_loadable", asset=MODEL_REGISTRY, blocking=True,
                                description="The production pointer names a version of each model whose files load and predict.")],
)
def model_registry(
    context: AssetExecutionContext, config: PromotionGateConfig, warehouse: Warehouse, landing: LandingZone
) -> MaterializeResult:
    evaluation = upstream_metadata(context, MODEL_EVALUATION)
    candidates = dict(evaluation["candidates"])
    layout = landing.layout
    decisions = []
    with warehouse.connect() as con:
        registry.ensure_tables(con)
        metrics = con.execute(
            "SELECT model, scorer, metric, value FROM ml.model_evaluation WHERE evaluation_id = ?",
            [evaluation["evaluation_id"]],
        ).df()
        for model_name, version in candidates.items():
            passed, reason = gate_decision(metrics[metrics["model"] == model_name], model_name, config)
            current = registry.production(con, model_name)
            if current and current[0] == version:
                # The gate re-ran on the version that already serves: nothing to decide.
                decisions.append((model_name, version, "already production", reason))
                continue
            registry.record_gate(con, model_name, version, passed, reason)
            if passed and config.approval == "auto":
                registry.promote(con, layout.serving, model_name, version, f"passed the gate: {reason}")
                outcome = "promoted"
            elif passed:
                outcome = "awaiting approval (mlsys models promote)"
            else:
                outcome = "rejected"
            decisions.append((model_name, version, outcome, reason))
        production = {m: registry.production(con, m) for m in ("ltv", "churn")}
        history = markdown_table(
            con, "SELECT model, version, state, state_changed_at, gate_reason FROM ml.model_registry "
                 "ORDER BY created_at DESC LIMIT 10")
    loadable, problems = True, []
    try:
        pointer = read_pointer(layout.serving)
        for model_name in ("ltv", "churn"):
            entry = pointer["models"].get(model_name)
            if entry is None:
                problems.append(f"no production {model_name} model")
                continue
            version = version_from_path(Path(entry["path"]))
            holdout = load_examples(warehouse, "holdout").head(100)
            if _score(version, holdout) is None:
                problems.append(f"{version.version} cannot score today's features")
    except Exception as exc:  # the check must report, not crash, whatever is wrong with the files
        problems.append(str(exc))
    loadable = not problems
    decision_lines = ["| model | version | outcome | reason |", "|---|---|---|---|"]
    decision_lines += [f"| {m} | {v} | {o} | {r} |" for m, v, o, r in decisions]
    return MaterializeResult(
        metadata={
            "decisions": MetadataValue.md("\n".join(decision_lines)),
            "production": MetadataValue.json({m: (p[0] if p else None) for m, p in production.items()}),
            "approval_mode": config.approval,
            "recent_versions": history,
            "production_pointer": MetadataValue.path(str(layout.serving / "production.json")),
        },
        check_results=[AssetCheckResult(check_name="production_model_loadable", passed=loadable,
                                        metadata={"problems": MetadataValue.json(problems)})],
    )
