"""Where things live and the few settings that must be known before any run starts.

Everything else is Dagster config with working defaults. These values come from the environment
because Dagster needs them while it loads the definitions (the partition calendar) or because
they must never be written into run config (the PII key).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PARTITIONS_START = "2024-01-01"


def data_dir() -> Path:
    """Root of all runtime data: `MLSYS_DATA_DIR`, default `./data` below the working directory."""
    return Path(os.environ.get("MLSYS_DATA_DIR", "data")).resolve()


def partitions_start() -> dt.date:
    """First day of the daily partition calendar (`MLSYS_PARTITIONS_START`, ISO date)."""
    raw = os.environ.get("MLSYS_PARTITIONS_START", DEFAULT_PARTITIONS_START)
    try:
        return dt.date.fromisoformat(raw)
    except ValueError as exc:
        raise ValueError(f"MLSYS_PARTITIONS_START must be an ISO date (YYYY-MM-DD), got {raw!r}") from exc


def retraining_cron() -> str:
    """When `weekly_retraining` runs (`MLSYS_RETRAIN_CRON`, default Mondays 03:00 UTC)."""
    return os.environ.get("MLSYS_RETRAIN_CRON", "0 3 * * 1")


@dataclass(frozen=True)
class DataLayout:
    """The storage layout below the data directory (see docs/architecture.md)."""

    root: Path

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def transactions_landing(self) -> Path:
        return self.landing / "transactions"

    @property
    def customers_landing(self) -> Path:
        return self.landing / "customers"

    @property
    def mapping_file(self) -> Path:
        """Optional column mapping applied to every landing file (docs/data-contract.md)."""
        return self.landing / "mapping.yaml"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def serving(self) -> Path:
        return self.root / "serving"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    @property
    def simulation(self) -> Path:
        return self.root / "simulation"

    @property
    def secrets(self) -> Path:
        return self.root / ".secrets"

    def ensure(self) -> DataLayout:
        for folder in (self.transactions_landing, self.customers_landing):
            folder.mkdir(parents=True, exist_ok=True)
        return self
