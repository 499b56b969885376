"""Resources shared by every layer: the DuckDB warehouse and the landing zone."""

from __future__ import annotations

import datetime as dt
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
from mlsys_assets.settings import DataLayout

WAREHOUSE_POOL = "warehouse"
SCHEMAS = ("raw", "features", "ml", "predictions", "monitoring")
LANDING_SUFFIXES = (".csv", ".parquet")
_DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(csv|parquet)$")


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """The block's statements land together, or (on any exception) none of them does."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


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
    """The landing zone under the data directory, where a business drops its exports."""

    data_dir: str = Field(description="The data directory (MLSYS_DATA_DIR); landing files live in its landing/ folder.")

    @property
    def layout(self) -> DataLayout:
        return DataLayout(Path(self.data_dir))

    def formats(self) -> dict[str, FeedFormat]:
        return load_mapping(self.layout.mapping_file)

    def transaction_files(self) -> dict[dt.date, Path]:
        """Delivery day -> file, for every `YYYY-MM-DD.csv|parquet` in the transactions folder."""
        files: dict[dt.date, Path] = {}
        folder = self.layout.transactions_landing
        if not folder.exists():
            return files
        for path in sorted(folder.iterdir()):
            match = _DAY_FILE.match(path.name)
            if not match:
                continue
            day = dt.date.fromisoformat(match.group(1))
            if day in files:
                raise ValueError(f"two landing files for {day}: {files[day].name} and {path.name}; keep one")
            files[day] = path
        return files

    def customer_files(self) -> list[Path]:
        """Customer exports in name order; a later file's row wins for the same customer."""
        folder = self.layout.customers_landing
        if not folder.exists():
            return []
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in LANDING_SUFFIXES and p.is_file())


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
