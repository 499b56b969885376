"""A shop the benchmarks run the pipeline on: its data directory, Dagster instance and command log."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass
class ShopDirectory:
    """`root/data` (MLSYS_DATA_DIR), `root/dagster_home` (DAGSTER_HOME) and `root/commands.log`."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def log(self) -> Path:
        return self.root / "commands.log"

    def environment(self, base: Mapping[str, str], **extra: str) -> dict[str, str]:
        """`base` with the shop's data directory and instance (and `extra`) set."""
        return {**base, "MLSYS_DATA_DIR": str(self.data), "DAGSTER_HOME": str(self.dagster_home), **extra}
