"""What a monitoring report asset tells the Dagster UI: the day it reports on, its numbers (typed and rounded,
so the UI plots them over the partitions) and clickable links to its HTML and the index."""

from __future__ import annotations

import datetime as dt
import math
import numbers
from pathlib import Path
from typing import TYPE_CHECKING

from dagster import AssetExecutionContext, Failure, MetadataValue

from mlsys_assets.metadata import report_link
from mlsys_assets.partitions import partition_days

if TYPE_CHECKING:
    from mlsys_assets.monitoring.evidently_engine import ReportResult

DECIMALS = 4  # more digits of a drift share or a metric are noise in the UI


def report_day(context: AssetExecutionContext) -> dt.date:
    """The one day the run reports on.

    Dagster gives every partition of a range run the same metadata, so a range would link each day to the
    last day's report (which does not exist for the others): the report assets run one partition per run
    (BackfillPolicy.multi_run(1)), and a range launched by hand is refused.
    """
    first, last = partition_days(context)
    if first != last:
        raise Failure(description=f"a monitoring report describes one day, but this run covers {first} … {last}: "
                                  "materialize one partition per run (a backfill does so by itself)")
    return last


def is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def rounded(value):
    """Floats rounded to DECIMALS, also inside dicts and lists; counts, text and missing values unchanged."""
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    if is_number(value) and not isinstance(value, numbers.Integral):
        return round(float(value), DECIMALS)
    return value


def number(value: numbers.Real) -> MetadataValue:
    """A typed entry, so the UI plots it: a count as an int, anything else as a rounded float."""
    if isinstance(value, numbers.Integral):
        return MetadataValue.int(int(value))
    return MetadataValue.float(round(float(value), DECIMALS))


def report_metadata(result: "ReportResult", report_id: str, reports_root: Path, day_rows: int) -> dict:
    """The report's numbers, links and sizes. `day_rows` (`dagster/row_count`) counts the partition's own rows
    (the day's snapshot, predictions, matured forecasts or delivered transactions), not a table or a window."""
    entries = {
        **{k: number(v) for k, v in result.headline.items() if is_number(v)},
        "report_id": report_id,
        "report": report_link(result.html_path, reports_root),
        "report_file": MetadataValue.path(str(result.html_path)),
        "index": report_link(reports_root / "index.html", reports_root),
        "passed": MetadataValue.bool(result.passed),
        "current_rows": MetadataValue.int(result.current_rows),
        "dagster/row_count": MetadataValue.int(day_rows),
        "headline": MetadataValue.json(rounded(result.headline)),
    }
    if result.has_reference:  # the performance report has none: a 0 there would read as an empty reference
        entries["reference_rows"] = MetadataValue.int(result.reference_rows)
    return entries
