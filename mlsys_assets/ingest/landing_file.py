"""What the reader takes and gives: a landing file, its staging summary, and the errors of files that cannot
be read at all. Plain data, no DuckDB and no Dagster."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

# The staging tables: these columns, then the feed's staged columns (FeedFormat.staged_columns).
STAGED_COLUMNS = ("source_file", "delivery_date", "line", "original_text")
REJECT_COLUMNS = ("source_file", "delivery_date", "line", "column_name", "reason", "detail", "original_text")


class LandingFileError(ValueError):
    """A landing file that cannot be read at all."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class LandingFilesError(ValueError):
    """Some files of a batch cannot be read; nothing of the batch was staged."""

    def __init__(self, errors: list[LandingFileError]):
        super().__init__(f"{len(errors)} landing file(s) cannot be read:\n- " + "\n- ".join(map(str, errors)))
        self.errors = errors


@dataclass(frozen=True)
class LandingFile:
    path: Path
    source_name: str  # how rows name the file (relative to the landing root)
    delivery_date: dt.date | None = None


@dataclass
class StagedFile:
    file: LandingFile
    data_lines: int
    staged_rows: int
    rejected_lines: int
    lines_exact: bool
    ignored_columns: list[str] = field(default_factory=list)
    # 0-based positions of personal fields in the file's lines; staged text is NOT masked, so whoever
    # stores it (the customers asset) masks these first.
    personal_positions: tuple[int, ...] = ()
