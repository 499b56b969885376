"""A report's HTML page: Evidently's standalone page with a header naming the report, its sample sizes and any
columns it shows untested; written atomically, and rebuildable from the stored snapshot alone."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from evidently.core.report import Snapshot

from mlsys_assets.storage import write_text_atomically

# Snapshot metadata key (a string) with the columns shown without a drift test, and their scores.
UNTESTED_NOTE = "untested_columns"

_HEADER_STYLE = (
    "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;padding:12px 24px;"
    "border-bottom:1px solid #ddd;background:#fafafa;color:#222"
)


def render_html(snapshot_json: str, html_path: Path | str) -> Path:
    """Rebuild a report's HTML from its stored snapshot JSON alone (``Snapshot.loads``), written atomically."""
    snapshot = Snapshot.loads(snapshot_json)
    return write_html(snapshot, html_path)


def write_html(snapshot: Snapshot, html_path: Path | str) -> Path:
    """Evidently's standalone HTML (script bundle and font embedded) with our header, written atomically.

    ``Snapshot.save_html`` silently writes nothing for a ``Path``; we render the string ourselves instead.
    """
    path = Path(html_path)
    title, block = _header(snapshot)
    page = _finish_page(snapshot.get_html_str(as_iframe=False), title, block)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, page)
    return path


def _header(snapshot: Snapshot) -> tuple[str, str]:
    """The page title and a header naming the report and its sample sizes (from the snapshot's metadata)."""
    model = snapshot.to_snapshot_model()
    meta = model.metadata or {}
    title = str(meta.get("title") or snapshot.get_name() or "Evidently report")
    sizes = []
    for side in ("reference", "current"):
        rows, before = _as_int(meta.get(f"{side}_rows")), _as_int(meta.get(f"{side}_rows_before_sampling"))
        if rows is None or (side == "reference" and rows == 0):
            continue
        text = f"{side}: {rows:,} rows"
        if before is not None and before > rows:
            text += f" (sampled from {before:,})"
        sizes.append(text)
    line = " · ".join([*sizes, f"created {model.timestamp:%Y-%m-%d %H:%M}"])
    lines = [f'<div style="font-size:13px;color:#555">{html.escape(line)}</div>']
    if meta.get(UNTESTED_NOTE):
        lines.append(f'<div style="font-size:13px;color:#555">{html.escape(str(meta[UNTESTED_NOTE]))}</div>')
    block = (
        f'<div class="mlsys-report-header" style="{_HEADER_STYLE}">'
        f'<div style="font-size:18px;font-weight:600">{html.escape(title)}</div>{"".join(lines)}</div>'
    )
    return title, block


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _finish_page(page: str, title: str, header: str) -> str:
    """Add the title and header to Evidently's page, and escape ``<`` in its embedded data.

    0.7.23 embeds the report data as JSON in a ``<script>`` block without escaping, so a category value such
    as ``</script><script>...`` would end the block and inject markup. ``<`` only occurs inside JSON strings,
    where ``\\u003c`` means the same. The block lies between ``var <dashboard id> =`` and the last
    ``</script>`` before the dashboard's root ``<div>``; the id is the random one of the final
    ``drawDashboard`` call, which data cannot forge. If the layout is not recognised the page is kept as is,
    with only the title added.
    """
    page = page.replace("<head>", f"<head>\n<title>{html.escape(title)}</title>", 1)
    calls = re.findall(r"window\.drawDashboard\((metric_[0-9a-f]{32}),", page)
    if not calls:
        return page
    dashboard = calls[-1]
    root = page.rfind(f'<div id="root_{dashboard}">')
    start = page.find(f"var {dashboard} = ")
    end = page.rfind("</script>", start, root) if 0 <= start < root else -1
    if end < 0:
        return page
    data = page[start:end].replace("<", "\\u003c")
    return page[:start] + data + page[end:root] + header + "\n" + page[root:]
