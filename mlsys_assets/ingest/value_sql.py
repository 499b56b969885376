"""SQL expressions for staged text values, shared by validation (validate_*.sql) and `mlsys import`: dates in
the feed's formats, amounts with the feed's decimal separator, and the mapping's `exclude` filter.

The staged columns of a feed are its contract columns followed by the columns a mapping's `exclude` filter
names (exclude_1, ...); `excluded_sql` is the SQL that takes those rows out.
"""

from __future__ import annotations

import duckdb

from mlsys_assets.contract import EXCLUDED_REASON, FeedFormat


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
