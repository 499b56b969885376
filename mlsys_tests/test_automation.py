"""Declarative automation: a new raw partition flows on to customer_daily and the day's snapshot,
a failed blocking check upstream holds it back, and new predictions bring the monitoring reports."""

import datetime as dt

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetKey,
    AssetMaterialization,
    evaluate_automation_conditions,
    materialize,
)

from mlsys_assets.definitions import build_definitions
from mlsys_assets.features.assets import customer_daily
from mlsys_assets.ingest.assets import raw_customers, raw_transactions

CUSTOMER_DAILY = AssetKey(["features", "customer_daily"])
CUSTOMER_FEATURES = AssetKey(["features", "customer_features"])


def _write_day(data_dir, day: dt.date, amount: str = "10.00") -> None:
    (data_dir / "landing" / "transactions" / f"{day}.csv").write_text(
        f"transaction_id,customer_id,event_time,amount,quantity\nT{day:%Y%m%d},C1,{day} 12:00:00,{amount},1\n"
    )


def test_new_raw_partition_flows_on_to_features(data_dir, resources, instance):
    defs = build_definitions(data_dir)
    yesterday = dt.date.today() - dt.timedelta(days=1)
    _write_day(data_dir, yesterday)
    materialize([raw_customers], resources=resources, instance=instance)
    first = evaluate_automation_conditions(defs=defs, instance=instance)

    assert materialize(
        [raw_transactions], resources=resources, instance=instance, partition_key=yesterday.isoformat()
    ).success
    after_ingest = evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert after_ingest.get_requested_partitions(CUSTOMER_DAILY) == {yesterday.isoformat()}

    assert materialize(
        [customer_daily], resources=resources, instance=instance, partition_key=yesterday.isoformat()
    ).success
    after_daily = evaluate_automation_conditions(defs=defs, instance=instance, cursor=after_ingest.cursor)
    assert after_daily.get_requested_partitions(CUSTOMER_FEATURES) == {yesterday.isoformat()}
    assert after_daily.get_num_requested(CUSTOMER_DAILY) == 0


def test_failed_blocking_check_holds_features_back(data_dir, resources, instance):
    defs = build_definitions(data_dir)
    yesterday = dt.date.today() - dt.timedelta(days=1)
    _write_day(data_dir, yesterday)
    materialize([raw_customers], resources=resources, instance=instance)
    first = evaluate_automation_conditions(defs=defs, instance=instance)
    assert materialize(
        [raw_transactions], resources=resources, instance=instance, partition_key=yesterday.isoformat()
    ).success
    # Someone finds the day broken after the fact: a failed blocking check on the raw partition.
    instance.report_runless_asset_event(
        AssetCheckEvaluation(
            asset_key=raw_transactions.key, check_name="keys", passed=False,
            severity=AssetCheckSeverity.ERROR, partition=yesterday.isoformat(),
        )
    )
    after = evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert after.get_num_requested(CUSTOMER_DAILY) == 0


def test_new_predictions_bring_the_day_s_monitoring_reports(data_dir, instance):
    defs = build_definitions(data_dir)
    day = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    reports = [AssetKey(["monitoring", name]) for name in
               ("feature_drift_report", "prediction_drift_report", "model_performance_report", "data_quality_report")]
    first = evaluate_automation_conditions(defs=defs, instance=instance)
    assert all(first.get_num_requested(key) == 0 for key in reports)
    # The day's upstream partitions (and a promoted model) arrive with their blocking checks passed; the
    # report assets follow them.
    upstream = {("ml", "model_registry"): None, ("raw", "transactions"): day,
                ("features", "customer_features"): day, ("predictions", "customer_predictions"): day}
    graph = defs.resolve_asset_graph()
    for path, partition in upstream.items():
        key = AssetKey(list(path))
        instance.report_runless_asset_event(AssetMaterialization(key, partition=partition))
        for check in graph.get(key).check_keys:
            instance.report_runless_asset_event(AssetCheckEvaluation(
                asset_key=key, check_name=check.name, passed=True, severity=AssetCheckSeverity.ERROR,
                partition=partition))
    after = evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert {key.path[-1]: after.get_requested_partitions(key) for key in reports} == {
        key.path[-1]: {day} for key in reports}
