"""The model and monitoring dashboard at the top of the report index: what serves each target, what the
promotion gate decided at each retraining, and the trend of every headline number as inline SVG line charts
(no script, no external asset: the page opens offline).

Plain library code: `read_dashboard` queries an open DuckDB connection (the one the report asset already
holds) and reads the production pointer; `render_dashboard` turns the result into HTML, its charts drawn by
svg_chart.py. No Dagster here.
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb

from mlsys_assets.ml.gate import KEEP_PRODUCTION, PROMOTE, SERVE_BTYD
from mlsys_assets.ml.model_report import model_report_path
from mlsys_assets.ml.model_store import pointer_path
from mlsys_assets.monitoring.svg_chart import Chart, Series, chart_svg
from mlsys_assets.monitoring.svg_chart import escape as _e

TARGETS = ("ltv", "churn")
# Two months of days: a retraining cycle and its weekly pattern fit, and 60 points still sit ~9 px apart.
TREND_DAYS = 60
# Ten weekly retrainings of two targets; the full history stays in ml.model_registry.
GATE_HISTORY_ROWS = 20
RETRAINS_SHOWN = 26
# The gate's error and ranking metric per target (ml/targets.py): the numbers its decision turns on.
RETRAIN_METRICS = {"ltv": "rmse", "churn": "roc_auc"}

DASHBOARD_CSS = """
nav.toc { font-size: 13px; margin: 8px 0 4px; }
nav.toc a { margin-right: 14px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 560px), 1fr)); gap: 16px; }
figure.chart { margin: 0; padding: 8px 12px; border: 1px solid #e5e5e5; border-radius: 6px; min-width: 0; }
figure.chart figcaption { font-size: 14px; font-weight: 600; margin-bottom: 4px; }
svg.trend { display: block; width: 100%; height: auto; }
.no-data { color: #888; font-size: 13px; margin: 24px 0; }
a.model-report { display: block; }
.action { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
          white-space: nowrap; }
.action-promote { background: #e3f4e8; color: #17692f; }
.action-serve_btyd { background: #fff1db; color: #8a4b00; }
.action-keep_production { background: #ececec; color: #444; }
"""


@dataclass(frozen=True)
class Serving:
    target: str
    version: str
    kind: str | None
    since: Any
    trained_on: str | None
    reason: str | None


@dataclass(frozen=True)
class Decision:
    when: Any
    target: str
    version: str
    kind: str | None
    action: str
    reason: str | None
    state: str


@dataclass(frozen=True)
class Dashboard:
    serving: tuple[Serving, ...]
    decisions: tuple[Decision, ...]
    charts: tuple[Chart, ...]


# ------------------------------------------------------------------------------------------------ reading


def read_dashboard(con: duckdb.DuckDBPyConnection, serving_root: Path, report_rows: Iterable[Mapping[str, Any]],
                   drift_threshold: float | None = None) -> Dashboard:
    """Everything the dashboard shows; `report_rows` are the index's rows (kind, partition, headline, created_at)."""
    rows = list(report_rows)
    return Dashboard(tuple(_serving(con, serving_root)), tuple(_decisions(con)),
                     (*_day_charts(con, rows, drift_threshold), *_retrain_charts(con)))


def _query(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    try:
        return con.execute(sql, list(params)).fetchall()
    except duckdb.CatalogException:  # the table is not there yet (no retraining, no scoring): nothing to show
        return []


def _serving(con: duckdb.DuckDBPyConnection, serving_root: Path) -> list[Serving]:
    # The pointer is what the API and the scoring serve; the registry adds the kind and since when.
    path = pointer_path(serving_root)
    named = json.loads(path.read_text()).get("models", {}) if path.exists() else {}
    serving = []
    for target in TARGETS:
        if target not in named:
            continue
        version = str(named[target]["version"])
        found = _query(con, "SELECT kind, state_changed_at, train_as_of_first, train_as_of_last, gate_reason "
                            "FROM ml.model_registry WHERE model = ? AND version = ?", [target, version])
        kind, since, first, last, reason = found[0] if found else (None, None, None, None, None)
        trained_on = f"{first} … {last}" if first and last else None
        serving.append(Serving(target, version, kind, since, trained_on, reason))
    return serving


def _decisions(con: duckdb.DuckDBPyConnection) -> list[Decision]:
    """One row per gate decision: each retraining's candidate per target (its BG/NBD fallback, registered in
    the same run, is folded into the candidate's row) and the classic model serving before any training."""
    # A warehouse the gate has not run on since gate_action was added lacks the column, and this connection
    # may be read-only (it cannot add it): its rows read as NULL, gated before the column existed.
    has_column = _query(con, "SELECT 1 FROM duckdb_columns() WHERE database_name = current_database() AND "
                             "schema_name = 'ml' AND table_name = 'model_registry' AND column_name = 'gate_action'")
    stored = "r.gate_action" if has_column else "NULL"
    rows = _query(con, f"""
        SELECT r.created_at, r.model, r.version, r.kind, r.gate_passed, r.gate_reason, r.state, fb.version, {stored}
        FROM ml.model_registry r
        LEFT JOIN ml.model_registry fb ON fb.run_id = r.run_id AND fb.model = r.model AND fb.version <> r.version
             AND fb.kind = 'btyd' AND starts_with(fb.gate_reason, 'fallback:')
        WHERE r.gate_passed IS NOT NULL AND r.state <> 'evaluated'
          AND NOT starts_with(coalesce(r.gate_reason, ''), 'fallback:')
        ORDER BY r.created_at DESC, r.model LIMIT ?
        """, [GATE_HISTORY_ROWS])
    decisions = []
    for when, target, version, kind, passed, reason, state, fallback, action in rows:
        action = action or _inferred_action(kind, passed, reason, fallback)
        if fallback:
            reason = f"{reason} → {fallback} serves"
        # Shown by gate.py's constant names (PROMOTE, SERVE_BTYD, KEEP_PRODUCTION), as the decision text is.
        decisions.append(Decision(when, target, version, kind, action.upper().replace(" ", "_"), reason, state))
    return decisions


def _inferred_action(kind: str | None, passed: bool, reason: str | None, fallback: str | None) -> str:
    """The gate's action rebuilt from passed and the reason, for rows gated before ml.model_registry stored
    it (gate_action NULL)."""
    if kind == "btyd" or fallback:
        return SERVE_BTYD
    if passed:
        return PROMOTE
    # A candidate that failed only against production's own backtest keeps production (gate.KEEP_PRODUCTION);
    # one that failed against BG/NBD or the baselines where the classic model already serves changes nothing.
    return KEEP_PRODUCTION if "production's backtest" in (reason or "") else SERVE_BTYD


def _day_charts(con: duckdb.DuckDBPyConnection, rows: list[Mapping[str, Any]],
                drift_threshold: float | None) -> list[Chart]:
    headlines = _newest_headlines(rows)
    days = [day for day, _ in headlines]
    days += [day for (day,) in _query(con, "SELECT max(as_of) FROM predictions.customer_predictions") if day]
    if not days:
        return []
    end = max(days)
    start = end - dt.timedelta(days=TREND_DAYS - 1)
    means = _query(con, "SELECT as_of, avg(predicted_spend), avg(churn_probability) FROM predictions.customer_predictions "
                        "WHERE as_of BETWEEN ? AND ? GROUP BY as_of ORDER BY as_of", [start, end])
    first = min([day for day, _ in headlines if day >= start] + [day for day, _, _ in means], default=end)

    def report(kind: str, key: str, name: str) -> Series:
        points = [(day, headline.get(key)) for (day, k), headline in sorted(headlines.items()) if k == kind and day >= start]
        return Series(name, _finite(points))

    chart = functools.partial(Chart, days=(first, end))  # one day axis for all: the charts line up
    return [
        chart("trend-drift-share", "Drift share: tested columns that drifted", "share",
              (report("feature_drift", "drift_share", "feature drift"),
               report("prediction_drift", "drift_share", "prediction drift"),
               report("data_quality", "drift_share", "data quality")),
              "no drift report yet", y_range=(0.0, 1.0), threshold=drift_threshold),
        chart("trend-matured-rmse", "Matured spend RMSE: forecasts made H days before the day", "RMSE",
              (report("model_performance", "rmse", "model"), report("model_performance", "baseline_rmse", "baseline")),
              "no matured forecasts yet: labels mature H days after the forecast"),
        chart("trend-matured-auc", "Matured churn ROC-AUC", "ROC-AUC",
              (report("model_performance", "roc_auc", "model"),),
              "no matured forecasts yet: labels mature H days after the forecast"),
        chart("trend-mean-spend", "Mean predicted spend per customer (LTV forecast)", "spend",
              (Series("mean predicted spend", _finite((d, s) for d, s, _ in means)),), "no predictions yet"),
        chart("trend-mean-churn", "Mean churn probability", "probability",
              (Series("mean churn probability", _finite((d, c) for d, _, c in means)),), "no predictions yet"),
    ]


def _newest_headlines(rows: list[Mapping[str, Any]]) -> dict[tuple[dt.date, str], Mapping[str, Any]]:
    """(day, kind) -> headline of the newest report of that kind and day."""
    newest: dict[tuple[dt.date, str], Mapping[str, Any]] = {}
    for row in sorted(rows, key=lambda r: str(r.get("created_at") or "")):
        headline = row.get("headline")
        try:
            day = dt.date.fromisoformat(str(row.get("partition"))[:10])
        except ValueError:
            continue
        if isinstance(headline, Mapping):
            newest[(day, str(row.get("kind")))] = headline
    return newest


def _retrain_charts(con: duckdb.DuckDBPyConnection) -> list[Chart]:
    rows = _query(con, """
        SELECT evaluated_at, model, scorer, value FROM ml.model_evaluation
        WHERE cutoff IS NULL AND scorer IN ('candidate', 'bgnbd')
          AND ((model = 'ltv' AND metric = ?) OR (model = 'churn' AND metric = ?))
          AND evaluation_id IN (SELECT evaluation_id FROM ml.model_evaluation GROUP BY evaluation_id
                                ORDER BY max(evaluated_at) DESC LIMIT ?)
        ORDER BY evaluated_at
        """, [RETRAIN_METRICS["ltv"], RETRAIN_METRICS["churn"], RETRAINS_SHOWN])

    def series(model: str, scorer: str, name: str) -> Series:
        return Series(name, _finite((when, value) for when, m, s, value in rows if m == model and s == scorer))

    return [
        Chart("trend-retrain-rmse", "LTV backtest RMSE per retraining (mean over cutoffs)", "RMSE",
              (series("ltv", "candidate", "CatBoost candidate"), series("ltv", "bgnbd", "BG/NBD + Gamma-Gamma")),
              "no retraining yet", sequence=True),
        Chart("trend-retrain-auc", "Churn backtest ROC-AUC per retraining (mean over cutoffs)", "ROC-AUC",
              (series("churn", "candidate", "CatBoost candidate"), series("churn", "bgnbd", "BG/NBD + Gamma-Gamma")),
              "no retraining yet", sequence=True),
    ]


def _finite(points: Iterable[tuple[Any, Any]]) -> tuple[tuple[Any, float], ...]:
    """Points with a number (an undefined AUC or a missing headline key is left out, not drawn as zero)."""
    kept = []
    for x, y in points:
        try:
            value = float(y)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            kept.append((x, value))
    return tuple(kept)


# ---------------------------------------------------------------------------------------------- rendering


def render_dashboard(dashboard: Dashboard, reports_root: Path) -> str:
    """The dashboard as an HTML fragment (a <section id="dashboard">); all text is escaped."""
    charts = "".join(
        f'<figure class="chart" id="{_e(c.chart_id)}"><figcaption>{_e(c.title)}</figcaption>{chart_svg(c)}</figure>'
        for c in dashboard.charts)
    return "\n".join([
        '<section id="dashboard">',
        '<nav class="toc"><a href="#production">production models</a><a href="#gate-history">gate history</a>'
        '<a href="#trends">trends</a><a href="#reports">reports</a></nav>',
        '<h2 id="production">Production models</h2>',
        _serving_html(dashboard.serving, Path(reports_root)),
        f'<h2 id="gate-history">Gate history <span class="meta">(newest {GATE_HISTORY_ROWS} decisions)</span></h2>',
        _decisions_html(dashboard.decisions),
        f'<h2 id="trends">Trends <span class="meta">(newest {TREND_DAYS} days; retrainings by order)</span></h2>',
        f'<div class="charts">{charts}</div>' if charts else '<p class="no-data">No reports yet.</p>',
        "</section>",
    ])


def _model_report(reports_root: Path, target: str, version: str) -> str:
    # Written by the model report beside these; linked once it exists.
    path = model_report_path(reports_root, target, version)
    if not path.is_file():
        return ""
    href = Path(os.path.relpath(path, reports_root)).as_posix()
    return f' <a class="model-report" href="{html.escape(quote(href), quote=True)}">model report</a>'


def _table(css_class: str, columns: Sequence[tuple[str, str | None]], rows: Iterable[Sequence[str]]) -> str:
    """`columns` are (header, width or None for the rest); each row is its target, then its cells' HTML."""
    widths = "".join(f'<col style="width:{width}">' if width else "<col>" for _, width in columns)
    head = "".join(f"<th>{header}</th>" for header, _ in columns)
    body = "".join(f'<tr data-target="{_e(target)}">' + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"
                   for target, *cells in rows)
    return (f'<table class="{css_class}"><colgroup>{widths}</colgroup><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def _serving_html(serving: Sequence[Serving], reports_root: Path) -> str:
    if not serving:
        return '<p class="no-data">No production model yet: nothing has been scored.</p>'
    columns = [("target", "7%"), ("version", "24%"), ("kind", "8%"), ("serving since", "12%"),
               ("trained on as-of days", "16%"), ("why it serves", None)]
    return _table("production", columns, (
        (s.target, _e(s.target), _e(s.version) + _model_report(reports_root, s.target, s.version), _e(s.kind),
         _e(s.since), _e(s.trained_on), _e(s.reason)) for s in serving))


def _decisions_html(decisions: Sequence[Decision]) -> str:
    if not decisions:
        return '<p class="no-data">No gate decision yet: run <code>mlsys train</code>.</p>'
    columns = [("retrained", "11%"), ("target", "6%"), ("version", "20%"), ("kind", "7%"), ("action", "11%"),
               ("reason", None), ("state now", "8%")]
    return _table("gate-history", columns, (
        (d.target, _e(d.when), _e(d.target), _e(d.version), _e(d.kind),
         f'<span class="action action-{d.action.lower()}">{_e(d.action)}</span>', _e(d.reason), _e(d.state))
        for d in decisions))
