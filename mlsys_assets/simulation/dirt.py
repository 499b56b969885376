"""The injected dirt: defective transaction lines and customer rows, as a source system writes them.

With ``dirty_share`` > 0, that share of transaction lines (CSV only) is replaced, in equal proportions,
by the defects in ``DIRTY_TRANSACTION_KINDS``; the clean transaction of a replaced line is lost, as when
a source system corrupts a record. A duplicate copies an earlier clean line of the same file, so each
file's first line stays clean. Customers get about the same share (at least one of each kind) of the
defects in ``DIRTY_CUSTOMER_KINDS``: unparseable signup dates are written in place, rows with an empty
id or a missing field are inserted after a real row, so every customer keeps its own row. The platform
must quarantine each of them (docs/data-contract.md).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlsys_assets.simulation.process import Transactions
from mlsys_assets.simulation.seasonality import Calendar
from mlsys_assets.simulation.text import (
    CUSTOMER_COLUMNS,
    TEXT,
    as_text,
    join,
    literal,
    replace_rows,
    timestamps,
    zero_padded,
)

DIRTY_TRANSACTION_KINDS = (
    "extra_field",
    "non_numeric_amount",
    "unparseable_event_time",
    "negative_amount",
    "duplicate_transaction_id",
    "huge_amount",
    "future_event_time",
    "empty_customer_id",
    "unknown_customer_id",
)
DIRTY_CUSTOMER_KINDS = ("unparseable_signup_date", "empty_customer_id", "missing_field")
HUGE_AMOUNT_TEXT = "999999999.00"
MAX_FUTURE_DAYS = 30


def _is_kind(kind: np.ndarray, name: str) -> pa.Array:
    """Which of the defective lines have the defect of this name."""
    return pa.array(kind == DIRTY_TRANSACTION_KINDS.index(name))


def dirty_transaction_lines(
    rng: np.random.Generator,
    share: float,
    calendar: Calendar,
    transactions: Transactions,
    fields: dict[str, pa.Array],
    clean_lines: pa.Array,
) -> tuple[pa.Array, dict[str, int]]:
    """clean_lines with a share of them replaced by defective lines, and the count per kind."""
    day = transactions.day
    first_row_of_day = np.searchsorted(day, day, side="left")
    # A duplicate copies an earlier clean line of its file; keeping every file's first line clean guarantees one.
    eligible = np.flatnonzero(np.arange(len(day)) > first_row_of_day)
    count = min(int(round(share * len(day))), len(eligible))
    rows = np.sort(rng.choice(eligible, size=count, replace=False))
    kind = rng.permutation(np.arange(count) % len(DIRTY_TRANSACTION_KINDS))

    # Each defective line is rebuilt from the clean fields of its row with one field spoiled; the draws
    # below happen in this order, which keeps the dirt of a seed the same.
    dirty = {name: values.take(pa.array(rows)) for name, values in fields.items()}
    dirty["amount"] = _spoiled_amounts(rng, kind, dirty["amount"])
    dirty["event_time"] = _spoiled_event_times(rng, kind, calendar, transactions, rows, dirty["event_time"])
    dirty["customer_id"] = _spoiled_customer_ids(rng, kind, dirty["customer_id"])

    lines = join(list(dirty.values()), ",")  # fields are in column order
    lines = pc.if_else(_is_kind(kind, "extra_field"), join([lines, literal("web")], ","), lines)
    copied_rows = _earlier_clean_rows(rng, rows, first_row_of_day)
    lines = pc.if_else(_is_kind(kind, "duplicate_transaction_id"), clean_lines.take(pa.array(copied_rows)), lines)

    counts = {name: int(np.sum(kind == index)) for index, name in enumerate(DIRTY_TRANSACTION_KINDS)}
    return replace_rows(clean_lines, rows, lines), counts


def _spoiled_amounts(rng: np.random.Generator, kind: np.ndarray, amount: pa.Array) -> pa.Array:
    """Negative, non-numeric (a decimal comma or N/A) or huge amounts, each where its kind says."""
    negative = join([literal("-"), amount], "")
    decimal_comma = join([literal('"'), pc.replace_substring(amount, ".", ","), literal('"')], "")
    non_numeric = pc.if_else(pa.array(rng.random(len(amount)) < 0.5), decimal_comma, literal("N/A"))
    amount = pc.if_else(_is_kind(kind, "negative_amount"), negative, amount)
    amount = pc.if_else(_is_kind(kind, "non_numeric_amount"), non_numeric, amount)
    return pc.if_else(_is_kind(kind, "huge_amount"), literal(HUGE_AMOUNT_TEXT), amount)


def _spoiled_event_times(
    rng: np.random.Generator,
    kind: np.ndarray,
    calendar: Calendar,
    transactions: Transactions,
    rows: np.ndarray,
    event_time: pa.Array,
) -> pa.Array:
    """An impossible date (31 February) or a time up to MAX_FUTURE_DAYS after the file's day."""
    year_and_clock = join([pc.utf8_slice_codeunits(event_time, 0, 4), pc.utf8_slice_codeunits(event_time, 11)], " ")
    impossible_date = join([literal("31/02/"), year_and_clock], "")
    later_day = transactions.day[rows] + rng.integers(1, MAX_FUTURE_DAYS + 1, len(rows))
    future = pc.cast(timestamps(calendar, later_day, transactions.second_of_day[rows]), TEXT)
    event_time = pc.if_else(_is_kind(kind, "unparseable_event_time"), impossible_date, event_time)
    return pc.if_else(_is_kind(kind, "future_event_time"), future, event_time)


def _spoiled_customer_ids(rng: np.random.Generator, kind: np.ndarray, customer_id: pa.Array) -> pa.Array:
    """An empty id, or one of no customer (CX......)."""
    unknown_ids = join([literal("CX"), zero_padded(rng.integers(0, 10**6, len(customer_id)), 6)], "")
    customer_id = pc.if_else(_is_kind(kind, "empty_customer_id"), literal(""), customer_id)
    return pc.if_else(_is_kind(kind, "unknown_customer_id"), unknown_ids, customer_id)


def _earlier_clean_rows(rng: np.random.Generator, rows: np.ndarray, first_row_of_day: np.ndarray) -> np.ndarray:
    """For each dirty row, a random clean row before it in its day's file (the line a duplicate copies)."""
    is_clean = np.ones(len(first_row_of_day), dtype=bool)
    is_clean[rows] = False
    clean_rows = np.flatnonzero(is_clean)
    clean_before = np.concatenate([[0], np.cumsum(is_clean)])  # clean rows before each index
    first_clean_rank = clean_before[first_row_of_day[rows]]
    earlier_clean_count = clean_before[rows] - first_clean_rank
    return clean_rows[first_clean_rank + np.floor(rng.random(len(rows)) * earlier_clean_count).astype(np.int64)]


def dirty_customer_lines(
    rng: np.random.Generator,
    share: float,
    fields: dict[str, pa.Array],
    signup_year: np.ndarray,
) -> tuple[pa.Array, dict[str, int]]:
    """Customer lines with defects written in place or inserted after a real row, and the count per kind."""
    n = len(signup_year)
    per_kind = min(max(1, int(round(share * n / len(DIRTY_CUSTOMER_KINDS)))), n // len(DIRTY_CUSTOMER_KINDS))
    chosen = rng.choice(n, size=per_kind * len(DIRTY_CUSTOMER_KINDS), replace=False)
    bad_date_rows, empty_id_rows, missing_field_rows = (
        np.sort(rows) for rows in np.split(chosen, len(DIRTY_CUSTOMER_KINDS))
    )

    impossible_dates = join([as_text(signup_year[bad_date_rows]), literal("02-30")], "-")
    fields = dict(fields, signup_date=replace_rows(fields["signup_date"], bad_date_rows, impossible_dates))
    lines = join([fields[name] for name in CUSTOMER_COLUMNS], ",")

    empty_id_take = pa.array(empty_id_rows)
    empty_id_lines = join([literal("")] + [fields[name].take(empty_id_take) for name in CUSTOMER_COLUMNS[1:]], ",")
    missing_field_take = pa.array(missing_field_rows)
    missing_field_lines = join([fields[name].take(missing_field_take) for name in CUSTOMER_COLUMNS[:-1]], ",")

    # Inserted lines go right after the row they were copied from.
    position = np.concatenate([np.arange(n) * 2, empty_id_rows * 2 + 1, missing_field_rows * 2 + 1])
    all_lines = pa.concat_arrays([lines, empty_id_lines, missing_field_lines])
    counts = dict(zip(DIRTY_CUSTOMER_KINDS, (per_kind,) * len(DIRTY_CUSTOMER_KINDS)))
    return all_lines.take(pa.array(np.argsort(position, kind="stable"))), counts
