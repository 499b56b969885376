"""A landing file's layout, read from its first line: kind (CSV, whitespace-separated, Parquet), columns and
where each contract column sits. A file whose layout cannot be read raises LandingFileError naming the
problem; files that share a layout are staged together (reader.py)."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from mlsys_assets.contract import PERSONAL_FIELDS, WHITESPACE, FeedFormat
from mlsys_assets.ingest.landing_file import LandingFile, LandingFileError, StagedFile


@dataclass
class Layout:
    """Files that share a header can be parsed in one statement."""

    kind: str  # "csv", "whitespace" or "parquet"
    source_columns: tuple[str, ...]
    positions: dict[str, int]
    files: list[LandingFile] = field(default_factory=list)

    @property
    def ignored_columns(self) -> list[str]:
        used = set(self.positions.values())
        return [name for i, name in enumerate(self.source_columns) if i not in used]

    def with_files(self, files: list[LandingFile]) -> Layout:
        return Layout(self.kind, self.source_columns, self.positions, list(files))

    def summary(self, file: LandingFile, staged_rows: int, rejected_lines: int, lines_exact: bool = True) -> StagedFile:
        personal = tuple(self.positions[c] for c in PERSONAL_FIELDS if c in self.positions)
        return StagedFile(file, staged_rows + rejected_lines, staged_rows, rejected_lines, lines_exact,
                          self.ignored_columns, personal)


def sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def file_list_sql(files: list[LandingFile]) -> str:
    return "[" + ", ".join(sql_str(str(f.path)) for f in files) + "]"


def header_fields(path: Path, fmt: FeedFormat) -> list[str]:
    with path.open("rb") as handle:
        first = handle.readline()
    if b"\r" in first.rstrip(b"\r\n"):
        raise LandingFileError(path, "lines end in a lone carriage return (CR); save it with LF or CRLF line endings")
    try:
        text = first.decode("utf-8-sig" if fmt.encoding == "utf-8" else fmt.encoding).rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise LandingFileError(path, f"the header line is not valid {fmt.encoding} text ({exc.reason} at byte {exc.start}); set 'encoding' in the mapping file") from exc
    if not text.strip():
        raise LandingFileError(path, "the first line is blank; expected a header line with column names")
    if fmt.delimiter == WHITESPACE:
        return text.split()
    return next(csv.reader(io.StringIO(text), delimiter=fmt.delimiter))


def resolve_columns(path: Path, fmt: FeedFormat, source_columns: list[str]) -> dict[str, int]:
    """Contract column -> 0-based position in the file; raises for a missing required column."""
    positions: dict[str, int] = {}
    if fmt.header:
        duplicated = sorted({c for c in source_columns if source_columns.count(c) > 1})
        if duplicated:
            raise LandingFileError(path, f"the header repeats column(s) {duplicated}")
    for contract_column in fmt.contract_columns:
        source = fmt.source_column(contract_column)
        if source is None:
            continue
        if isinstance(source, int):
            if 1 <= source <= len(source_columns):
                positions[contract_column] = source - 1
            elif contract_column in fmt.required:
                raise LandingFileError(path, f"column position {source} for '{contract_column}' is beyond the {len(source_columns)} fields of the first line")
        elif source in source_columns:
            positions[contract_column] = source_columns.index(source)
        elif contract_column in fmt.required or contract_column in fmt.columns:
            mapped = f" (mapped to contract column '{contract_column}')" if source != contract_column else ""
            raise LandingFileError(path, f"missing required column '{source}'{mapped}; the header has {source_columns}")
    return positions | _resolve_exclude_columns(path, fmt, source_columns)


def _resolve_exclude_columns(path: Path, fmt: FeedFormat, source_columns: list[str]) -> dict[str, int]:
    """Staging name (exclude_1, ...) -> 0-based position of each column the mapping's `exclude` filters on."""
    positions: dict[str, int] = {}
    for staged, source in zip(fmt.exclude_columns, fmt.exclude):
        if isinstance(source, int) and 1 <= source <= len(source_columns):
            positions[staged] = source - 1
        elif isinstance(source, str) and source in source_columns:
            positions[staged] = source_columns.index(source)
        else:
            raise LandingFileError(
                path, f"the mapping's 'exclude' filters on column {source!r}, which the file lacks; the header has {source_columns}"
            )
    return positions


def inspect_file(file: LandingFile, fmt: FeedFormat, con: duckdb.DuckDBPyConnection) -> tuple[str, tuple[str, ...]]:
    """The file's kind and columns; raises LandingFileError when it cannot be read at all."""
    path = file.path
    if path.is_symlink():  # refused unread: its target's content must never reach a message or a table
        raise LandingFileError(path, f"a symbolic link (to {os.readlink(path)}): refused unread; copy the file in")
    if not path.exists():
        raise LandingFileError(path, "file not found")
    if not path.is_file():
        raise LandingFileError(path, "a directory, not a file" if path.is_dir() else "not a regular file")
    if path.stat().st_size == 0:
        raise LandingFileError(path, "the file is empty (0 bytes); a day without data is a file with only the header line")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            described = con.execute(f"DESCRIBE SELECT * FROM read_parquet({sql_str(str(path))})").fetchall()
        except duckdb.Error as exc:
            raise LandingFileError(path, f"not a readable Parquet file ({str(exc).splitlines()[0]})") from exc
        return "parquet", tuple(row[0] for row in described)
    if suffix not in (".csv", ".txt", ".tsv"):
        raise LandingFileError(path, f"unsupported file type '{path.suffix}'; expected .csv or .parquet")
    fields = header_fields(path, fmt)
    if not fmt.header:
        fields = [f"column{i}" for i in range(1, len(fields) + 1)]
    return ("whitespace" if fmt.delimiter == WHITESPACE else "csv"), tuple(fields)

