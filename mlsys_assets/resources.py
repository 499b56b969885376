"""Resources shared by every layer: the DuckDB warehouse and the landing zone."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import duckdb
from dagster import ConfigurableResource
from pydantic import Field

from mlsys_assets.contract import FeedFormat, load_mapping
from mlsys_assets.storage import DataLayout

WAREHOUSE_POOL = "warehouse"
SCHEMAS = ("raw", "features", "ml", "predictions", "monitoring")
LANDING_SUFFIXES = (".csv", ".parquet")
_DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(csv|parquet)$")


class WarehouseLockedError(RuntimeError):
    pass


class Warehouse(ConfigurableResource):
    """The DuckDB warehouse file. Connections are short-lived: open, work, close.

    DuckDB lets one process write a file at a time, so every writer runs in the `warehouse` pool
    (limit 1 in dagster.yaml); a connection that still finds the file locked (a user's SQL shell,
    say) retries for `lock_timeout_seconds` and then fails with the holder named.
    """

    path: str = Field(description="Path of the DuckDB file (created on first write).")
    lock_timeout_seconds: float = Field(default=60.0, description="How long to wait for another process's lock.")
    memory_limit: str = Field(
        default="4GB", description="DuckDB's memory limit per connection; larger intermediate results spill to a "
                                   "temp folder next to the file (keeps a million-customer backfill within ~6 GiB).")

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        path = Path(self.path)
        if read_only and not path.exists():
            raise FileNotFoundError(f"the warehouse {path} does not exist yet: ingest some data first")
        path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_seconds
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(str(path), read_only=read_only, config={"memory_limit": self.memory_limit})
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise WarehouseLockedError(
                        f"cannot open {path}: {exc}. Another process holds the warehouse; "
                        "close it (or wait for its run to finish) and retry."
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        try:
            if not read_only:
                for schema in SCHEMAS:
                    con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            yield con
        finally:
            con.close()


class LandingZone(ConfigurableResource):
    """The landing zone under the data directory, where a business drops its exports.

    Every entry of the feed folders is either a file to ingest or refused by name with a reason
    (`transaction_refusals`, `customer_refusals`): nothing there is ignored without a word.
    """

    data_dir: str = Field(description="The data directory (storage.data_dir); landing files live in its landing/ folder.")

    @property
    def layout(self) -> DataLayout:
        return DataLayout(Path(self.data_dir))

    def formats(self) -> dict[str, FeedFormat]:
        return load_mapping(self.layout.mapping_file)

    def transaction_files(self) -> dict[dt.date, Path]:
        """Delivery day -> file, for every `YYYY-MM-DD.csv|parquet` in the transactions folder that is a
        real day, a regular file and the only file of its day (the others: `transaction_refusals`)."""
        return self._scan_transactions()[0]

    def transaction_refusals(self) -> dict[str, str]:
        """File name -> why it is not ingested, for every other entry of the transactions folder."""
        return self._scan_transactions()[1]

    def _scan_transactions(self) -> tuple[dict[dt.date, Path], dict[str, str]]:
        folder = self.layout.transactions_landing
        by_day: dict[dt.date, list[Path]] = {}
        refused: dict[str, str] = {}
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            problem = _entry_problem(path)
            day = None
            if problem is None:
                day, problem = _day_of(path.name)
            if problem:
                refused[path.name] = problem
            else:
                by_day.setdefault(day, []).append(path)
        files: dict[dt.date, Path] = {}
        for day, paths in by_day.items():
            if len(paths) == 1:
                files[day] = paths[0]
                continue
            names = " and ".join(p.name for p in paths)
            for path in paths:
                refused[path.name] = f"two files for {day} ({names}): keep one; that day is not ingested until then"
        return dict(sorted(files.items())), dict(sorted(refused.items()))

    def customer_files(self) -> list[Path]:
        """Customer exports in name order; a later file's row wins for the same customer."""
        folder = self.layout.customers_landing
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in LANDING_SUFFIXES and _entry_problem(p) is None)

    def customer_refusals(self) -> dict[str, str]:
        """File name -> why it is not ingested, for every other entry of the customers folder."""
        folder = self.layout.customers_landing
        refused: dict[str, str] = {}
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            problem = _entry_problem(path)
            if problem is None and path.suffix.lower() not in LANDING_SUFFIXES:
                problem = f"unsupported file type '{''.join(path.suffixes) or path.name}'; expected .csv or .parquet"
            if problem:
                refused[path.name] = problem
        return refused


# What an ingest run records about each landing file it loaded (in the materialization's metadata), and
# what the landing sensor compares a landing file with to tell whether its content is loaded already.
SOURCE_KEYS = ("source_bytes", "source_mtime_ns", "source_sha256")


def file_fingerprint(path: Path, known: dict | None = None) -> dict:
    """A landing file's size, modification time (text: a nanosecond count is no quantity to plot) and
    content hash; the hash of `known` is reused when size and time match it (no second read)."""
    stat = path.stat()
    size, mtime = stat.st_size, str(stat.st_mtime_ns)
    if known and known.get("source_bytes") == size and known.get("source_mtime_ns") == mtime and known.get("source_sha256"):
        return known
    with path.open("rb") as stream:
        digest = hashlib.file_digest(stream, "sha256").hexdigest()
    return {"source_bytes": size, "source_mtime_ns": mtime, "source_sha256": digest}


def combined_digest(fingerprints: list[dict]) -> str:
    """One digest for a set of files' contents (the customer exports), in the order given."""
    return hashlib.sha256("".join(f["source_sha256"] for f in fingerprints).encode()).hexdigest()[:16]


def _entry_problem(path: Path) -> str | None:
    """Why a landing entry cannot be a landing file (never reads a symbolic link's target)."""
    if path.is_symlink():
        return f"a symbolic link (to {os.readlink(path)}): refused unread; copy the file into the landing zone"
    if path.is_dir():
        return "a directory, not a file"
    if not path.is_file():
        return "not a regular file"
    return None


def _day_of(name: str) -> tuple[dt.date | None, str | None]:
    """The delivery day a transactions file name gives, or why the name is refused."""
    expected = "expected YYYY-MM-DD.csv or YYYY-MM-DD.parquet"
    match = _DAY_FILE.match(name)
    if match:
        try:
            return dt.date.fromisoformat(match.group(1)), None
        except ValueError as exc:
            return None, f"'{match.group(1)}' is not a calendar day ({exc}); {expected}"
    lowered = name.lower()
    if _DAY_FILE.match(lowered):
        return None, f"the extension must be lower case: rename it to {lowered}"
    if lowered.endswith((".gz", ".zip", ".bz2", ".xz", ".zst")):
        return None, f"compressed files are not read: decompress it to {expected}"
    if lowered.endswith(".importing"):
        return None, "an unfinished `mlsys import` output (renamed when the import completes)"
    return None, f"the name is not a delivery day: {expected}"


class ForecastSettings(ConfigurableResource):
    """What the platform forecasts; shared by features, training, scoring and monitoring so they agree."""

    horizon_days: int = Field(default=90, description="H: forecasts and labels cover the H days after the as-of day.")


class MonitoringSettings(ConfigurableResource):
    """Thresholds of the monitoring alerts and the drift-triggered retraining (docs/monitoring.md says why)."""

    alert_features: Optional[list[str]] = Field(
        default=None,
        description="Features whose drift raises the feature_drift alert; the others are shown without a test. "
                    "Default: activity in the windows the shop had fully lived at the earliest training day, "
                    "per-purchase averages and the segment columns, which stay put while the business is stable "
                    "(age-like features move as the shop ages).")
    numeric_drift_threshold: float = Field(
        default=0.15, description="A numerical column drifted when its normed Wasserstein distance (in reference "
                                  "standard deviations) exceeds this.")
    categorical_drift_threshold: float = Field(
        default=0.1, description="A categorical column drifted when its Jensen-Shannon distance exceeds this.")
    drift_share_threshold: float = Field(
        default=0.3, description="Alert when more than this share of the alert features drifted.")
    watched_top_features: int = Field(
        default=5, description="Alert when any of the production model's this-many most important alert features "
                               "drifted (the segment columns are always watched).")
    performance_tolerance: float = Field(
        default=0.05, description="Alert when matured Gini or ROC-AUC is this much below the model's own evaluation.")
    alert_severity: str = Field(default="ERROR", description="Severity of the drift and performance checks: WARN or ERROR.")
    row_cap: int = Field(default=100_000, description="Rows sampled per side of a report (deterministic by seed).")
    seed: int = 7
    report_retention_days: int = Field(
        default=30, description="HTML reports kept per kind (each embeds ~4 MB of script); snapshots stay in the warehouse.")
    retraining_cooldown_hours: float = Field(
        default=72.0, description="After a drift-triggered retraining, further alerts wait this long.")


class ForecastOracle(ConfigurableResource):
    """The best possible forecast, where one is known (a simulated shop): evaluation shows it beside the
    candidates as the ceiling. This base knows none; `mlsys_assets.demo_oracle` is the simulator's."""

    def forecasts(self, customers, as_of: dt.date, horizon_days: int) -> Optional[dict]:
        """{"ltv": expected spend, "churn": P(no purchase)} for the rows of `customers`, or None."""
        return None
