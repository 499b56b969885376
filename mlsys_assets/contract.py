"""The data contract of the landing zone, and the column mapping that adapts other exports to it.

docs/data-contract.md is the user-facing description; this module is its executable form. A feed
(transactions or customers) is described by a `FeedFormat`: which source column holds each contract
column, the field separator, the encoding, the date formats and which rows the mapping excludes (e.g.
cancelled orders). Without a mapping file the contract's own layout applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TRANSACTION_REQUIRED = ("customer_id", "event_time", "amount")
TRANSACTION_OPTIONAL = ("transaction_id", "quantity")
CUSTOMER_REQUIRED = ("customer_id",)
CUSTOMER_OPTIONAL = ("signup_date", "country", "acquisition_channel", "email", "name")
PERSONAL_FIELDS = ("email", "name")

FEEDS = {
    "transactions": (TRANSACTION_REQUIRED, TRANSACTION_OPTIONAL),
    "customers": (CUSTOMER_REQUIRED, CUSTOMER_OPTIONAL),
}
# The date-like contract column of each feed, whose format the mapping may set.
DATE_COLUMN = {"transactions": "event_time", "customers": "signup_date"}
SUPPORTED_ENCODINGS = ("utf-8", "utf-16", "latin-1")
WHITESPACE = "whitespace"
# The quarantine reason of a row a mapping's `exclude` filter matched (a cancelled order, say).
EXCLUDED_REASON = "excluded_by_mapping"
_EXCLUDE_SHAPE = "must map a column to a list of values, e.g. `exclude: {status: [cancelled, refunded]}`"


class MappingError(ValueError):
    """A mapping file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class FeedFormat:
    """How the files of one feed are laid out.

    `columns` maps a contract column to the source column name (or a 1-based position when the
    file has no header). `date_formats` are strptime formats tried in order; empty means ISO dates
    or timestamps. `exclude` maps a source column (name, or 1-based position) to values, trimmed and
    lower-cased, that mark a row as not part of the feed (it goes to the quarantine, not the table).
    """

    feed: str
    columns: dict[str, str | int] = field(default_factory=dict)
    delimiter: str = ","
    header: bool = True
    encoding: str = "utf-8"
    date_formats: tuple[str, ...] = ()
    decimal_separator: str = "."
    exclude: dict[str | int, tuple[str, ...]] = field(default_factory=dict)

    @property
    def required(self) -> tuple[str, ...]:
        return FEEDS[self.feed][0]

    @property
    def contract_columns(self) -> tuple[str, ...]:
        return FEEDS[self.feed][0] + FEEDS[self.feed][1]

    @property
    def exclude_columns(self) -> tuple[str, ...]:
        """Staging names of the `exclude` filter columns, in mapping order: exclude_1, exclude_2, ..."""
        return tuple(f"exclude_{i}" for i in range(1, len(self.exclude) + 1))

    @property
    def staged_columns(self) -> tuple[str, ...]:
        """Contract columns, then the filter columns: what the reader stages from each file."""
        return self.contract_columns + self.exclude_columns

    def exclude_text(self) -> str:
        """The filter in words, e.g. `status in [cancelled, refunded]`."""
        return "; ".join(f"{column} in [{', '.join(values)}]" for column, values in self.exclude.items())

    def source_column(self, contract_column: str) -> str | int | None:
        """The source column for a contract column: mapped, or the contract name itself."""
        if contract_column in self.columns:
            return self.columns[contract_column]
        return contract_column if self.header else None


def default_format(feed: str) -> FeedFormat:
    return FeedFormat(feed=feed)


def _exclude_from_dict(feed: str, raw: Any, origin: str, header: bool) -> dict[str | int, tuple[str, ...]]:
    """`exclude: {column: [value, ...]}` -> column -> trimmed, lower-cased values."""
    if raw is None or raw == {}:
        return {}
    if not isinstance(raw, dict):
        raise MappingError(f"{origin}: '{feed}.exclude' {_EXCLUDE_SHAPE}")
    exclude: dict[str | int, tuple[str, ...]] = {}
    for column, values in raw.items():
        if isinstance(column, bool) or not isinstance(column, (str, int)) or not str(column).strip() or (
            isinstance(column, int) and column < 1
        ):
            raise MappingError(f"{origin}: '{feed}.exclude' key {column!r} must be a column name or a 1-based position")
        if not header and not isinstance(column, int):
            raise MappingError(f"{origin}: '{feed}.header' is false, so '{feed}.exclude' needs 1-based positions, got {column!r}")
        values = [values] if isinstance(values, str) else values
        if not isinstance(values, list) or not values:
            raise MappingError(f"{origin}: '{feed}.exclude.{column}' {_EXCLUDE_SHAPE}")
        if any(isinstance(v, bool) or not isinstance(v, (str, int, float)) for v in values):
            raise MappingError(
                f"{origin}: '{feed}.exclude.{column}' values must be text or numbers (quote yes/no/true/false), got {values!r}"
            )
        exclude[column] = tuple(dict.fromkeys(str(v).strip().lower() for v in values))
    return exclude


def _feed_from_dict(feed: str, raw: dict[str, Any], origin: str) -> FeedFormat:
    known = {"columns", "delimiter", "header", "encoding", "date_format", "decimal_separator", "exclude"}
    unknown = set(raw) - known
    if unknown:
        raise MappingError(f"{origin}: unknown key(s) {sorted(unknown)} under '{feed}' (allowed: {sorted(known)})")
    columns = raw.get("columns") or {}
    if not isinstance(columns, dict):
        raise MappingError(f"{origin}: '{feed}.columns' must map contract columns to source columns")
    contract = FEEDS[feed][0] + FEEDS[feed][1]
    for contract_column, source in columns.items():
        if contract_column not in contract:
            raise MappingError(
                f"{origin}: '{feed}.columns.{contract_column}' is not a contract column (expected one of {list(contract)})"
            )
        if not isinstance(source, (str, int)) or isinstance(source, bool):
            raise MappingError(f"{origin}: '{feed}.columns.{contract_column}' must be a column name or a 1-based position")
    header = raw.get("header", True)
    if not isinstance(header, bool):
        raise MappingError(f"{origin}: '{feed}.header' must be true or false")
    if not header:
        missing = [c for c in FEEDS[feed][0] if not isinstance(columns.get(c), int)]
        if missing:
            raise MappingError(f"{origin}: '{feed}.header' is false, so columns {missing} need 1-based positions")
    delimiter = raw.get("delimiter", ",")
    delimiter = {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter)
    if delimiter != WHITESPACE and (not isinstance(delimiter, str) or len(delimiter) != 1):
        raise MappingError(f"{origin}: '{feed}.delimiter' must be one character, 'tab' or '{WHITESPACE}', got {delimiter!r}")
    encoding = str(raw.get("encoding", "utf-8")).lower().replace("_", "-")
    encoding = {"utf8": "utf-8", "latin1": "latin-1", "iso-8859-1": "latin-1", "utf16": "utf-16"}.get(encoding, encoding)
    if encoding not in SUPPORTED_ENCODINGS:
        raise MappingError(f"{origin}: '{feed}.encoding' must be one of {list(SUPPORTED_ENCODINGS)}, got {encoding!r}")
    date_format = raw.get("date_format") or ()
    date_formats = (date_format,) if isinstance(date_format, str) else tuple(date_format)
    decimal_separator = raw.get("decimal_separator", ".")
    if decimal_separator not in (".", ","):
        raise MappingError(f"{origin}: '{feed}.decimal_separator' must be '.' or ','")
    if decimal_separator == delimiter:
        raise MappingError(f"{origin}: '{feed}.decimal_separator' cannot be the field delimiter")
    return FeedFormat(
        feed=feed,
        columns=dict(columns),
        delimiter=delimiter,
        header=header,
        encoding=encoding,
        date_formats=date_formats,
        decimal_separator=decimal_separator,
        exclude=_exclude_from_dict(feed, raw.get("exclude"), origin, header),
    )


def load_mapping(path: Path | None) -> dict[str, FeedFormat]:
    """Feed formats from a mapping YAML file; feeds it does not mention keep the contract layout."""
    formats = {feed: default_format(feed) for feed in FEEDS}
    if path is None or not path.exists():
        return formats
    origin = str(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise MappingError(f"{origin}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise MappingError(f"{origin}: expected a mapping with keys {sorted(FEEDS)}")
    unknown = set(raw) - set(FEEDS)
    if unknown:
        raise MappingError(f"{origin}: unknown feed(s) {sorted(unknown)} (expected {sorted(FEEDS)})")
    for feed, section in raw.items():
        if not isinstance(section, dict):
            raise MappingError(f"{origin}: '{feed}' must be a mapping")
        formats[feed] = _feed_from_dict(feed, section, origin)
    return formats

