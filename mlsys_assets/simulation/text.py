"""The landing files' columns, their text built with Arrow compute, and the bytes of lines.

The landing files are rendered column by column (no Python loop per row): a field is an Arrow text array,
a line is the fields joined element-wise, and a file's bytes are a slice of the lines' data buffer.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlsys_assets.simulation.seasonality import Calendar

TRANSACTION_COLUMNS = ("transaction_id", "customer_id", "event_time", "amount", "quantity")
CUSTOMER_COLUMNS = ("customer_id", "signup_date", "country", "acquisition_channel", "email", "name")
TEXT = pa.large_string()  # 64-bit offsets, as line_bytes reads them


def as_text(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), TEXT)


def literal(value: str) -> pa.Scalar:
    return pa.scalar(value, TEXT)


def join(parts: list, separator: str) -> pa.Array:
    """Element-wise join of text arrays and literals."""
    return pc.binary_join_element_wise(*parts, literal(separator))


def zero_padded(numbers: np.ndarray, width: int) -> pa.Array:
    # Cutting the leading "1" off number + 10**width is faster than utf8_lpad.
    return pc.utf8_slice_codeunits(as_text(np.asarray(numbers, dtype=np.int64) + 10**width), 1)


def amount_text(cents: np.ndarray) -> pa.Array:
    """Amounts with two decimals and a leading minus when negative."""
    magnitude = np.abs(cents)
    text = join([as_text(magnitude // 100), zero_padded(magnitude % 100, 2)], ".")
    negative = cents < 0
    return pc.if_else(pa.array(negative), join([literal("-"), text], ""), text) if negative.any() else text


def numbered_customer_ids(count: int) -> pa.Array:
    """C0000001, C0000002, ...: customer ids in signup order."""
    return join([literal("C"), zero_padded(np.arange(1, count + 1), max(7, len(str(count))))], "")


def timestamps(calendar: Calendar, day: np.ndarray, second_of_day: np.ndarray) -> pa.Array:
    epoch_seconds = (calendar.dates[0].astype(np.int64) + day) * 86_400 + second_of_day
    return pa.array(epoch_seconds, pa.timestamp("s"))


def with_newlines(lines: pa.Array) -> pa.Array:
    return join([lines, literal("")], "\n")


def line_bytes(lines: pa.Array, start: int, stop: int) -> pa.Buffer:
    """The UTF-8 bytes of lines[start:stop]: Arrow stores the values back to back."""
    if start == stop:
        return b""
    _, offsets_buffer, data = lines.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64, count=len(lines) + 1, offset=lines.offset * 8)
    return data[int(offsets[start]) : int(offsets[stop])]


def csv_header(columns: tuple[str, ...]) -> bytes:
    return (",".join(columns) + "\n").encode()


def replace_rows(values: pa.Array, rows: np.ndarray, replacements: pa.Array) -> pa.Array:
    """values with values[rows] replaced; rows ascending and aligned with replacements."""
    mask = np.zeros(len(values), dtype=bool)
    mask[rows] = True
    return pc.replace_with_mask(values, pa.array(mask), replacements)
