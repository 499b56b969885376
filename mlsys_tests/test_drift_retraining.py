"""drift_retraining: one failed alert check requests exactly one retraining; the cool-down holds the next.
The decision alone (`decide_retraining`, no Dagster) first, then the sensor on an instance."""

import json

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    asset,
    build_sensor_context,
    materialize,
)

from mlsys_assets.automation.drift import DriftCursor, decide_retraining, drift_retraining
from mlsys_assets.resources import MonitoringSettings


HOUR = 3600.0
NOW = 1_000_000.0
FEATURE_DRIFT = "monitoring/feature_drift_report:feature_drift"
PREDICTION_DRIFT = "monitoring/prediction_drift_report:prediction_drift"


def test_decision_no_alert_keeps_the_cursor():
    cursor = DriftCursor(after=7, last_trigger=NOW - 100 * HOUR)
    decision = decide_retraining([], cursor, NOW, 72 * HOUR)
    assert not decision.retrain
    assert decision.reason == "no new drift or performance alert"
    assert decision.cursor == cursor


def test_decision_a_burst_of_alerts_starts_one_retraining_for_the_first():
    alerts = [(3, FEATURE_DRIFT), (4, PREDICTION_DRIFT), (9, FEATURE_DRIFT)]
    decision = decide_retraining(alerts, DriftCursor(after=2), NOW, 72 * HOUR)
    assert decision.retrain
    assert decision.cursor == DriftCursor(after=9, last_trigger=NOW)  # past every alert of the burst
    assert decision.run_key == "drift_retraining:3"
    assert decision.tags == {"mlsys/trigger": "drift_retraining", "mlsys/alert": FEATURE_DRIFT}
    # The same cursor on the next tick sees no new alert, so the burst started exactly one retraining.
    assert not decide_retraining([], decision.cursor, NOW + 60, 72 * HOUR).retrain


def test_decision_within_the_cool_down_marks_the_alerts_seen_without_retraining():
    cursor = DriftCursor(after=2, last_trigger=NOW - 71 * HOUR)
    decision = decide_retraining([(5, PREDICTION_DRIFT)], cursor, NOW, 72 * HOUR)
    assert not decision.retrain
    assert decision.reason == "alert(s) within the retraining cool-down"
    assert decision.cursor == DriftCursor(after=5, last_trigger=cursor.last_trigger)


def test_decision_after_the_cool_down_retrains_again():
    decision = decide_retraining([(5, PREDICTION_DRIFT)], DriftCursor(after=2, last_trigger=NOW - 73 * HOUR),
                                 NOW, 72 * HOUR)
    assert decision.retrain
    assert decision.cursor.last_trigger == NOW


def test_the_cursor_format_is_unchanged():
    raw = '{"after": 12, "last_trigger": 1700000000.5}'  # what an existing instance holds
    assert DriftCursor.parse(raw) == DriftCursor(after=12, last_trigger=1700000000.5)
    assert DriftCursor.parse(raw).dumps() == raw
    assert DriftCursor.parse(None) == DriftCursor()


def _report(instance: DagsterInstance, asset: str, check: str, passed: bool) -> None:
    instance.report_runless_asset_event(
        AssetCheckEvaluation(asset_key=AssetKey(["monitoring", asset]), check_name=check, passed=passed,
                             severity=AssetCheckSeverity.ERROR)
    )


def _tick(instance: DagsterInstance, cursor: str | None, cooldown_hours: float = 72.0):
    context = build_sensor_context(
        instance=instance, cursor=cursor, resources={"settings": MonitoringSettings(retraining_cooldown_hours=cooldown_hours)}
    )
    return drift_retraining(context)


def test_no_alert_no_retraining():
    with DagsterInstance.ephemeral() as instance:
        _report(instance, "feature_drift_report", "feature_drift", passed=True)
        result = _tick(instance, None)
        assert not result.run_requests


def test_one_alert_one_retraining_then_cool_down():
    with DagsterInstance.ephemeral() as instance:
        _report(instance, "feature_drift_report", "feature_drift", passed=False)
        _report(instance, "prediction_drift_report", "prediction_drift", passed=False)
        first = _tick(instance, None)
        assert len(first.run_requests) == 1
        assert first.run_requests[0].tags["mlsys/trigger"] == "drift_retraining"

        again = _tick(instance, first.cursor)
        assert not again.run_requests  # the same alerts are not seen twice

        _report(instance, "model_performance_report", "performance_drop", passed=False)
        cooled = _tick(instance, again.cursor)
        assert not cooled.run_requests  # a new alert within the cool-down waits
        assert json.loads(cooled.cursor)["after"] > json.loads(again.cursor)["after"]

        _report(instance, "feature_drift_report", "feature_drift", passed=False)
        after_cool_down = _tick(instance, cooled.cursor, cooldown_hours=0.0)
        assert len(after_cool_down.run_requests) == 1


def test_other_failed_checks_do_not_retrain():
    with DagsterInstance.ephemeral() as instance:
        _report(instance, "data_quality_report", "data_quality", passed=False)
        assert not _tick(instance, None).run_requests


def test_a_retraining_started_elsewhere_starts_the_cool_down():
    """`mlsys monitor` retrains itself; the daemon's sensor (fresh cursor) must not retrain again for that alert."""

    @asset
    def stand_in_for_retraining() -> None:
        pass

    with DagsterInstance.ephemeral() as instance:
        _report(instance, "feature_drift_report", "feature_drift", passed=False)
        assert materialize([stand_in_for_retraining], instance=instance,
                           tags={"mlsys/trigger": "drift_retraining"}).success
        held = _tick(instance, None)
        assert not held.run_requests
        assert json.loads(held.cursor)["after"] > 0  # the alert is seen, and not acted on later either
        assert not _tick(instance, held.cursor, cooldown_hours=0.0).run_requests
