"""Read landing files into DuckDB staging tables, keeping every row's line number and original text.

Nothing here judges the values: files are staged as text, one row per data line, so that validation
(in SQL, next to the assets) can quarantine a bad row with its file, line, column and original text
while the good rows of the same file load. Only files that cannot be read at all raise
`LandingFileError`, naming each file and what is wrong, before anything is staged.

DuckDB's CSV reader does the parsing, one statement for all files of the same layout (a statement per
file would cost more than the parsing). It does not report the line numbers of the rows it accepts, so
the files are also scanned as raw lines: a file's accepted rows, in order, are its raw lines that are
neither blank nor rejected by the parser. Both scans run on one thread so that rows keep file order.
When a quoted field spans lines that pairing breaks; the file still loads and its rows carry no line
number (`lines_exact` is false in its summary).

Besides the contract columns, the columns a mapping's `exclude` filter names are staged (as exclude_1,
...); `excluded_sql` is the SQL that validation and the importer use to take those rows out.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from mlsys_assets.contract import EXCLUDED_REASON, PERSONAL_FIELDS, WHITESPACE, FeedFormat

STAGED_COLUMNS = ("source_file", "delivery_date", "line", "original_text")
REJECT_COLUMNS = ("source_file", "delivery_date", "line", "column_name", "reason", "detail", "original_text")

# DuckDB's reject error types, as the reasons a quarantined row carries.
PARSER_REASONS = {
    "TOO MANY COLUMNS": "malformed_line",
    "MISSING COLUMNS": "malformed_line",
    "UNQUOTED VALUE": "malformed_line",
    "LINE SIZE OVER MAXIMUM": "malformed_line",
    "INVALID ENCODING": "invalid_encoding",
    "INVALID UNICODE": "invalid_encoding",
}
# A field separator that never occurs in text, so the raw-line scan yields whole lines.
_UNIT_SEPARATOR = "chr(31)"


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


@dataclass
class _Layout:
    """Files that share a header can be parsed in one statement."""

    kind: str  # "csv", "whitespace" or "parquet"
    source_columns: tuple[str, ...]
    positions: dict[str, int]
    files: list[LandingFile] = field(default_factory=list)

    @property
    def ignored_columns(self) -> list[str]:
        used = set(self.positions.values())
        return [name for i, name in enumerate(self.source_columns) if i not in used]

    def summary(self, file: LandingFile, staged_rows: int, rejected_lines: int, lines_exact: bool = True) -> StagedFile:
        personal = tuple(self.positions[c] for c in PERSONAL_FIELDS if c in self.positions)
        return StagedFile(file, staged_rows + rejected_lines, staged_rows, rejected_lines, lines_exact,
                          self.ignored_columns, personal)


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def create_staging_tables(con: duckdb.DuckDBPyConnection, staged_table: str, rejects_table: str, fmt: FeedFormat) -> None:
    """(Re)create the temp tables `stage_file` appends to."""
    typed = {"delivery_date": "DATE", "line": "BIGINT"}
    columns = ", ".join(f"{c} {typed.get(c, 'VARCHAR')}" for c in STAGED_COLUMNS + fmt.staged_columns)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {staged_table} ({columns})")
    reject_columns = ", ".join(f"{c} {typed.get(c, 'VARCHAR')}" for c in REJECT_COLUMNS)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {rejects_table} ({reject_columns})")


def _day_sql(day: dt.date | None) -> str:
    return f"DATE '{day.isoformat()}'" if day else "NULL::DATE"


def _header_fields(path: Path, fmt: FeedFormat) -> list[str]:
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


def _resolve_columns(path: Path, fmt: FeedFormat, source_columns: list[str]) -> dict[str, int]:
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


def _inspect(file: LandingFile, fmt: FeedFormat, con: duckdb.DuckDBPyConnection) -> tuple[str, tuple[str, ...]]:
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
            described = con.execute(f"DESCRIBE SELECT * FROM read_parquet({_sql_str(str(path))})").fetchall()
        except duckdb.Error as exc:
            raise LandingFileError(path, f"not a readable Parquet file ({str(exc).splitlines()[0]})") from exc
        return "parquet", tuple(row[0] for row in described)
    if suffix not in (".csv", ".txt", ".tsv"):
        raise LandingFileError(path, f"unsupported file type '{path.suffix}'; expected .csv or .parquet")
    fields = _header_fields(path, fmt)
    if not fmt.header:
        fields = [f"column{i}" for i in range(1, len(fields) + 1)]
    return ("whitespace" if fmt.delimiter == WHITESPACE else "csv"), tuple(fields)


def stage_files(
    con: duckdb.DuckDBPyConnection, files: list[LandingFile], fmt: FeedFormat, staged_table: str, rejects_table: str
) -> list[StagedFile]:
    """Append the files' data lines to `staged_table` and their unparseable lines to `rejects_table`.

    `staged_table` has STAGED_COLUMNS followed by the feed's contract columns, all VARCHAR (NULL for a
    column a file does not have); `rejects_table` has REJECT_COLUMNS (see create_staging_tables).
    Raises LandingFilesError naming every file that cannot be read (the staging tables are then partial).
    """
    staged, errors = stage_readable_files(con, files, fmt, staged_table, rejects_table)
    if errors:
        raise LandingFilesError(errors)
    return staged


def stage_readable_files(
    con: duckdb.DuckDBPyConnection, files: list[LandingFile], fmt: FeedFormat, staged_table: str, rejects_table: str
) -> tuple[list[StagedFile], list[LandingFileError]]:
    """Stage every file that can be read; return them with one error per file that cannot.

    A file that fails only when parsed (random bytes after a valid header, say) does not take the
    others down: when a layout's one statement fails, its files are staged one by one.
    """
    layouts: dict[tuple, _Layout] = {}
    errors: list[LandingFileError] = []
    for file in files:
        try:
            kind, columns = _inspect(file, fmt, con)
            layout = layouts.get((kind, columns))
            if layout is None:
                layout = layouts[(kind, columns)] = _Layout(kind, columns, _resolve_columns(file.path, fmt, list(columns)))
            layout.files.append(file)
        except LandingFileError as exc:
            errors.append(exc)
    readable = [f for layout in layouts.values() for f in layout.files]
    con.execute("CREATE OR REPLACE TEMP TABLE _files (filename VARCHAR, source_name VARCHAR, delivery_date DATE)")
    if readable:
        con.executemany(
            "INSERT INTO _files VALUES (?, ?, ?)", [[str(f.path), f.source_name, f.delivery_date] for f in readable]
        )
    staged: list[StagedFile] = []
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    con.execute("SET threads = 1")
    try:
        for layout in layouts.values():
            staged += _stage_layout(con, layout, fmt, staged_table, rejects_table, errors)
    finally:
        con.execute(f"SET threads = {int(threads)}")
    return staged, errors


def _stage_layout(con, layout: _Layout, fmt: FeedFormat, staged_table: str, rejects_table: str,
                  errors: list[LandingFileError]) -> list[StagedFile]:
    """Stage a layout in one statement; when that fails, file by file, appending the failures to `errors`."""
    stage = {"csv": _stage_csv, "whitespace": _stage_whitespace, "parquet": _stage_parquet}[layout.kind]
    try:
        return stage(con, layout, fmt, staged_table, rejects_table)
    except duckdb.Error as exc:
        _unstage(con, layout.files, staged_table, rejects_table)
        if len(layout.files) == 1:
            problem = str(exc).splitlines()[0][:200]
            errors.append(LandingFileError(layout.files[0].path, f"cannot be parsed as {layout.kind} ({problem})"))
            return []
    staged: list[StagedFile] = []
    for file in layout.files:
        single = _Layout(layout.kind, layout.source_columns, layout.positions, [file])
        staged += _stage_layout(con, single, fmt, staged_table, rejects_table, errors)
    return staged


def _unstage(con, files: list[LandingFile], staged_table: str, rejects_table: str) -> None:
    """Take back whatever a failed statement staged of these files."""
    names = [f.source_name for f in files]
    for table in (staged_table, rejects_table):
        con.execute(f"DELETE FROM {table} WHERE list_contains(?, source_file)", [names])


def _file_list_sql(layout: _Layout) -> str:
    return "[" + ", ".join(_sql_str(str(f.path)) for f in layout.files) + "]"


def _scan_raw_lines(con: duckdb.DuckDBPyConnection, layout: _Layout, fmt: FeedFormat) -> None:
    """`_raw_lines(filename, line, text)`: every physical line with its 1-based number (blank: NULL text)."""
    con.execute("DROP TABLE IF EXISTS _raw_line_rejects")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _raw_scan AS
        SELECT filename, row_number() OVER () AS ordinal, text
        FROM read_csv({_file_list_sql(layout)}, header=false, auto_detect=false, columns={{'text': 'VARCHAR'}},
                      delim={_UNIT_SEPARATOR}, quote='', escape='', encoding={_sql_str(fmt.encoding)},
                      parallel=false, strict_mode=false, filename=true, store_rejects=true,
                      rejects_table='_raw_line_rejects', rejects_scan='_raw_line_scans')
        """
    )
    # Lines the raw scan itself rejected (bad encoding) are missing from _raw_scan; number the others
    # by walking each file's line numbers that were not rejected.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _raw_line_rejected AS "
        "SELECT s.file_path AS filename, r.* FROM _raw_line_rejects r JOIN _raw_line_scans s USING (scan_id, file_id)"
    )
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _raw_lines AS
        WITH rejected AS (SELECT DISTINCT filename, line FROM _raw_line_rejected),
        scanned AS (
            SELECT filename, ordinal - min(ordinal) OVER (PARTITION BY filename) + 1 AS ordinal, text FROM _raw_scan
        ),
        totals AS (
            SELECT filename, count(*) + coalesce(any_value(n_rejected), 0) AS n
            FROM scanned LEFT JOIN (SELECT filename, count(*) AS n_rejected FROM rejected GROUP BY ALL) USING (filename)
            GROUP BY ALL
        ),
        kept AS (
            SELECT filename, line, row_number() OVER (PARTITION BY filename ORDER BY line) AS ordinal
            FROM (SELECT filename, unnest(range(1, n + 1)) AS line FROM totals)
            ANTI JOIN rejected USING (filename, line)
        )
        SELECT filename, kept.line, scanned.text
        FROM scanned JOIN kept USING (filename, ordinal)
        """
    )


def _stage_whitespace(con, layout: _Layout, fmt: FeedFormat, staged_table: str, rejects_table: str) -> list[StagedFile]:
    # DuckDB's CSV reader takes a single-character separator; runs of blanks (tabs too) are split here.
    _scan_raw_lines(con, layout, fmt)
    first_data_line = 2 if fmt.header else 1
    expected = len(layout.source_columns)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _parsed AS
        SELECT filename, line, text, regexp_split_to_array(regexp_replace(text, '^\\s+|\\s+$', '', 'g'), '\\s+') AS fields
        FROM _raw_lines WHERE line >= {first_data_line} AND regexp_matches(coalesce(text, ''), '\\S')
        """
    )
    con.execute(
        f"""
        INSERT INTO {rejects_table}
        SELECT f.source_name, f.delivery_date, line, NULL, 'malformed_line',
               'expected {expected} fields, found ' || len(fields), text
        FROM _parsed JOIN _files f USING (filename) WHERE len(fields) <> {expected}
        UNION ALL
        SELECT f.source_name, f.delivery_date, r.line, NULL, 'invalid_encoding', any_value(r.error_message), any_value(r.csv_line)
        FROM _raw_line_rejected r JOIN _files f USING (filename) WHERE r.line >= {first_data_line}
        GROUP BY ALL
        """
    )
    values = ", ".join(
        f"fields[{layout.positions[c] + 1}]" if c in layout.positions else "NULL" for c in fmt.staged_columns
    )
    con.execute(
        f"""
        INSERT INTO {staged_table}
        SELECT f.source_name, f.delivery_date, line, text, {values}
        FROM _parsed JOIN _files f USING (filename) WHERE len(fields) = {expected}
        """
    )
    counts = {
        name: (good, bad)
        for name, good, bad in con.execute(
            f"""
            SELECT f.filename,
                   (SELECT count(*) FROM _parsed p WHERE p.filename = f.filename AND len(p.fields) = {expected}),
                   (SELECT count(*) FROM _parsed p WHERE p.filename = f.filename AND len(p.fields) <> {expected})
                   + (SELECT count(DISTINCT line) FROM _raw_line_rejected r WHERE r.filename = f.filename AND r.line >= {first_data_line})
            FROM _files f
            """
        ).fetchall()
    }
    return [layout.summary(f, *counts[str(f.path)]) for f in layout.files]


def _stage_csv(con, layout: _Layout, fmt: FeedFormat, staged_table: str, rejects_table: str) -> list[StagedFile]:
    _scan_raw_lines(con, layout, fmt)
    first_data_line = 2 if fmt.header else 1
    positions = layout.positions
    names = [f"c{i}" for i in range(len(layout.source_columns))]
    columns_sql = "{" + ", ".join(f"'{n}': 'VARCHAR'" for n in names) + "}"
    con.execute("DROP TABLE IF EXISTS _parse_rejects")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _parsed AS
        SELECT filename, ordinal - min(ordinal) OVER (PARTITION BY filename) + 1 AS ordinal, * EXCLUDE (filename, ordinal)
        FROM (
            SELECT row_number() OVER () AS ordinal, *
            FROM read_csv({_file_list_sql(layout)}, header={str(fmt.header).lower()}, auto_detect=false,
                          columns={columns_sql}, delim={_sql_str(fmt.delimiter)}, quote='"', escape='"',
                          encoding={_sql_str(fmt.encoding)}, parallel=false, strict_mode=true, filename=true,
                          store_rejects=true, rejects_table='_parse_rejects', rejects_scan='_parse_scans')
        )
        """
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _parse_rejected AS "
        "SELECT s.file_path AS filename, r.* FROM _parse_rejects r JOIN _parse_scans s USING (scan_id, file_id)"
    )
    # A file's accepted rows pair, in order, with its raw lines that are neither blank nor rejected.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _accepted_lines AS
        SELECT filename, row_number() OVER (PARTITION BY filename ORDER BY line) AS ordinal, line, text
        FROM _raw_lines
        WHERE line >= {first_data_line} AND text IS NOT NULL
          AND (filename, line) NOT IN (SELECT (filename, line) FROM _parse_rejected)
        """
    )
    counts = {
        name: (parsed, accepted, rejected)
        for name, parsed, accepted, rejected in con.execute(
            """
            SELECT f.filename,
                   (SELECT count(*) FROM _parsed p WHERE p.filename = f.filename),
                   (SELECT count(*) FROM _accepted_lines a WHERE a.filename = f.filename),
                   (SELECT count(DISTINCT line) FROM _parse_rejected r WHERE r.filename = f.filename)
            FROM _files f
            """
        ).fetchall()
    }
    inexact = [name for name, (parsed, accepted, _) in counts.items() if parsed != accepted]
    con.execute("CREATE OR REPLACE TEMP TABLE _inexact (filename VARCHAR)")
    if inexact:
        con.executemany("INSERT INTO _inexact VALUES (?)", [[name] for name in inexact])
    values = ", ".join(f"p.c{positions[c]}" if c in positions else "NULL" for c in fmt.staged_columns)
    reconstructed = ", ".join(f"coalesce(p.{n}, '')" for n in names)
    delimiter = _sql_str(fmt.delimiter)
    con.execute(
        f"""
        INSERT INTO {staged_table}
        SELECT f.source_name, f.delivery_date,
               CASE WHEN i.filename IS NULL THEN a.line END,
               CASE WHEN i.filename IS NULL THEN a.text ELSE concat_ws({delimiter}, {reconstructed}) END,
               {values}
        FROM _parsed p
        JOIN _files f USING (filename)
        LEFT JOIN _inexact i USING (filename)
        LEFT JOIN _accepted_lines a ON a.filename = p.filename AND a.ordinal = p.ordinal AND i.filename IS NULL
        """
    )
    # One quarantine row per rejected line, even when DuckDB reports several errors on it.
    reason_cases = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in PARSER_REASONS.items())
    column_cases = " ".join(f"WHEN '{n}' THEN {_sql_str(c)}" for n, c in zip(names, layout.source_columns))
    con.execute(
        f"""
        INSERT INTO {rejects_table}
        SELECT any_value(f.source_name), any_value(f.delivery_date), r.line,
               any_value(CASE r.column_name {column_cases} END) FILTER (WHERE r.error_type LIKE 'INVALID%'),
               any_value(CASE r.error_type {reason_cases} ELSE 'malformed_line' END),
               arg_min(r.error_message, r.column_idx),
               any_value(r.csv_line)
        FROM _parse_rejected r JOIN _files f USING (filename)
        GROUP BY r.filename, r.line
        """
    )
    return [
        layout.summary(f, counts[str(f.path)][0], counts[str(f.path)][2], str(f.path) not in inexact)
        for f in layout.files
    ]


def _stage_parquet(con, layout: _Layout, fmt: FeedFormat, staged_table: str, rejects_table: str) -> list[StagedFile]:
    columns, positions = layout.source_columns, layout.positions
    values = ", ".join(
        f"CAST({_quote_ident(columns[positions[c]])} AS VARCHAR)" if c in positions else "NULL"
        for c in fmt.staged_columns
    )
    shown = [f"coalesce(CAST({_quote_ident(name)} AS VARCHAR), '')" for name in columns]
    # Parquet has rows, not lines: the row number (1-based) stands in for the line.
    con.execute(
        f"""
        INSERT INTO {staged_table}
        SELECT f.source_name, f.delivery_date, file_row_number + 1, concat_ws(',', {', '.join(shown)}), {values}
        FROM read_parquet({_file_list_sql(layout)}, filename=true, file_row_number=true) JOIN _files f USING (filename)
        """
    )
    rows = dict(con.execute(
        f"SELECT filename, count(*) FROM read_parquet({_file_list_sql(layout)}, filename=true) GROUP BY ALL"
    ).fetchall())
    return [layout.summary(f, rows.get(str(f.path), 0), 0) for f in layout.files]


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def date_sql(column: str, fmt: FeedFormat) -> str:
    """SQL parsing a date/time text column with the feed's formats (NULL when it does not parse)."""
    if fmt.date_formats:
        formats = ", ".join("'" + f.replace("'", "''") + "'" for f in fmt.date_formats)
        return f"try_strptime(trim({column}), [{formats}])"
    return f"try_cast(trim({column}) AS TIMESTAMP)"


def date_formats_text(fmt: FeedFormat) -> str:
    return " or ".join(fmt.date_formats).replace("'", "''") if fmt.date_formats else "an ISO date or timestamp"


def amount_text_sql(fmt: FeedFormat, column: str = "s.amount") -> str:
    """SQL normalizing an amount text to a '.' decimal point."""
    if fmt.decimal_separator == ",":
        # "1.234,56": dots group thousands, the comma is the decimal point.
        return f"replace(replace(trim({column}), '.', ''), ',', '.')"
    return f"trim({column})"


def register_exclusions(con: duckdb.DuckDBPyConnection, fmt: FeedFormat) -> None:
    """`_exclude_values(filter_no, label, value)`: the mapping's `exclude` filters, for `excluded_sql`."""
    con.execute("CREATE OR REPLACE TEMP TABLE _exclude_values (filter_no INTEGER, label VARCHAR, value VARCHAR)")
    rows = [[i, str(column), value] for i, (column, values) in enumerate(fmt.exclude.items(), 1) for value in values]
    if rows:
        con.executemany("INSERT INTO _exclude_values VALUES (?, ?, ?)", rows)


def excluded_sql(fmt: FeedFormat, alias: str = "s") -> str:
    """SQL for a staged row's exclusion: a problem struct (column, reason, detail), or NULL when no filter matches.

    The first matching filter wins; values match after trimming, case-insensitively. The filters' labels
    and values are read from `_exclude_values` (see register_exclusions) on the same connection.
    """
    matches = [
        f"(SELECT any_value({{'column': x.label, 'reason': '{EXCLUDED_REASON}', "
        f"'detail': x.label || ' = ''' || trim({alias}.{staged}) || ''''}}) "
        f"FROM _exclude_values x WHERE x.filter_no = {i} AND x.value = lower(trim({alias}.{staged})))"
        for i, staged in enumerate(fmt.exclude_columns, 1)
    ]
    if not matches:
        return "NULL::STRUCT(\"column\" VARCHAR, reason VARCHAR, detail VARCHAR)"
    return matches[0] if len(matches) == 1 else f"coalesce({', '.join(matches)})"
