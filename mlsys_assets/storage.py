"""Where every runtime file lives, and how it is written: the one owner of the data directory's layout.

`data_dir()` is the only reader of `MLSYS_DATA_DIR`; `DataLayout` names every file and folder below it;
`atomic_path` / `write_text_atomically` are the one way a file a reader may be looking at is written
(a temporary name beside it, then a rename: a reader never sees half a file). No Dagster here: the API,
the CLI and the simulator use it as they are.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the API imports this module and never opens the warehouse
    import duckdb

DATA_DIR_SETTING = "MLSYS_DATA_DIR"
ONLINE_STORE_FILE = "online_features.parquet"
PRODUCTION_POINTER_FILE = "production.json"


def data_dir() -> Path:
    """Root of all runtime data: `MLSYS_DATA_DIR`, default `./data` below the working directory."""
    return Path(os.environ.get(DATA_DIR_SETTING, "data")).resolve()


def online_store_in(serving: Path) -> Path:
    """The online store in a serving folder (the API knows only that folder)."""
    return Path(serving) / ONLINE_STORE_FILE


def use_data_dir(root: Path) -> None:
    """Make `root` the data directory of this process (and of the processes it starts): the CLI calls it for
    `--data-dir` before the definitions, which bind their resources to it, are imported."""
    os.environ[DATA_DIR_SETTING] = str(Path(root).resolve())


@contextmanager
def atomic_path(path: Path, temporary: Path | None = None) -> Iterator[Path]:
    """A temporary path beside `path` to write to (a file, or a folder); renamed over `path` when the block
    ends, removed if it fails. By default hidden and unique per process and thread, so two writers never
    share it; `temporary` names it where a reader must recognize it (an unfinished import in the landing zone)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary or path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            temporary.unlink(missing_ok=True)
        raise


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """The block's warehouse statements land together, or (on any exception) none of them does."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


def write_text_atomically(path: Path, text: str) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes_atomically(path: Path, chunks: list[bytes]) -> Path:
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        for chunk in chunks:
            handle.write(chunk)
    return Path(path)


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
        """Everything the API reads, and nothing else: it never opens the warehouse."""
        return self.root / "serving"

    @property
    def online_store(self) -> Path:
        """The newest feature snapshot, exported for the API (predictions/online_features)."""
        return online_store_in(self.serving)

    @property
    def production_pointer(self) -> Path:
        """Which model version serves each target (ml/model_store.py writes it, the API reads it)."""
        return self.serving / PRODUCTION_POINTER_FILE

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    def retention_export(self, day) -> Path:
        """The day's retention action list as CSV (predictions/retention_targets)."""
        return self.exports / "retention_targets" / f"{day}.csv"

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
