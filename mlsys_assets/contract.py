"""The data contract of the landing zone, and the column mapping that adapts other exports to it.

docs/data-contract.md is the user-facing description; this module is its executable form. A feed
(transactions or customers) is described by a `FeedFormat`: which source column holds each contract
column, the field separator, the encoding and the date formats. Without a mapping file the contract's
own layout applies.
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


class MappingError(ValueError):
    """A mapping file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class FeedFormat:
    """How the files of one feed are laid out.

    `columns` maps a contract column to the source column name (or a 1-based position when the
    file has no header). `date_formats` are strptime formats tried in order; empty means ISO dates
    or timestamps.
    """

    feed: str
    columns: dict[str, str | int] = field(default_factory=dict)
    delimiter: str = ","
    header: bool = True
    encoding: str = "utf-8"
    date_formats: tuple[str, ...] = ()
    decimal_separator: str = "."

    @property
    def required(self) -> tuple[str, ...]:
        return FEEDS[self.feed][0]

    @property
    def contract_columns(self) -> tuple[str, ...]:
        return FEEDS[self.feed][0] + FEEDS[self.feed][1]

    def source_column(self, contract_column: str) -> str | int | None:
        """The source column for a contract column: mapped, or the contract name itself."""
        if contract_column in self.columns:
            return self.columns[contract_column]
        return contract_column if self.header else None


def default_format(feed: str) -> FeedFormat:
    return FeedFormat(feed=feed)


def _feed_from_dict(feed: str, raw: dict[str, Any], origin: str) -> FeedFormat:
    known = {"columns", "delimiter", "header", "encoding", "date_format", "decimal_separator"}
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

