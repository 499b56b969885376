"""The daily partition calendar shared by every partitioned asset."""

from dagster import DailyPartitionsDefinition

from mlsys_assets.settings import partitions_start

# end_offset=1 admits today's delivery: a shop may drop today's file before the day is over.
daily_partitions = DailyPartitionsDefinition(start_date=partitions_start().isoformat(), end_offset=1)
