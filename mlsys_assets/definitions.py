"""The one Dagster `Definitions` of mlsys: `mlsys_assets.definitions:defs`."""

from __future__ import annotations

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    Definitions,
    build_sensor_for_freshness_checks,
    build_time_partition_freshness_checks,
)

from mlsys_assets.ingest.assets import raw_customers, raw_transactions
from mlsys_assets.ingest.sensors import ingest_customers_job, ingest_transactions_job, landing_sensor
from mlsys_assets.resources import LandingZone, Warehouse
from mlsys_assets.settings import DataLayout, data_dir

# The newest complete day must be in raw.transactions by 09:00 UTC the next morning.
transactions_freshness = build_time_partition_freshness_checks(
    assets=[raw_transactions], deadline_cron="0 9 * * *", timezone="UTC"
)


def build_definitions(data_root=None) -> Definitions:
    layout = DataLayout(data_root or data_dir())
    return Definitions(
        assets=[raw_transactions, raw_customers],
        asset_checks=transactions_freshness,
        jobs=[ingest_transactions_job, ingest_customers_job],
        sensors=[
            landing_sensor,
            build_sensor_for_freshness_checks(
                freshness_checks=transactions_freshness, default_status=DefaultSensorStatus.RUNNING
            ),
            # Dagster ships its automation sensor stopped; this one runs from the start.
            AutomationConditionSensorDefinition(
                "automation", target=AssetSelection.all(), default_status=DefaultSensorStatus.RUNNING
            ),
        ],
        resources={
            "warehouse": Warehouse(path=str(layout.warehouse)),
            "landing": LandingZone(data_dir=str(layout.root)),
        },
    )


defs = build_definitions()
