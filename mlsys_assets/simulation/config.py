"""What to simulate: ``SimulationConfig``, its options and their checks, and what a run wrote.

The regime options (``REGIME_FIELDS``, named combinations in ``regimes.py``) make the log look like
other shops'; at their defaults they change nothing, so the demo shop's files stay byte for byte the same.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path

from mlsys_assets.simulation.seasonality import YEARLY_AMPLITUDE

DRIFT_KINDS = ("channel", "price")
FILE_FORMATS = ("csv", "parquet")
ACQUISITION_KINDS = ("growing", "single_cohort")
EXPORT_LAYOUTS = ("daily", "whitespace_export")
# meta.json lists only the regime options that differ from the default, so the demo shop's files stay as they were.
REGIME_FIELDS = (
    "acquisition", "cohort_days", "purchase_rate_scale", "whale_share", "whale_spend_factor",
    "seasonality_scale", "zero_amount_share", "refund_share", "cancelled_share", "customers_export",
    "export_layout", "future_days", "regime",
)


def yesterday() -> datetime.date:
    """The default last simulated day: the newest day a shop can have delivered."""
    return datetime.date.today() - datetime.timedelta(days=1)


def _default_start() -> datetime.date:
    return yesterday() - datetime.timedelta(days=364)



@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate; the defaults are 3,000 customers over the year up to yesterday."""

    customers: int = 3000
    start: datetime.date = field(default_factory=_default_start)  # first day, inclusive
    end: datetime.date = field(default_factory=yesterday)  # last day, inclusive
    seed: int = 7
    drift_from: datetime.date | None = None  # first day of the drift, if any
    drift_kind: str = "channel"  # one of DRIFT_KINDS
    dirty_share: float = 0.0  # share of rows given defects, e.g. 0.002
    file_format: str = "csv"  # of the transaction files, one of FILE_FORMATS
    # Regimes: what real transaction logs look like (regimes.REGIMES names combinations).
    acquisition: str = "growing"  # one of ACQUISITION_KINDS; single_cohort: all signups in the first cohort_days
    cohort_days: int = 84
    purchase_rate_scale: float = 1.0  # multiplies every customer's repeat purchase rate
    whale_share: float = 0.0  # share of customers whose mean spend is multiplied by whale_spend_factor
    whale_spend_factor: float = 20.0
    seasonality_scale: float = 1.0  # multiplies the yearly and the holiday amplitude
    zero_amount_share: float = 0.0  # share of sales with amount 0.00 (they still count as purchases)
    refund_share: float = 0.0  # extra refund lines (negative amounts) per sale
    cancelled_share: float = 0.0  # share of all lines that are cancelled orders; > 0 adds a status column
    customers_export: bool = True  # False: no landing/customers file
    export_layout: str = "daily"  # one of EXPORT_LAYOUTS
    future_days: int = 0  # days simulated after end into simulation/future.parquet, never delivered
    regime: str | None = None  # name of the regime, recorded in meta.json

    def __post_init__(self) -> None:
        if self.customers < 1:
            raise ValueError(f"customers must be positive, got {self.customers}")
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        if self.drift_kind not in DRIFT_KINDS:
            raise ValueError(f"drift_kind must be one of {DRIFT_KINDS}, got {self.drift_kind!r}")
        if self.file_format not in FILE_FORMATS:
            raise ValueError(f"file_format must be one of {FILE_FORMATS}, got {self.file_format!r}")
        if not 0.0 <= self.dirty_share < 1.0:
            raise ValueError(f"dirty_share must be in [0, 1), got {self.dirty_share}")
        self._check_regime_fields()

    def _check_regime_fields(self) -> None:
        if self.acquisition not in ACQUISITION_KINDS:
            raise ValueError(f"acquisition must be one of {ACQUISITION_KINDS}, got {self.acquisition!r}")
        if self.export_layout not in EXPORT_LAYOUTS:
            raise ValueError(f"export_layout must be one of {EXPORT_LAYOUTS}, got {self.export_layout!r}")
        if self.cohort_days < 1 or self.future_days < 0:
            raise ValueError(f"need cohort_days >= 1 and future_days >= 0, got {self.cohort_days}, {self.future_days}")
        if self.purchase_rate_scale < 0 or self.whale_spend_factor <= 0:
            raise ValueError("purchase_rate_scale must be >= 0 and whale_spend_factor > 0")
        limit = 1.0 / YEARLY_AMPLITUDE  # keeps every day's intensity positive
        if not 0.0 <= self.seasonality_scale < limit:
            raise ValueError(f"seasonality_scale must be in [0, {limit:.2f}), got {self.seasonality_scale}")
        for name in ("whale_share", "zero_amount_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("refund_share", "cancelled_share"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")



@dataclass(frozen=True)
class SimulationSummary:
    """What simulate wrote; transactions counts the lines written, dirty ones included."""

    customers: int
    transactions: int
    days: int
    transaction_files: int
    dirty_rows: int
    landing_dir: Path
    ground_truth_path: Path
    export_path: Path | None = None  # export_layout "whitespace_export": the one export file ...
    mapping_path: Path | None = None  # ... and the mapping for `mlsys import`
    future_path: Path | None = None  # future_days > 0: the realised sales after end
    future_transactions: int = 0
