"""Automation: every job, schedule and sensor, above the asset layers (no asset module imports this package).

`jobs.py` has the jobs and schedules, `landing.py` the landing sensor, `drift.py` drift_retraining, `tags.py`
the run tags they and the CLI use.
"""

from dagster import AssetSelection, AutomationConditionSensorDefinition, DefaultSensorStatus

from mlsys_assets.automation.drift import drift_retraining
from mlsys_assets.automation.jobs import (
    daily_scoring_job,
    daily_scoring_schedule,
    features_job,
    ingest_customers_job,
    ingest_transactions_job,
    monitoring_job,
    online_store_job,
    retraining_job,
    weekly_retraining,
)
from mlsys_assets.automation.landing import landing_sensor

JOBS = [ingest_transactions_job, ingest_customers_job, features_job, retraining_job, daily_scoring_job,
        online_store_job, monitoring_job]
SCHEDULES = [weekly_retraining, daily_scoring_schedule]
SENSORS = [
    landing_sensor,
    drift_retraining,
    # Dagster ships its automation sensor stopped; this one runs from the start.
    AutomationConditionSensorDefinition(
        "automation", target=AssetSelection.all(), default_status=DefaultSensorStatus.RUNNING
    ),
]
