"""drift_retraining: a failed drift or performance check starts one retraining, then a cool-down.

It reads check evaluations from the Dagster instance (never the warehouse). The cursor holds the last
alert it looked at and when it last triggered, so each alert is seen once and a burst of alerts (three
reports failing on the same day) leads to one retraining; the promotion gate still decides whether the
new model serves. The decision itself is `decide_retraining`, a pure function that `mlsys monitor` calls
too (it retrains in its own process instead of waiting for the daemon).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

from dagster import (
    AssetCheckKey,
    AssetKey,
    DagsterInstance,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from mlsys_assets.automation.jobs import retraining_job
from mlsys_assets.automation.tags import TRIGGER_TAG
from mlsys_assets.resources import MonitoringSettings

ALERT_CHECK_KEYS = [
    AssetCheckKey(AssetKey(["monitoring", asset]), check)
    for asset, check in (("feature_drift_report", "feature_drift"), ("prediction_drift_report", "prediction_drift"),
                         ("model_performance_report", "performance_drop"))
]
# Check executions are read newest first, this many at a time, down to the newest one already seen.
PAGE_SIZE = 100

Alert = tuple[int, str]  # (check execution id, 'asset:check')


@dataclass(frozen=True)
class DriftCursor:
    """The sensor's cursor: the newest alert execution seen, and when a retraining was last requested."""

    after: int = 0
    last_trigger: float = 0.0  # epoch seconds

    @classmethod
    def parse(cls, raw: str | None) -> DriftCursor:
        return cls(**json.loads(raw)) if raw else cls()

    def dumps(self) -> str:
        return json.dumps({"after": self.after, "last_trigger": self.last_trigger})


@dataclass(frozen=True)
class RetrainingDecision:
    retrain: bool
    reason: str
    cursor: DriftCursor  # the state after this decision
    alerts: tuple[Alert, ...] = ()  # the new alerts it judged, oldest first

    @property
    def run_key(self) -> str:
        return f"drift_retraining:{self.alerts[0][0]}"

    @property
    def tags(self) -> dict[str, str]:
        return {TRIGGER_TAG: "drift_retraining", "mlsys/alert": self.alerts[0][1]}


def decide_retraining(alerts: list[Alert], cursor: DriftCursor, now: float, cooldown_seconds: float
                      ) -> RetrainingDecision:
    """Whether new alerts start a retraining. `cursor.last_trigger` is when the last drift retraining started,
    from any source. Every alert is judged once (the new cursor is past them all), so a burst of alerts starts
    one retraining, and an alert within the cool-down starts none, not even after it."""
    if not alerts:
        return RetrainingDecision(False, "no new drift or performance alert", cursor)
    seen = replace(cursor, after=alerts[-1][0])
    if now - cursor.last_trigger < cooldown_seconds:
        return RetrainingDecision(False, "alert(s) within the retraining cool-down", seen, tuple(alerts))
    return RetrainingDecision(True, f"alert {alerts[0][1]}", replace(seen, last_trigger=now), tuple(alerts))


def _executions_after(instance: DagsterInstance, key: AssetCheckKey, after_id: int) -> Iterator:
    """The check's executions with an id above after_id, newest first."""
    cursor = None
    while True:
        page = instance.event_log_storage.get_asset_check_execution_history(key, limit=PAGE_SIZE, cursor=cursor)
        newer = [record for record in page if record.id > after_id]
        yield from newer
        if len(newer) < PAGE_SIZE:  # reached an execution already seen, or the first one
            return
        cursor = page[-1].id


def new_alerts(instance: DagsterInstance, after_id: int) -> list[Alert]:
    """Every failed alert check execution newer than after_id, oldest first."""
    alerts = []
    for key in ALERT_CHECK_KEYS:
        for record in _executions_after(instance, key, after_id):
            # By value: Dagster exports the status enum only from a private module.
            if record.status.value == "FAILED":
                alerts.append((record.id, f"{key.asset_key.to_user_string()}:{key.name}"))
    return sorted(alerts)


def past_current_alerts(instance: DagsterInstance) -> DriftCursor:
    """A cursor past every alert raised so far, so that a decision judges only the alerts raised after it."""
    alerts = new_alerts(instance, 0)
    return DriftCursor(after=alerts[-1][0] if alerts else 0)


def last_drift_retraining(instance: DagsterInstance) -> float:
    """Start time (epoch seconds) of the newest run tagged as a drift retraining, from any source, or 0."""
    records = instance.get_run_records(filters=RunsFilter(tags={TRIGGER_TAG: "drift_retraining"}), limit=1)
    return records[0].create_timestamp.timestamp() if records else 0.0


def evaluate_drift(instance: DagsterInstance, cursor: DriftCursor, cooldown_hours: float) -> RetrainingDecision:
    """The decision on the alerts raised after the cursor, now."""
    # `mlsys monitor` retrains outside the sensor, and a fresh cursor knows of no earlier trigger: the
    # instance's run history is what says when the last drift retraining started.
    known = replace(cursor, last_trigger=max(cursor.last_trigger, last_drift_retraining(instance)))
    return decide_retraining(new_alerts(instance, cursor.after), known, time.time(), cooldown_hours * 3600)


@sensor(
    job=retraining_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Starts weekly_retraining when a drift or performance alert fails, at most once per cool-down.",
)
def drift_retraining(context: SensorEvaluationContext, settings: MonitoringSettings) -> SensorResult:
    decision = evaluate_drift(context.instance, DriftCursor.parse(context.cursor), settings.retraining_cooldown_hours)
    if not decision.retrain:
        if decision.alerts:
            context.log.info("%d alert(s) within the cool-down; not retraining again: %s",
                             len(decision.alerts), list(decision.alerts))
        return SensorResult(skip_reason=decision.reason, cursor=decision.cursor.dumps())
    context.log.info("retraining for %s", decision.reason)
    return SensorResult(run_requests=[RunRequest(run_key=decision.run_key, tags=decision.tags)],
                        cursor=decision.cursor.dumps())
