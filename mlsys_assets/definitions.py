"""The one Dagster `Definitions` of mlsys: `mlsys_assets.definitions:defs`."""

from __future__ import annotations

from pathlib import Path

from dagster import (
    AnchorBasedFilePathMapping,
    Definitions,
    in_process_executor,
    link_code_references_to_git,
    with_source_code_references,
)

from mlsys_assets.automation import JOBS, SCHEDULES, SENSORS
from mlsys_assets.features.assets import customer_daily, customer_features
from mlsys_assets.ingest.assets import raw_customers, raw_transactions
from mlsys_assets.demo_oracle import SimulatedShopOracle
from mlsys_assets.ingest.checks import transactions_freshness
from mlsys_assets.ml.assets import churn_model, ltv_model, training_examples
from mlsys_assets.ml.evaluation_assets import model_evaluation, model_registry
from mlsys_assets.monitoring.assets import (
    data_quality_report,
    feature_drift_report,
    model_performance_report,
    prediction_drift_report,
)
from mlsys_assets.predictions.assets import customer_predictions, online_features, retention_targets
from mlsys_assets.resources import ForecastSettings, LandingZone, MonitoringSettings, Warehouse
from mlsys_assets.settings import horizon_days, source_repository
from mlsys_assets.storage import DataLayout, data_dir

ASSETS = [
    raw_transactions, raw_customers,
    customer_daily, customer_features,
    training_examples, ltv_model, churn_model, model_evaluation, model_registry,
    customer_predictions, retention_targets, online_features,
    data_quality_report, feature_drift_report, prediction_drift_report, model_performance_report,
]


def with_code_links(assets: list) -> list:
    """Each asset's page links to the function that builds it: the local file and line, and the same line in
    the repository when `MLSYS_SOURCE_URL` is set (settings.source_repository)."""
    referenced = with_source_code_references(assets)
    repository = source_repository()
    if repository is None:
        return list(referenced)
    url, branch = repository
    return list(link_code_references_to_git(
        referenced, git_url=url, git_branch=branch,
        file_path_mapping=AnchorBasedFilePathMapping(
            local_file_anchor=Path(__file__), file_anchor_path_in_repository="mlsys_assets/definitions.py"),
    ))


def build_definitions(data_root: Path | str | None = None) -> Definitions:
    layout = DataLayout(Path(data_root) if data_root else data_dir())
    return Definitions(
        assets=with_code_links(ASSETS),
        asset_checks=[transactions_freshness],
        jobs=JOBS,
        schedules=SCHEDULES,
        sensors=SENSORS,
        # Most steps are short warehouse steps serialized by the `warehouse` pool anyway; a process per
        # step would add ~1.6 s plus ~2.8 s of importing these definitions each (bench/pipeline.py,
        # docs/architecture.md#executors). Jobs that gain from parallel processes set their own executor.
        executor=in_process_executor,
        resources={
            "warehouse": Warehouse(path=str(layout.warehouse)),
            "landing": LandingZone(data_dir=str(layout.root)),
            "forecast": ForecastSettings(horizon_days=horizon_days()),
            "settings": MonitoringSettings(),
            # The simulator's truth, shown beside the candidates on a simulated shop (nothing elsewhere).
            "oracle": SimulatedShopOracle(simulation_dir=str(layout.simulation)),
        },
    )


defs = build_definitions()
