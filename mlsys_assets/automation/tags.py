"""The run tags the automation and the CLI read or write.

Dagster's own tags are documented run tags ("System tags", https://docs.dagster.io/guides/build/assets/
metadata-and-tags/tags#run-tags) but Dagster 1.13 exports their names only from the private
`dagster._core.storage.tags`, so they are spelled out here once; mlsys_tests/test_layers.py checks that
they still equal Dagster's.
"""

from __future__ import annotations

import datetime as dt

# The run key a sensor gave the run: Dagster skips a request whose key already has a run.
RUN_KEY_TAG = "dagster/run_key"
# A run over a range of partitions (a single-run backfill) carries its first and last partition key.
ASSET_PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
ASSET_PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
# What started an mlsys run: `cli`, `landing_sensor` or `drift_retraining`.
TRIGGER_TAG = "mlsys/trigger"


def range_tags(start: dt.date, end: dt.date) -> dict[str, str]:
    """The tags of one run over the daily partitions start … end."""
    return {ASSET_PARTITION_RANGE_START_TAG: start.isoformat(), ASSET_PARTITION_RANGE_END_TAG: end.isoformat()}
