"""Read landing files into DuckDB staging tables, keeping every row's line number and original text.

Nothing here judges the values: a file is staged as text, one row per data line, so that validation
(in SQL, next to the assets) can quarantine a bad row with its file, line, column and original text
while the good rows of the same file load. Only a file that cannot be read at all raises
`LandingFileError`, naming the file and what is wrong.

DuckDB's CSV reader does the parsing. It does not report line numbers of the rows it accepts, so each
file is also scanned as raw lines: the accepted rows, in order, are the raw lines that are neither
blank nor rejected by the parser. When a quoted field spans lines that pairing breaks; the file still
loads and its rows carry no line number (`lines_exact` is false in the summary).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from mlsys_assets.contract import PERSONAL_FIELDS, WHITESPACE, FeedFormat

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


@dataclass
class StagedFile:
    path: Path
    delivery_date: dt.date | None
    data_lines: int
    staged_rows: int
    rejected_lines: int
    lines_exact: bool
    ignored_columns: list[str] = field(default_factory=list)


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _day_sql(day: dt.date | None) -> str:
    return f"DATE '{day.isoformat()}'" if day else "NULL::DATE"


def _header_fields(path: Path, fmt: FeedFormat) -> list[str]:
    with path.open("rb") as handle:
        first = handle.readline()
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
    return positions


def _scan_raw_lines(con: duckdb.DuckDBPyConnection, path: Path, fmt: FeedFormat) -> None:
    """`_raw_lines(line, text)`: every physical line with its 1-based number (blank lines as NULL)."""
    con.execute("DROP TABLE IF EXISTS _raw_line_rejects")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _raw_scan AS
        SELECT row_number() OVER () AS ordinal, text
        FROM read_csv({_sql_str(str(path))}, header=false, auto_detect=false, columns={{'text': 'VARCHAR'}},
                      delim={_UNIT_SEPARATOR}, quote='', escape='', encoding={_sql_str(fmt.encoding)},
                      parallel=false, strict_mode=false, store_rejects=true,
                      rejects_table='_raw_line_rejects', rejects_scan='_raw_line_scans')
        """
    )
    # Lines the raw scan itself rejected (bad encoding) are missing from _raw_scan; number the rest
    # by walking the line numbers that were not rejected.
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _raw_lines AS
        WITH rejected AS (SELECT DISTINCT line FROM _raw_line_rejects),
             total AS (SELECT (SELECT count(*) FROM _raw_scan) + (SELECT count(*) FROM rejected) AS n),
             kept AS (
                 SELECT range AS line, row_number() OVER (ORDER BY range) AS ordinal
                 FROM range(1, (SELECT n FROM total) + 1)
                 WHERE range NOT IN (SELECT line FROM rejected)
             )
        SELECT kept.line, _raw_scan.text
        FROM _raw_scan JOIN kept USING (ordinal)
        """
    )


def _masked_text_sql(text_column: str, fmt: FeedFormat, positions: dict[str, int]) -> str:
    """SQL that blanks the personal fields of a raw line, so quarantine never keeps them in clear."""
    personal = [positions[c] for c in PERSONAL_FIELDS if c in positions]
    if not personal:
        return text_column
    # Positions are only trustworthy for lines that split into the expected fields; any e-mail-like
    # token left over (a malformed line) is masked by pattern as well.
    split = f"regexp_split_to_array(trim({text_column}), '\\s+')" if fmt.delimiter == WHITESPACE else f"string_split({text_column}, {_sql_str(fmt.delimiter)})"
    joiner = " " if fmt.delimiter == WHITESPACE else fmt.delimiter
    masked = f"list_transform({split}, lambda value, i: CASE WHEN i - 1 IN ({', '.join(map(str, personal))}) THEN '***' ELSE value END)"
    return f"regexp_replace(array_to_string({masked}, {_sql_str(joiner)}), '[^\\s,;|]+@[^\\s,;|]+', '***', 'g')"


def stage_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    fmt: FeedFormat,
    staged_table: str,
    rejects_table: str,
    delivery_date: dt.date | None = None,
    source_name: str | None = None,
) -> StagedFile:
    """Append the file's data lines to `staged_table` and its unparseable lines to `rejects_table`.

    `staged_table` has STAGED_COLUMNS followed by the feed's contract columns, all VARCHAR (NULL for a
    column the file does not have); `rejects_table` has REJECT_COLUMNS. Both must exist. Rows name
    the file as `source_name` (default: its path).
    """
    if not path.exists():
        raise LandingFileError(path, "file not found")
    if path.stat().st_size == 0:
        raise LandingFileError(path, "the file is empty (0 bytes); a day without data is a file with only the header line")
    if path.suffix.lower() == ".parquet":
        return _stage_parquet(con, path, fmt, staged_table, delivery_date, source_name)
    if path.suffix.lower() not in (".csv", ".txt", ".tsv"):
        raise LandingFileError(path, f"unsupported file type '{path.suffix}'; expected .csv or .parquet")

    source_columns = _header_fields(path, fmt)
    if not fmt.header:
        source_columns = [f"column{i}" for i in range(1, len(source_columns) + 1)]
    positions = _resolve_columns(path, fmt, source_columns)
    used = set(positions.values())
    ignored = [name for i, name in enumerate(source_columns) if i not in used] if fmt.header else []

    _scan_raw_lines(con, path, fmt)
    first_data_line = 2 if fmt.header else 1
    file_sql, name_sql, day_sql = _sql_str(str(path)), _sql_str(source_name or str(path)), _day_sql(delivery_date)
    masked_text = _masked_text_sql("text", fmt, positions)

    if fmt.delimiter == WHITESPACE:
        # DuckDB's CSV reader takes a single-character separator; runs of blanks are split here.
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _parsed AS
            SELECT line, text, regexp_split_to_array(trim(text), '\\s+') AS fields
            FROM _raw_lines WHERE line >= {first_data_line} AND trim(coalesce(text, '')) <> ''
            """
        )
        expected = len(source_columns)
        con.execute(
            f"""
            INSERT INTO {rejects_table}
            SELECT {name_sql}, {day_sql}, line, NULL, 'malformed_line',
                   'expected {expected} fields, found ' || len(fields), {masked_text}
            FROM _parsed WHERE len(fields) <> {expected}
            """
        )
        values = ", ".join(
            f"fields[{positions[c] + 1}]" if c in positions else "NULL" for c in fmt.contract_columns
        )
        con.execute(
            f"""
            INSERT INTO {staged_table}
            SELECT {name_sql}, {day_sql}, line, {masked_text}, {values}
            FROM _parsed WHERE len(fields) = {expected}
            """
        )
        rejected = con.execute(f"SELECT count(*) FROM _parsed WHERE len(fields) <> {expected}").fetchone()[0]
        staged = con.execute(f"SELECT count(*) FROM _parsed WHERE len(fields) = {expected}").fetchone()[0]
        data_lines = staged + rejected
        return StagedFile(path, delivery_date, data_lines, staged, rejected, True, ignored)

    names = [f"c{i}" for i in range(len(source_columns))]
    columns_sql = "{" + ", ".join(f"'{n}': 'VARCHAR'" for n in names) + "}"
    con.execute("DROP TABLE IF EXISTS _parse_rejects")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _parsed AS
        SELECT row_number() OVER () AS ordinal, *
        FROM read_csv({file_sql}, header={str(fmt.header).lower()}, auto_detect=false, columns={columns_sql},
                      delim={_sql_str(fmt.delimiter)}, quote='"', escape='"', encoding={_sql_str(fmt.encoding)},
                      parallel=false, strict_mode=true, store_rejects=true,
                      rejects_table='_parse_rejects', rejects_scan='_parse_scans')
        """
    )
    # Accepted rows pair, in order, with the raw lines that are neither blank nor rejected.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _accepted_lines AS
        SELECT row_number() OVER (ORDER BY line) AS ordinal, line, text
        FROM _raw_lines
        WHERE line >= {first_data_line} AND text IS NOT NULL
          AND line NOT IN (SELECT line FROM _parse_rejects)
        """
    )
    parsed = con.execute("SELECT count(*) FROM _parsed").fetchone()[0]
    lines_exact = parsed == con.execute("SELECT count(*) FROM _accepted_lines").fetchone()[0]
    values = ", ".join(f"_parsed.c{positions[c]}" if c in positions else "NULL" for c in fmt.contract_columns)
    if lines_exact:
        line_sql, text_sql, join_sql = "_accepted_lines.line", _masked_text_sql("_accepted_lines.text", fmt, positions), "JOIN _accepted_lines USING (ordinal)"
    else:
        delimiter = _sql_str(fmt.delimiter)
        fields = ", ".join(
            "'***'" if any(positions.get(p) == i for p in PERSONAL_FIELDS) else f"coalesce(_parsed.{n}, '')"
            for i, n in enumerate(names)
        )
        line_sql, text_sql, join_sql = "NULL", f"concat_ws({delimiter}, {fields})", ""
    con.execute(
        f"INSERT INTO {staged_table} SELECT {name_sql}, {day_sql}, {line_sql}, {text_sql}, {values} FROM _parsed {join_sql}"
    )
    # One quarantine row per rejected line, even when DuckDB reports several errors on it.
    reason_cases = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in PARSER_REASONS.items())
    column_cases = " ".join(f"WHEN '{n}' THEN {_sql_str(c)}" for n, c in zip(names, source_columns))
    con.execute(
        f"""
        INSERT INTO {rejects_table}
        SELECT {name_sql}, {day_sql}, r.line,
               any_value(CASE r.column_name {column_cases} END) FILTER (WHERE r.error_type LIKE 'INVALID%'),
               any_value(CASE r.error_type {reason_cases} ELSE 'malformed_line' END),
               arg_min(r.error_message, r.column_idx),
               any_value({_masked_text_sql('r.csv_line', fmt, positions)})
        FROM _parse_rejects r GROUP BY r.line
        """
    )
    rejected = con.execute("SELECT count(DISTINCT line) FROM _parse_rejects").fetchone()[0]
    return StagedFile(path, delivery_date, parsed + rejected, parsed, rejected, lines_exact, ignored)


def _stage_parquet(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    fmt: FeedFormat,
    staged_table: str,
    delivery_date: dt.date | None,
    source_name: str | None,
) -> StagedFile:
    file_sql, name_sql = _sql_str(str(path)), _sql_str(source_name or str(path))
    try:
        source_columns = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM read_parquet({file_sql})").fetchall()]
    except duckdb.Error as exc:
        raise LandingFileError(path, f"not a readable Parquet file ({str(exc).splitlines()[0]})") from exc
    positions = _resolve_columns(path, fmt, source_columns)
    used = set(positions.values())
    ignored = [name for i, name in enumerate(source_columns) if i not in used]
    values = ", ".join(
        f"CAST({_quote_ident(source_columns[positions[c]])} AS VARCHAR)" if c in positions else "NULL"
        for c in fmt.contract_columns
    )
    shown = [
        "'***'" if c in PERSONAL_FIELDS else f"coalesce(CAST({_quote_ident(source_columns[i])} AS VARCHAR), '')"
        for c, i in positions.items()
    ]
    day_sql = _day_sql(delivery_date)
    # Parquet has rows, not lines: the row number (1-based) stands in for the line.
    con.execute(
        f"""
        INSERT INTO {staged_table}
        SELECT {name_sql}, {day_sql}, file_row_number + 1, concat_ws(',', {', '.join(shown)}), {values}
        FROM read_parquet({file_sql}, file_row_number=true)
        """
    )
    rows = con.execute(f"SELECT count(*) FROM read_parquet({file_sql})").fetchone()[0]
    return StagedFile(path, delivery_date, rows, rows, 0, True, ignored)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
