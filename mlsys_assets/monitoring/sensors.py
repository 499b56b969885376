"""drift_retraining: a failed drift or performance check starts one retraining, then a cool-down.

It reads check evaluations from the Dagster instance (never the warehouse). The cursor holds the last
event it looked at and when it last triggered, so each alert is seen once and a burst of alerts (three
reports failing on the same day) leads to one retraining; the promotion gate still decides whether the
new model serves.
"""

import json
import time

from dagster import (
    AssetCheckKey,
    AssetKey,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from mlsys_assets.jobs import retraining_job
from mlsys_assets.resources import MonitoringSettings


TRIGGER_TAG = "mlsys/trigger"
ALERT_CHECK_KEYS = [
    AssetCheckKey(AssetKey(["monitoring", asset]), check)
    for asset, check in (("feature_drift_report", "feature_drift"), ("prediction_drift_report", "prediction_drift"),
                         ("model_performance_report", "performance_drop"))
]


def new_alerts(instance, after_id: int) -> list[tuple[int, str]]:
    """(execution id, 'asset:check') of every failed alert check execution newer than after_id."""
    alerts = []
    for key in ALERT_CHECK_KEYS:
        for record in instance.event_log_storage.get_asset_check_execution_history(
            key, limit=100, status={AssetCheckExecutionRecordStatus.FAILED}
        ):
            if record.id > after_id:
                alerts.append((record.id, f"{key.asset_key.to_user_string()}:{key.name}"))
    return sorted(alerts)


def last_drift_retraining(instance) -> float:
    """Start time (epoch seconds) of the newest run tagged as a drift retraining, from any source, or 0."""
    records = instance.get_run_records(filters=RunsFilter(tags={TRIGGER_TAG: "drift_retraining"}), limit=1)
    return records[0].create_timestamp.timestamp() if records else 0.0


@sensor(
    job=retraining_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Starts weekly_retraining when a drift or performance alert fails, at most once per cool-down.",
)
def drift_retraining(context: SensorEvaluationContext, settings: MonitoringSettings) -> SensorResult:
    cursor = json.loads(context.cursor) if context.cursor else {"after": 0, "last_trigger": 0.0}
    alerts = new_alerts(context.instance, cursor["after"])
    if not alerts:
        return SensorResult(skip_reason="no new drift or performance alert", cursor=json.dumps(cursor))
    cursor["after"] = alerts[-1][0]
    # `mlsys monitor` retrains outside this sensor, and a fresh cursor knows of no earlier trigger: the
    # instance's run history is what says when the last drift retraining started.
    last_trigger = max(cursor["last_trigger"], last_drift_retraining(context.instance))
    now = time.time()
    if now - last_trigger < settings.retraining_cooldown_hours * 3600:
        context.log.info("%d alert(s) within the cool-down; not retraining again: %s", len(alerts), alerts)
        return SensorResult(skip_reason="alert(s) within the retraining cool-down", cursor=json.dumps(cursor))
    cursor["last_trigger"] = now
    execution_id, check = alerts[0]
    return SensorResult(
        run_requests=[RunRequest(run_key=f"drift_retraining:{execution_id}",
                                 tags={TRIGGER_TAG: "drift_retraining", "mlsys/alert": check})],
        cursor=json.dumps(cursor),
    )
