"""The data's clock: "today" is the newest delivered day, never the wall clock past the data."""

from __future__ import annotations

import datetime as dt

import pytest
from dagster import AssetMaterialization, RunRequest, SkipReason, build_asset_check_context, materialize

from mlsys_assets.automation.jobs import newest_day_to_score
from mlsys_assets.automation.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from mlsys_assets.features.assets import customer_daily, customer_features
from mlsys_assets.ingest.assets import raw_transactions
from mlsys_assets.ingest.checks import FreshnessConfig, transactions_freshness
from mlsys_assets.predictions.assets import customer_predictions
from mlsys_assets.resources import LandingZone


@pytest.fixture
def history(write_transactions, resources, instance):
    """Three delivered days in 2024: long before the wall clock's today."""
    for offset in range(3):
        day = dt.date(2024, 3, 1) + dt.timedelta(days=offset)
        write_transactions(day.isoformat(), [f"t{offset},c{offset},{day},10.00,1"])
    return [dt.date(2024, 3, 1) + dt.timedelta(days=offset) for offset in range(3)]


def test_the_scoring_schedule_scores_the_newest_delivered_day_not_yesterday(history, resources, instance):
    assert isinstance(newest_day_to_score(instance), SkipReason)
    for day in history:
        materialize([raw_transactions], resources=resources, instance=instance, partition_key=day.isoformat())

    request = newest_day_to_score(instance)

    assert isinstance(request, RunRequest) and request.partition_key == "2024-03-03"
    instance.report_runless_asset_event(AssetMaterialization(customer_predictions.key, partition="2024-03-03"))
    skipped = newest_day_to_score(instance)
    assert isinstance(skipped, SkipReason) and "2024-03-03 is scored already" in skipped.skip_message


def test_a_snapshot_past_the_newest_delivery_is_refused(history, ml_resources, instance, query):
    tags = {ASSET_PARTITION_RANGE_START_TAG: "2024-03-01", ASSET_PARTITION_RANGE_END_TAG: "2024-03-03"}
    materialize([raw_transactions], resources=ml_resources, instance=instance, tags=tags)
    materialize([customer_daily], resources=ml_resources, instance=instance, tags=tags)
    assert materialize([customer_features], resources=ml_resources, instance=instance, partition_key="2024-03-03").success

    later = materialize([customer_features], resources=ml_resources, instance=instance, partition_key="2024-03-20",
                        raise_on_error=False)

    assert not later.success
    message = next(e for e in later.all_events if e.is_step_failure).step_failure_data.error.message
    assert "the newest delivered day is 2024-03-03" in message
    assert query("SELECT DISTINCT as_of FROM features.customer_features") == [(dt.date(2024, 3, 3),)]


def test_freshness_judges_loaded_against_delivered_days(history, resources, instance, data_dir):
    def check():
        context = build_asset_check_context(instance=instance, resources={"landing": LandingZone(data_dir=str(data_dir))})
        return transactions_freshness(context, FreshnessConfig())

    materialize([raw_transactions], resources=resources, instance=instance, partition_key="2024-03-01")
    waiting = check()
    assert not waiting.passed and waiting.metadata["delivered_days_not_loaded"].value == 2

    for day in ("2024-03-02", "2024-03-03"):
        materialize([raw_transactions], resources=resources, instance=instance, partition_key=day)
    fresh = check()

    # Fresh by the data's clock, although the newest delivery is years behind the wall clock.
    assert fresh.passed, fresh.metadata
    assert fresh.metadata["wall_clock_days_since_newest_delivery"].value > 365
