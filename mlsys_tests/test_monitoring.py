"""Monitoring end to end on a simulated shop: real training, scoring, Evidently reports, checks and the sensor.

The stable shop must raise no alert; the same shop with a weak new acquisition channel over its last 100
days must raise the feature drift alert, and the drift_retraining sensor must then ask for exactly one
retraining. This is the calibration test of the default alert features and thresholds (docs/monitoring.md).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import pytest
from dagster import DagsterInstance, FloatMetadataValue, UrlMetadataValue, build_sensor_context

from mlsys_assets.automation.drift import drift_retraining
from mlsys_assets.features.assets import customer_features
from mlsys_assets.monitoring.assets import (
    data_quality_report,
    feature_drift_report,
    model_performance_report,
    prediction_drift_report,
)
from mlsys_assets.predictions.assets import customer_predictions
from mlsys_assets.resources import MonitoringSettings
from mlsys_tests.conftest import SHOP_CONFIG, SHOP_HORIZON_DAYS, Shop

DAY = SHOP_CONFIG.end
MATURED_DAY = DAY - dt.timedelta(days=SHOP_HORIZON_DAYS)
REPORTS = [data_quality_report, feature_drift_report, prediction_drift_report, model_performance_report]
ALERTS = {("monitoring/feature_drift_report", "feature_drift"), ("monitoring/prediction_drift_report", "prediction_drift"),
          ("monitoring/model_performance_report", "performance_drop")}


def _monitored(shop: Shop) -> dict[tuple[str, str], bool]:
    """Train and promote, score DAY and DAY - H, run the four reports for DAY; returns check -> passed."""
    shop.retrain()
    for day in (MATURED_DAY, DAY):
        shop.materialize([customer_features, customer_predictions], partition_key=day.isoformat())
    result = shop.materialize(REPORTS, partition_key=DAY.isoformat())
    return {(e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()}


def _sensor_requests(shop: Shop, cursor: str | None = None):
    context = build_sensor_context(instance=shop.instance, cursor=cursor, resources={"settings": MonitoringSettings()})
    return drift_retraining(context)


@pytest.fixture
def stable(tmp_path: Path, shop_factory, instance: DagsterInstance) -> tuple[Shop, dict]:
    shop = shop_factory(tmp_path, instance)
    return shop, _monitored(shop)


@pytest.fixture
def drifted(tmp_path: Path, drifted_shop_template: Path, instance: DagsterInstance) -> tuple[Shop, dict]:
    shutil.copytree(drifted_shop_template, tmp_path / "data")
    shop = Shop(tmp_path / "data", instance)
    return shop, _monitored(shop)


def test_stable_shop_raises_no_alert_and_no_retraining(stable):
    shop, checks = stable
    assert set(checks) >= ALERTS | {("monitoring/data_quality_report", "data_quality")}
    assert all(checks.values()), {k: v for k, v in checks.items() if not v}
    assert not _sensor_requests(shop).run_requests


def test_new_channel_raises_the_feature_drift_alert_and_exactly_one_retraining(drifted):
    shop, checks = drifted
    assert not checks[("monitoring/feature_drift_report", "feature_drift")]
    (headline,) = shop.query(
        "SELECT headline FROM monitoring.reports WHERE kind = 'feature_drift' AND partition_day = ?", [DAY])[0]
    assert "acquisition_channel" in json.loads(headline)["drifted_column_names"]

    first = _sensor_requests(shop)
    assert len(first.run_requests) == 1
    assert first.run_requests[0].tags["mlsys/alert"] == "monitoring/feature_drift_report:feature_drift"
    assert not _sensor_requests(shop, first.cursor).run_requests  # the same alert is not acted on twice


def test_reports_are_stored_linked_and_self_contained(stable):
    shop, _ = stable
    rows = shop.query("SELECT kind, html_path, reference_rows, current_rows, snapshot_json FROM monitoring.reports")
    assert sorted(r[0] for r in rows) == ["data_quality", "feature_drift", "model_performance", "prediction_drift"]
    index = (shop.layout.reports / "index.html").read_text()
    for kind, html_path, reference_rows, current_rows, snapshot in rows:
        page = Path(html_path).read_text()
        assert len(page) > 100_000 and "drawDashboard" in page  # Evidently's bundle is embedded
        assert not re.search(r"<script[^>]+src=[\"']?(https?:)?//", page), f"{kind} loads a remote script"
        assert f"{kind}/{DAY}.html" in index
        assert current_rows > 0 and json.loads(snapshot)
        if kind != "model_performance":
            assert reference_rows > 0
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", index)
    metrics = shop.query("SELECT count(*), count(DISTINCT report_id) FROM monitoring.metrics")[0]
    assert metrics[0] > 20 and metrics[1] == 4


def test_each_report_partition_links_its_own_day_s_report(stable):
    """What the UI shows for the day: a clickable link to that day's report (which exists), typed and rounded
    numbers, the day's row count, and no reference size for the performance report, which has no reference."""
    shop, _ = stable
    day_rows = {
        "feature_drift": shop.query("SELECT count(*) FROM features.customer_features WHERE as_of = ?", [DAY])[0][0],
        "prediction_drift": shop.query("SELECT count(*) FROM predictions.customer_predictions WHERE as_of = ?", [DAY])[0][0],
        "model_performance": shop.query("SELECT count(*) FROM predictions.customer_predictions WHERE as_of = ?",
                                        [MATURED_DAY])[0][0],
        "data_quality": shop.query("SELECT count(*) FROM raw.transactions WHERE delivery_date = ?", [DAY])[0][0],
    }
    for report in REPORTS:
        kind = report.key.path[-1].removesuffix("_report")
        event = shop.instance.get_latest_materialization_event(report.key).asset_materialization
        metadata = event.metadata
        assert event.partition == DAY.isoformat()
        assert isinstance(metadata["report"], UrlMetadataValue)
        relative = f"{kind}/{DAY}.html"
        assert metadata["report"].value.endswith(f"/{relative}") and (shop.layout.reports / relative).exists()
        assert metadata["index"].value.endswith("/index.html")
        assert metadata["dagster/row_count"].value == day_rows[kind] > 0
        assert ("reference_rows" in metadata) == (kind != "model_performance")
        numbers = [v.value for v in metadata.values() if isinstance(v, FloatMetadataValue)]
        assert numbers and all(round(v, 4) == v for v in numbers)


def test_the_index_opens_with_the_model_and_monitoring_dashboard(stable):
    """Written by the report assets themselves (`_store`): what serves, the gate's decisions and the trend charts."""
    shop, _ = stable
    index = (shop.layout.reports / "index.html").read_text()
    dashboard = index[index.index('<section id="dashboard">'):index.index('<section id="reports">')]
    production = shop.query("SELECT model, version, kind FROM ml.model_registry WHERE state = 'production'")
    assert sorted(model for model, _, _ in production) == ["churn", "ltv"]
    for model, version, kind in production:
        row = re.search(rf'<tr data-target="{model}">.*?</tr>', dashboard).group(0)
        assert version in row and f"<td>{kind}</td>" in row
    history = dashboard[dashboard.index('id="gate-history"'):]
    assert re.search(r'data-target="ltv">.*?class="action action-', history)
    assert re.search(r'data-target="churn">.*?class="action action-', history)
    # one report day so far: a point per drift series, and the two scored days' mean forecasts
    assert re.search(r'id="trend-drift-share">.*?<svg class="trend"[^>]*data-points="3"', dashboard)
    assert re.search(r'id="trend-mean-spend">.*?<svg class="trend"[^>]*data-points="\d+"', dashboard)
