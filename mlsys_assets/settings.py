"""The few settings that must be known before any run starts (where things live: storage.py).

Everything else is Dagster config with working defaults. These values come from the environment
because Dagster needs them while it loads the definitions (the partition calendar) or because
they must never be written into run config (the PII key).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

from mlsys_assets.storage import DataLayout, data_dir

PARTITIONS_START_SETTING = "MLSYS_PARTITIONS_START"
# The calendar's first day when the setting is unset and the landing zone holds no transaction file yet.
DEFAULT_PARTITIONS_START = "2024-01-01"
# A delivery file's name (the same rule as LandingZone.transaction_files).
DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(csv|parquet)$")


def first_delivery_day(root: Path | None = None) -> dt.date | None:
    """The earliest `YYYY-MM-DD.csv|parquet` in `landing/transactions/` below `root` (default: data_dir())."""
    folder = DataLayout(root or data_dir()).transactions_landing
    if not folder.is_dir():
        return None
    days = []
    for match in filter(None, (DAY_FILE.match(path.name) for path in folder.iterdir())):
        try:
            days.append(dt.date.fromisoformat(match.group(1)))
        except ValueError:
            continue  # not a real day (2024-13-01.csv): ingest names it when it reads the folder
    return min(days, default=None)


def partitions_start_setting() -> dt.date | None:
    """`MLSYS_PARTITIONS_START` as a date, or None when it is not set."""
    raw = os.environ.get(PARTITIONS_START_SETTING, "").strip()
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError as exc:
        raise ValueError(f"{PARTITIONS_START_SETTING} must be an ISO date (YYYY-MM-DD), got {raw!r}") from exc


def partitions_start(root: Path | None = None) -> dt.date:
    """First day of the daily partition calendar: the calendar fits the data.

    `MLSYS_PARTITIONS_START` when set; otherwise the first delivered day (the earliest landing file
    below `root`, default data_dir()); otherwise DEFAULT_PARTITIONS_START. Dagster fixes the calendar
    when it loads the definitions, so a file older than that needs a reload (docs/data-contract.md).
    """
    return (partitions_start_setting() or first_delivery_day(root)
            or dt.date.fromisoformat(DEFAULT_PARTITIONS_START))


def horizon_days() -> int:
    """H, the forecast horizon shared by features, training, scoring and monitoring (`MLSYS_HORIZON_DAYS`, default 90)."""
    raw = os.environ.get("MLSYS_HORIZON_DAYS", "90")
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= 730:
        raise ValueError(f"MLSYS_HORIZON_DAYS must be a whole number of days from 1 to 730, got {raw!r}")
    return value


# Where `mlsys reports serve` (started by `make ui`) serves data/reports/: report links in the UI point here.
REPORTS_URL_SETTING = "MLSYS_REPORTS_URL"
DEFAULT_REPORTS_PORT = 3001


def reports_url() -> str:
    """Base URL of the report server (`MLSYS_REPORTS_URL`, default http://127.0.0.1:3001), no trailing slash."""
    return os.environ.get(REPORTS_URL_SETTING, f"http://127.0.0.1:{DEFAULT_REPORTS_PORT}").rstrip("/")


def retraining_cron() -> str:
    """When `weekly_retraining` runs (`MLSYS_RETRAIN_CRON`, default Mondays 03:00 UTC)."""
    return os.environ.get("MLSYS_RETRAIN_CRON", "0 3 * * 1")


# The asset pages' "source code" links: local file and line always; a repository URL when these are set
# (a deployment sets them from its CI, as hooli does; a clone has no way to know where it was pushed).
SOURCE_URL_SETTING = "MLSYS_SOURCE_URL"
SOURCE_BRANCH_SETTING = "MLSYS_SOURCE_BRANCH"


def source_repository() -> tuple[str, str] | None:
    """(`MLSYS_SOURCE_URL`, `MLSYS_SOURCE_BRANCH` default main), e.g. https://github.com/acme/mlsys; None if unset."""
    url = os.environ.get(SOURCE_URL_SETTING, "").strip().rstrip("/")
    if not url:
        return None
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"{SOURCE_URL_SETTING} must be the repository's web address (https://...), got {url!r}")
    return url, os.environ.get(SOURCE_BRANCH_SETTING, "").strip() or "main"
