"""The report index (`<reports_root>/index.html`) and the pruning of old report HTML.

The index is one self-contained page: inline CSS and SVG, no script, no external asset, so it opens offline
from the file system. It starts with the model and monitoring dashboard when the caller passes one
(dashboard.py), then lists every report the caller passes, grouped by kind and newest first, with a
relative link to `<kind>/<day>.html` while that file exists. Plain library code: no Dagster here.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb

from mlsys_assets.monitoring.dashboard import DASHBOARD_CSS, Dashboard, read_dashboard, render_dashboard
from mlsys_assets.storage import write_text_atomically

KIND_ORDER = ("feature_drift", "prediction_drift", "model_performance", "data_quality")
KIND_TITLES = {
    "feature_drift": "Feature drift",
    "prediction_drift": "Prediction drift",
    "model_performance": "Model performance",
    "data_quality": "Data quality",
}
# Headline keys shown first and how they are labelled; any other key follows in the row's own order.
HEADLINE_LABELS = {
    "drift_share": "drift share",
    "drifted_columns": "drifted columns",
    "columns": "columns",
    "drifted_column_names": "drifted",
    "constant_columns": "constant",
    "empty_columns": "empty",
    "rmse": "RMSE",
    "baseline_rmse": "baseline RMSE",
    "mae": "MAE",
    "r2": "R²",
    "roc_auc": "AUC",
    "log_loss": "log loss",
    "churn_rate": "churn rate",
    "missing_share": "missing share",
    "failed_tests": "failed tests",
}

# The page stays within 1,400 px and every cell wraps: one unbroken list of drift scores once made it 4,600 px
# wide. Fixed table layout gives each column its <colgroup> width instead of its longest word's.
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       max-width: 1400px; margin: 24px auto; padding: 0 24px; box-sizing: border-box; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; }
.meta { color: #666; font-size: 13px; margin-bottom: 16px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; table-layout: fixed; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #e5e5e5; vertical-align: top;
         overflow-wrap: anywhere; }
th { background: #f6f6f6; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
         white-space: nowrap; }
.pass { background: #e3f4e8; color: #17692f; }
.fail { background: #fbe4e4; color: #a31515; }
tr.failed td:first-child { border-left: 3px solid #d33; }
.headline > span { display: inline-block; max-width: 100%; margin-right: 12px; }
.headline b { font-weight: 600; }
.headline details { margin-top: 2px; }
.headline summary { cursor: pointer; color: #444; }
.pruned { color: #888; }
code { background: #f3f3f3; padding: 0 4px; border-radius: 3px; }
""" + DASHBOARD_CSS
# A list or mapping longer than this folds into a <details> element: its items, not the row, take the space.
INLINE_ITEMS = 6
_REPORT_COLUMNS = ('<colgroup><col style="width:100px"><col style="width:76px"><col style="width:17%">'
                   '<col style="width:96px"><col style="width:96px"><col><col style="width:15%"><col style="width:150px">'
                   '</colgroup>')


def write_index(reports_root: Path | str, rows: Iterable[Mapping[str, Any]], dashboard: Dashboard | None = None) -> Path:
    """Write ``reports_root/index.html``: the ``dashboard`` (if given), then ``rows`` (atomically: a temporary
    file, then ``os.replace``).

    Each row has: report_id, kind, partition (the day), model_version, reference_rows, current_rows, passed,
    html_path, headline (dict), created_at. Rows are grouped by kind (known kinds first) and sorted newest
    first (partition, then created_at). All text is HTML-escaped.
    """
    root = Path(reports_root)
    root.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row.get("kind") or "unknown"), []).append(row)
    kinds = [k for k in KIND_ORDER if k in groups] + sorted(k for k in groups if k not in KIND_ORDER)

    failed = sum(1 for row in rows if not _truthy(row.get("passed")))
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>mlsys monitoring reports</title>",
        f"<style>{_CSS}</style>",
        "</head><body>",
        "<h1>Monitoring reports</h1>",
        f'<div class="meta">{len(rows)} report(s), {failed} failed · generated {html.escape(generated)}</div>',
    ]
    if dashboard is not None:
        parts.append(render_dashboard(dashboard, root))
    parts.append('<section id="reports">')
    if not rows:
        parts.append("<p>No reports yet.</p>")
    for kind in kinds:
        ordered = sorted(groups[kind], key=lambda r: (str(r.get("partition") or ""), str(r.get("created_at") or "")),
                         reverse=True)
        kind_failed = sum(1 for row in ordered if not _truthy(row.get("passed")))
        parts.append(
            f'<h2 id="{html.escape(kind, quote=True)}">{html.escape(KIND_TITLES.get(kind, kind))} '
            f'<span class="meta">({len(ordered)}, {kind_failed} failed)</span></h2>'
        )
        parts.append(
            f"<table>{_REPORT_COLUMNS}<thead><tr><th>day</th><th>result</th><th>model version</th><th>reference rows</th>"
            "<th>current rows</th><th>headline</th><th>report</th><th>created</th></tr></thead><tbody>"
        )
        parts.extend(_row_html(root, row) for row in ordered)
        parts.append("</tbody></table>")
    parts.append("</section></body></html>\n")
    return write_text_atomically(root / "index.html", "\n".join(parts))


def refresh_index(con: duckdb.DuckDBPyConnection, reports_root: Path | str, serving_root: Path,
                  drift_threshold: float | None = None) -> Path:
    """Rewrite the index from the warehouse: the newest report of each kind and day from monitoring.reports,
    and the dashboard (what serves, the gate's decisions, the trends). `con` may be read-only."""
    rows = [dict(zip(("report_id", "kind", "partition", "model_version", "reference_rows", "current_rows",
                      "passed", "html_path", "headline", "created_at"), row)) for row in con.execute(
        """
        SELECT report_id, kind, partition_day::VARCHAR, model_version, reference_rows, current_rows, passed,
               html_path, headline, strftime(r.created_at, '%Y-%m-%d %H:%M:%S')
        FROM monitoring.reports r
        QUALIFY row_number() OVER (PARTITION BY kind, partition_day ORDER BY r.created_at DESC) = 1
        ORDER BY kind, partition_day DESC
        """).fetchall()]
    for row in rows:
        row["headline"] = json.loads(row["headline"])
    return write_index(reports_root, rows, read_dashboard(con, serving_root, rows, drift_threshold))


def refresh_existing_index(con: duckdb.DuckDBPyConnection, reports_root: Path, serving_root: Path,
                           drift_threshold: float | None = None) -> None:
    """`refresh_index` when there is an index already (a report ran): after a change of what serves
    (a retraining, a promotion or rollback by hand) the dashboard follows at once."""
    if (Path(reports_root) / "index.html").exists():
        refresh_index(con, reports_root, serving_root, drift_threshold)


def prune_reports(reports_root: Path | str, kind: str, keep_latest: int) -> list[Path]:
    """Delete the HTML reports of ``kind`` beyond the newest ``keep_latest`` (by the day in the file name,
    ``<reports_root>/<kind>/<YYYY-MM-DD>.html``); returns the deleted paths, oldest first.

    Files whose name is not a day are left alone. The snapshots stay in the warehouse, so a pruned report
    can be rendered again.
    """
    if keep_latest < 0:
        raise ValueError(f"keep_latest must be >= 0, got {keep_latest}")
    folder = Path(reports_root) / kind
    if not folder.is_dir():
        return []
    dated = []
    for path in folder.glob("*.html"):
        try:
            dated.append((dt.date.fromisoformat(path.stem), path))
        except ValueError:
            continue
    dated.sort(reverse=True)
    doomed = sorted(dated[keep_latest:])
    deleted = []
    for _, path in doomed:
        try:
            path.unlink()
        except FileNotFoundError:  # removed meanwhile by someone else: the outcome is the same
            continue
        deleted.append(path)
    return deleted


# --------------------------------------------------------------------------------------------- internals


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    try:
        return bool(value) and not (isinstance(value, float) and math.isnan(value))
    except (TypeError, ValueError):
        return False


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return html.escape(str(value))


def _count(value: Any) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return _text(value)


def _number(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if value.is_integer() and abs(value) >= 1:
            return f"{value:,.0f}"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "—"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_number(v)}" for k, v in value.items()) or "—"
    try:  # numpy scalars
        return _number(value.item())
    except AttributeError:
        return str(value)


def _headline_html(headline: Any) -> str:
    if not isinstance(headline, Mapping):
        return _text(headline)
    keys = [k for k in HEADLINE_LABELS if k in headline] + [k for k in headline if k not in HEADLINE_LABELS]
    items = []
    for key in keys:
        value = headline[key]
        if value is None or (isinstance(value, (list, tuple, Mapping)) and not value):
            continue  # nothing to say: an empty list of constant columns, an undefined AUC
        label = HEADLINE_LABELS.get(key, str(key).replace("_", " "))
        if isinstance(value, (list, tuple, Mapping)) and len(value) > INLINE_ITEMS:
            items.append(f"<details><summary>{html.escape(label)} ({len(value)})</summary>"
                         f"{html.escape(_number(value))}</details>")
        else:
            items.append(f"<span>{html.escape(label)} <b>{html.escape(_number(value))}</b></span>")
    return f'<div class="headline">{"".join(items) or "—"}</div>'


def _resolve(root: Path, html_path: Any) -> Path | None:
    if not html_path or (isinstance(html_path, float) and math.isnan(html_path)):
        return None
    path = Path(str(html_path))
    candidates = [path] if path.is_absolute() else [path, root / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def _link(root: Path, row: Mapping[str, Any]) -> str:
    path = _resolve(root, row.get("html_path"))
    if path is None:
        command = f"mlsys reports render {row.get('report_id', '')}"
        return f'<span class="pruned">pruned, re-render with <code>{html.escape(command)}</code></span>'
    relative = Path(os.path.relpath(path.resolve(), root.resolve())).as_posix()
    href = html.escape(quote(relative), quote=True)
    return f'<a href="{href}">{html.escape(relative)}</a>'


def _row_html(root: Path, row: Mapping[str, Any]) -> str:
    passed = _truthy(row.get("passed"))
    badge = '<span class="badge pass">PASS</span>' if passed else '<span class="badge fail">FAIL</span>'
    return (
        f'<tr class="{"passed" if passed else "failed"}">'
        f"<td>{_text(row.get('partition'))}</td>"
        f"<td>{badge}</td>"
        f"<td>{_text(row.get('model_version'))}</td>"
        # The performance report has no reference dataset (it compares matured labels with the holdout
        # metrics): its stored 0 would read as an empty reference.
        f'<td class="num">{"—" if row.get("kind") == "model_performance" else _count(row.get("reference_rows"))}</td>'
        f'<td class="num">{_count(row.get("current_rows"))}</td>'
        f"<td>{_headline_html(row.get('headline'))}</td>"
        f"<td>{_link(root, row)}</td>"
        f"<td>{_text(row.get('created_at'))}</td>"
        "</tr>"
    )
