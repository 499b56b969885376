"""Every job and schedule of mlsys; the sensors that start the jobs are in landing.py and drift.py."""

from dagster import (
    AssetSelection,
    DagsterInstance,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    in_process_executor,
    schedule,
)

from mlsys_assets.features.assets import customer_daily, customer_features
from mlsys_assets.ingest.assets import raw_customers, raw_transactions
from mlsys_assets.ml.assets import churn_model, ltv_model, training_examples
from mlsys_assets.ml.evaluation_assets import model_evaluation, model_registry
from mlsys_assets.monitoring.assets import (
    data_quality_report,
    feature_drift_report,
    model_performance_report,
    prediction_drift_report,
)
from mlsys_assets.partitions import daily_partitions
from mlsys_assets.predictions.assets import customer_predictions, online_features, retention_targets
from mlsys_assets.settings import retraining_cron

# Both ingest jobs are one quick warehouse step: in-process avoids paying a process start-up per run.
ingest_transactions_job = define_asset_job(
    "ingest_transactions",
    selection=AssetSelection.assets(raw_transactions),
    partitions_def=daily_partitions,
    executor_def=in_process_executor,
    description="Load landing transaction files into raw.transactions for a day or a range of days.",
)
ingest_customers_job = define_asset_job(
    "ingest_customers",
    selection=AssetSelection.assets(raw_customers),
    executor_def=in_process_executor,
    description="Load the customer exports into raw.customers.",
)

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
          description="Backs up automation every morning at 06:00 UTC: scores the newest delivered day (the data's "
                      "clock, not the wall clock) unless it is scored already.")
def daily_scoring_schedule(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    return newest_day_to_score(context.instance)


def newest_day_to_score(instance: DagsterInstance) -> RunRequest | SkipReason:
    """A run for the newest delivered day when its predictions are missing; otherwise why there is none.
    Reads partition status from the Dagster instance, never the warehouse."""
    delivered = instance.get_materialized_partitions(raw_transactions.key)
    if not delivered:
        return SkipReason("nothing delivered yet: no raw/transactions partition is loaded")
    newest = max(delivered)  # ISO dates sort as text
    if newest in instance.get_materialized_partitions(customer_predictions.key):
        return SkipReason(f"the newest delivered day {newest} is scored already; nothing new to score")
    return RunRequest(run_key=f"daily_scoring:{newest}", partition_key=newest)


monitoring_job = define_asset_job(
    "monitoring_reports",
    selection=AssetSelection.assets(data_quality_report, feature_drift_report, prediction_drift_report,
                                    model_performance_report),
    partitions_def=daily_partitions,
    executor_def=in_process_executor,
    description="The day's Evidently reports: data quality, feature drift, prediction drift, matured performance.",
)
