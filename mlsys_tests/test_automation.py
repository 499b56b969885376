"""Declarative automation: a new raw partition flows on to customer_daily and the day's snapshot,
and a failed blocking check upstream holds it back."""

import datetime as dt

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetKey,
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
