"""Jobs and schedules beyond the ingest jobs (which live beside the landing sensor)."""

import datetime as dt

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    define_asset_job,
    in_process_executor,
    schedule,
)

from mlsys_assets.features.assets import customer_daily, customer_features
from mlsys_assets.ml.assets import churn_model, ltv_model, model_evaluation, model_registry, training_examples
from mlsys_assets.monitoring.assets import (
    data_quality_report,
    feature_drift_report,
    model_performance_report,
    prediction_drift_report,
)
from mlsys_assets.partitions import daily_partitions
from mlsys_assets.predictions.assets import customer_predictions, online_features, retention_targets
from mlsys_assets.settings import retraining_cron

# Five steps that each take seconds, serialized by the warehouse pool where they write: in-process.
# (The two model fits could overlap in separate processes, but CatBoost already uses both cores.)
retraining_job = define_asset_job(
    "weekly_retraining",
    selection=AssetSelection.assets(training_examples, ltv_model, churn_model, model_evaluation, model_registry),
    executor_def=in_process_executor,
    description="Training examples -> LTV and churn candidates -> holdout evaluation -> promotion gate.",
)
weekly_retraining = ScheduleDefinition(
    name="weekly_retraining_schedule",
    job=retraining_job,
    cron_schedule=retraining_cron(),
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Retrain, evaluate and gate the models every week (MLSYS_RETRAIN_CRON).",
)
features_job = define_asset_job(
    "refresh_features",
    selection=AssetSelection.assets(customer_daily, customer_features),
    partitions_def=daily_partitions,
    executor_def=in_process_executor,
    description="Rebuild customer_daily and the feature snapshots for a day or a range of days.",
)

daily_scoring_job = define_asset_job(
    "daily_scoring",
    selection=AssetSelection.assets(customer_features, customer_predictions, retention_targets),
    partitions_def=daily_partitions,
    executor_def=in_process_executor,
    description="The day's feature snapshot, predictions for every customer and the retention action list.",
)
online_store_job = define_asset_job(
    "export_online_store",
    selection=AssetSelection.assets(online_features),
    executor_def=in_process_executor,
    description="Export the newest feature snapshot for the API.",
)


@schedule(job=daily_scoring_job, cron_schedule="0 6 * * *", execution_timezone="UTC",
          default_status=DefaultScheduleStatus.RUNNING,
          description="Backs up automation: scores yesterday's snapshot every morning at 06:00 UTC.")
def daily_scoring_schedule(context: ScheduleEvaluationContext) -> RunRequest:
    yesterday = (context.scheduled_execution_time - dt.timedelta(days=1)).date().isoformat()
    return RunRequest(run_key=f"daily_scoring:{yesterday}", partition_key=yesterday)

monitoring_job = define_asset_job(
    "monitoring_reports",
    selection=AssetSelection.assets(data_quality_report, feature_drift_report, prediction_drift_report,
                                    model_performance_report),
    partitions_def=daily_partitions,
    executor_def=in_process_executor,
    description="The day's Evidently reports: data quality, feature drift, prediction drift, matured performance.",
)
