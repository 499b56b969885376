"""Line charts as inline SVG: axes, ticks, a legend, a dashed threshold and one circle per point, with no
script and no external asset (the page that embeds them opens offline).

Plain library code: no Dagster, no warehouse. The dashboard (dashboard.py) builds the `Chart`s.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_COLORS = ("#1f6fb4", "#d9480f", "#2b8a3e", "#7048e8")
_WIDTH, _HEIGHT, _LEFT, _RIGHT, _TOP, _BOTTOM = 640, 270, 64, 24, 36, 48


@dataclass(frozen=True)
class Series:
    name: str
    points: tuple[tuple[Any, float], ...]  # (a date, or any sortable x of a sequence chart; y)


@dataclass(frozen=True)
class Chart:
    chart_id: str
    title: str
    y_label: str
    series: tuple[Series, ...]
    empty_hint: str
    y_range: tuple[float, float] | None = None  # fixed bounds (shares); None: fitted to the data
    threshold: float | None = None  # drawn as a dashed line: the alert's limit
    sequence: bool = False  # x by order (one slot per retraining), not by calendar day
    days: tuple[dt.date, dt.date] | None = None  # the day axis' span, shared by the day charts to line them up


def escape(value: Any) -> str:
    """`value` as HTML text: a missing value (None, NaN) is a dash, a timestamp is shown to the minute."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, dt.datetime):
        value = value.strftime("%Y-%m-%d %H:%M")
    return html.escape(str(value), quote=True)


def chart_svg(chart: Chart) -> str:
    """A line chart with axes, ticks, a legend and one circle per point (hover shows its value); one point is
    drawn alone in the middle of a padded axis, no data is a sentence saying why."""
    drawn = [(i, s) for i, s in enumerate(chart.series) if s.points]
    if not drawn:
        return f'<p class="no-data">{escape(chart.empty_hint)}</p>'
    slots = sorted({x for _, s in drawn for x, _ in s.points} | set(chart.days or ()))
    # A day axis is linear in days, so a gap between reports shows as a gap.
    x_of = (lambda x: float(slots.index(x))) if chart.sequence else (lambda x: float(x.toordinal()))
    x_lo, x_hi = _pad(min(map(x_of, slots)), max(map(x_of, slots)), 1.0)
    margin = (x_hi - x_lo) * 0.05  # room for the first and last date label, centred on their points
    x_lo, x_hi = x_lo - margin, x_hi + margin
    values = [y for _, s in drawn for _, y in s.points] + ([chart.threshold] if chart.threshold is not None else [])
    y_ticks = _nice_ticks(*chart.y_range) if chart.y_range else _nice_ticks(*_pad(min(values), max(values), None))
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM

    def sx(x: Any) -> float:
        return _LEFT + (x_of(x) - x_lo) / (x_hi - x_lo) * plot_w

    def sy(y: float) -> float:
        return _TOP + (y_ticks[-1] - y) / (y_ticks[-1] - y_ticks[0]) * plot_h

    total = sum(len(s.points) for _, s in drawn)
    parts = [f'<svg class="trend" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" data-points="{total}" '
             f'font-family="system-ui, sans-serif" font-size="12"><title>{escape(chart.title)}</title>']
    parts += _y_axis(y_ticks, sy, chart.y_label)
    parts += _x_axis(slots, sx, chart.sequence)
    if chart.threshold is not None and y_ticks[0] <= chart.threshold <= y_ticks[-1]:
        y = sy(chart.threshold)
        parts.append(f'<line class="threshold" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#a31515" stroke-dasharray="5 4"/><text x="{_WIDTH - _RIGHT}" y="{y - 4:.1f}" '
                     f'text-anchor="end" fill="#a31515">alert above {_number(chart.threshold)}</text>')
    parts += _legend(chart.series)
    for index, series in drawn:
        parts.append(_series_svg(series, _COLORS[index % len(_COLORS)], sx, sy))
    parts.append("</svg>")
    return "".join(parts)


def _pad(lo: float, hi: float, span: float | None) -> tuple[float, float]:
    """A range that is never empty: a single value gets `span` (or 10% of itself) on each side."""
    if hi > lo:
        return lo, hi
    pad = span if span is not None else (abs(lo) * 0.1 or 1.0)
    return lo - pad, hi + pad


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first, last = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    return [first + i * step for i in range(round((last - first) / step) + 1)]


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _y_axis(ticks: list[float], sy, label: str) -> list[str]:
    parts = []
    for tick in ticks:
        y = sy(tick)
        parts.append(f'<line x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ececec"/>'
                     f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{_number(tick)}</text>')
    middle = _TOP + (_HEIGHT - _TOP - _BOTTOM) / 2
    parts.append(f'<text class="y-label" transform="translate(14 {middle:.1f}) rotate(-90)" text-anchor="middle" '
                 f'fill="#333">{escape(label)}</text>')
    return parts


def _x_axis(slots: list[Any], sx, sequence: bool) -> list[str]:
    bottom = _HEIGHT - _BOTTOM
    parts = [f'<line x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{bottom}" y2="{bottom}" stroke="#888"/>',
             f'<line x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{bottom}" stroke="#888"/>']
    every = max(1, math.ceil(len(slots) / 6))  # at most ~6 labels: an ISO date is ~70 px wide
    shown = slots[::-1][::every][::-1]  # counted from the newest, so the newest day is always labelled
    for x in shown:
        px = sx(x)
        parts.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{bottom}" y2="{bottom + 4}" stroke="#888"/>'
                     f'<text x="{px:.1f}" y="{bottom + 17}" text-anchor="middle" fill="#555">'
                     f'{escape(str(x)[:10])}</text>')
    label = "retraining (evaluated at)" if sequence else "day"
    parts.append(f'<text class="x-label" x="{_LEFT + (_WIDTH - _LEFT - _RIGHT) / 2:.1f}" y="{_HEIGHT - 6}" '
                 f'text-anchor="middle" fill="#333">{label}</text>')
    return parts


def _legend(series: Sequence[Series]) -> list[str]:
    parts, x = [], _LEFT
    for index, item in enumerate(series):
        color = _COLORS[index % len(_COLORS)]
        suffix = "" if item.points else " (no data)"
        parts.append(f'<rect x="{x}" y="10" width="12" height="12" rx="2" fill="{color}"/>'
                     f'<text x="{x + 16}" y="20" fill="#333">{escape(item.name + suffix)}</text>')
        x += 28 + 7 * len(item.name + suffix)  # ~7 px per character at 12 px
    return parts


def _series_svg(series: Series, color: str, sx, sy) -> str:
    coords = [(sx(x), sy(y), x, y) for x, y in sorted(series.points, key=lambda p: p[0])]
    line = ""
    if len(coords) > 1:
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _, _ in coords)
        line = f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>'
    dots = "".join(f'<circle class="point" cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{color}">'
                   f"<title>{escape(series.name)} {escape(x)}: {_number(y)}</title></circle>"
                   for px, py, x, y in coords)
    return f'<g class="series" data-series="{escape(series.name)}" data-points="{len(coords)}">{line}{dots}</g>'
