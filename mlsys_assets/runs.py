"""Launch the project's jobs from the `mlsys` CLI, recorded in the Dagster instance the UI shows.

With DAGSTER_HOME set (the Makefile sets it to .dagster/), runs land in the same instance as
`make ui`, so everything the CLI did is visible there afterwards.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable

from dagster import DagsterInstance
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from mlsys_assets.definitions import defs
from mlsys_assets.ingest.sensors import consecutive_ranges
from mlsys_assets.resources import LandingZone


# The CLI prints one line per run; Dagster's per-event debug log stays in the instance for the UI.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def instance() -> DagsterInstance:
    return DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()


def ingest_landing_zone(first: dt.date | None, last: dt.date | None, echo: Callable[[str], None] = print) -> bool:
    """Ingest customers, then every landing day in [first, last]; True when every run succeeded."""
    landing: LandingZone = defs.resources["landing"]
    days = [d for d in landing.transaction_files() if (first is None or d >= first) and (last is None or d <= last)]
    ok = True
    with instance() as dagster_instance:
        if landing.customer_files():
            result = defs.resolve_job_def("ingest_customers").execute_in_process(
                instance=dagster_instance, raise_on_error=False, run_config=QUIET_RUN_CONFIG, tags={"mlsys/trigger": "cli"}
            )
            echo(f"ingest_customers: {'success' if result.success else 'FAILED'} (run {result.run_id})")
            ok &= result.success
        for start, end in consecutive_ranges(days):
            result = defs.resolve_job_def("ingest_transactions").execute_in_process(
                instance=dagster_instance,
                raise_on_error=False,
                run_config=QUIET_RUN_CONFIG,
                tags={
                    ASSET_PARTITION_RANGE_START_TAG: start.isoformat(),
                    ASSET_PARTITION_RANGE_END_TAG: end.isoformat(),
                    "mlsys/trigger": "cli",
                },
            )
            echo(f"ingest_transactions {start} … {end}: {'success' if result.success else 'FAILED'} (run {result.run_id})")
            if not result.success:
                for event in result.all_events:
                    if event.is_step_failure and event.step_failure_data.error:
                        echo(event.step_failure_data.error.message.strip())
            ok &= result.success
    if not days:
        echo(f"no transaction files in {landing.layout.transactions_landing}")
    return ok
