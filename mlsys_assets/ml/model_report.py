"""How a model's evaluation is shown: numbers the Dagster UI can plot, and one HTML page per evaluated version.

The UI shows Markdown images only behind "[Show Markdown]" and cannot chart a Markdown table across runs.
So every headline metric is also a float entry with a stable name (`<target>_<metric>_<scorer>`, rounded,
never NaN), and the charts, the full tables and the gate's decision go into one self-contained page,
`reports/models/<target>/<version>.html` (inline PNGs and CSS: it opens offline and from `mlsys reports
serve`). No Dagster import: the asset module wraps these values.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from mlsys_assets.ml.charts import calibration_png, data_uri, gains_png, importance_png
from mlsys_assets.ml.metrics import HIGHER_IS_BETTER
from mlsys_assets.ml.model_store import ModelVersion
from mlsys_assets.storage import write_text_atomically
from mlsys_assets.ml.targets import TARGETS

DIGITS = 4  # every number shown or plotted: round(x, 4); a spend RMSE of 102.8088 keeps four decimals too
SCORERS = ("candidate", "production", "naive", "historical", "bgnbd", "oracle")
# abs_bias_pct is |bias_pct|: the signed one is the headline, the absolute one only feeds the gate.
HEADLINE_METRICS = ("rmse", "mae", "gini", "top10_capture", "bias_pct", "roc_auc", "pr_auc", "brier",
                    "calibration_error")
# The picture that shows each target's forecasts at the newest cutoff, beside the baselines'.
CHARTS = {"ltv": ("Gains at the newest cutoff", gains_png),
          "churn": ("Calibration at the newest cutoff", calibration_png)}
DECISION_START, DECISION_END = "<!--decision-->", "<!--/decision-->"


def rounded_floats(named_values: Iterable[tuple[str, float]]) -> tuple[dict[str, float], list[str]]:
    """The finite values rounded to DIGITS, and the names whose value is not defined (NaN, None)."""
    values, undefined = {}, []
    for name, value in named_values:
        if value is None or not math.isfinite(float(value)):
            undefined.append(name)
        else:
            values[name] = round(float(value), DIGITS)
    return values, undefined


def headline_metadata(table: pd.DataFrame) -> tuple[dict[str, float], list[str]]:
    """Every scorer's backtest means of the headline metrics, named `<target>_<metric>_<scorer>`."""
    means = table[table["cutoff"].isna() & table["metric"].isin(HEADLINE_METRICS)]
    return rounded_floats((f"{r.model}_{r.metric}_{r.scorer}", r.value)
                          for r in means.sort_values(["model", "metric", "scorer"]).itertuples())


def served_metadata(cards: dict[str, dict], evaluated: pd.DataFrame) -> tuple[dict[str, float], list[str]]:
    """The backtest means of what serves each target (from its card), named `<target>_<metric>_served`, for the
    headline metrics the evaluation has of that target (a card without them, e.g. the classic model registered
    before any training, names them as not defined)."""
    return rounded_floats((f"{name}_{metric}_served", card.get("metrics", {}).get("backtest", {}).get(metric))
                          for name, card in sorted(cards.items()) for metric in HEADLINE_METRICS
                          if metric in set(evaluated.loc[evaluated["model"] == name, "metric"]))


def _number(value) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.{DIGITS}f}"


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def metrics_markdown(table: pd.DataFrame) -> str:
    """The backtest means: one row per target and metric, one column per scorer."""
    wide = table[table["cutoff"].isna()].pivot_table(index=["model", "metric"], columns="scorer", values="value")
    scorers = [s for s in SCORERS if s in wide.columns]
    return _markdown(["model", "metric", *scorers],
                     [[model, metric, *(_number(row[s]) for s in scorers)] for (model, metric), row in wide.iterrows()])


def gate_metrics_markdown(table: pd.DataFrame) -> str:
    """The gate's metrics at each cutoff: candidate against BG/NBD + Gamma-Gamma."""
    gate = {(name, metric) for name, target in TARGETS.items() for metric in target.gate_metrics}
    is_gate = pd.Series([pair in gate for pair in zip(table["model"], table["metric"])], index=table.index)
    rows = table[table["cutoff"].notna() & table["scorer"].isin(["candidate", "bgnbd"]) & is_gate]
    wide = rows.pivot_table(index=["model", "metric", "cutoff"], columns="scorer", values="value")
    return _markdown(["model", "metric", "cutoff", "candidate", "bgnbd"],
                     [[model, metric, str(pd.Timestamp(cutoff).date()), _number(row.get("candidate")),
                       _number(row.get("bgnbd"))] for (model, metric, cutoff), row in wide.iterrows()])


def model_report_path(reports_root: Path, target: str, version: str) -> Path:
    """Where the HTML report of an evaluated model version lives (the dashboard links it from here)."""
    return Path(reports_root) / "models" / target / f"{version}.html"


def decision_text(action: str, served: str | None, candidate: str, outcome: str, reason: str) -> str:
    """The gate's decision in one line: the action, what serves now, the candidate's outcome, the full reason."""
    return (f"{action.upper().replace(' ', '_')}: {served or 'nothing'} serves. "
            f"Candidate {candidate}: {outcome}. Reason: {reason}")


def record_decision(path: Path, text: str, passed: bool) -> bool:
    """Write the gate's decision into an existing report (the evaluation writes it before the gate runs)."""
    if not path.exists():
        return False
    page = path.read_text()
    head, start, rest = page.partition(DECISION_START)
    _, end, tail = rest.partition(DECISION_END)
    if not (start and end):
        return False
    badge = '<span class="badge pass">passed</span>' if passed else '<span class="badge fail">did not pass</span>'
    write_text_atomically(path, f"{head}{start}<p>{badge} {html.escape(text)}</p>{end}{tail}")
    return True


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    """Cells are trusted HTML fragments: callers escape text."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _goodness(metric: str, value: float) -> float:
    """Larger is better; a signed bias is best closest to zero."""
    return -abs(value) if metric == "bias_pct" else HIGHER_IS_BETTER[metric] * value


def _better(metric: str) -> str:
    return "nearer 0" if metric == "bias_pct" else "higher" if HIGHER_IS_BETTER[metric] > 0 else "lower"


def _in_headline_order(wide: pd.DataFrame) -> pd.DataFrame:
    """Rows in HEADLINE_METRICS order (error, ranking, bias) rather than alphabetical."""
    metric = wide.index.get_level_values("metric")
    return wide.iloc[np.lexsort((np.arange(len(wide)), [HEADLINE_METRICS.index(m) for m in metric]))]


def _metric_rows(frame: pd.DataFrame, index: list[str], scorers: list[str]) -> list[list[str]]:
    """One row per index value (metric first); the best scorer (but the oracle: no model can reach it) in bold."""
    wide = _in_headline_order(frame.pivot_table(index=index, columns="scorer", values="value"))
    rows = []
    for key, row in wide.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        metric = key[0]
        contenders = {s: row[s] for s in scorers if s != "oracle" and s in row and pd.notna(row[s])}
        best = max(contenders, key=lambda s: _goodness(metric, contenders[s]), default=None)
        cells = [f"<b>{_number(row.get(s))}</b>" if s == best else _number(row.get(s)) for s in scorers]
        rows.append([html.escape(str(pd.Timestamp(k).date()) if isinstance(k, pd.Timestamp) else str(k))
                     for k in key] + [_better(metric)] + [f'<span class="num">{c}</span>' for c in cells])
    return rows


def _card_rows(card: dict) -> list[list[str]]:
    window = card.get("training_window", {})
    post, params = card.get("postprocessing", {}), card.get("params", {})
    facts = {
        "refit of (the version the newest cutoff graded)": card.get("refit_of"),
        "training rows": card.get("training_rows"),
        "training window (as-of days)": f"{window.get('first_as_of')} … {window.get('last_as_of')}",
        "blend weight (CatBoost share)": post.get("blend_weight"),
        "bias scale": post.get("scale"),
        "loss, depth, iterations, learning rate": ", ".join(
            str(params.get(k)) for k in ("loss_function", "depth", "iterations", "learning_rate")),
        "source partitions": card.get("source_partitions"),
        "code version": card.get("code_version"),
    }
    return [[html.escape(k), html.escape(str(v))] for k, v in facts.items() if v is not None]


def _figure(title: str, png: bytes) -> str:
    title = html.escape(title)
    return f'<figure><img alt="{title}" src="{data_uri(png)}"><figcaption>{title}</figcaption></figure>'


def _importance(name: str, card: dict) -> str:
    importance = card.get("feature_importance") or {}
    if not importance:
        return "<p>No feature importance in the version's card.</p>"
    png = importance_png(list(importance), np.array(list(importance.values()), float), f"{name} feature importance")
    return _figure(f"{name} feature importance (refit)", png)


def _chart(name: str, test: pd.DataFrame, forecasts: dict[str, dict[str, np.ndarray]]) -> str:
    title, render = CHARTS[name]
    png = render(test[TARGETS[name].label].to_numpy(float),
                 {scorer: f[name] for scorer, f in forecasts.items() if name in f})
    return _figure(f"{title} ({test['as_of'].max():%Y-%m-%d})", png)


def _page(name: str, version: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(name)} model {html.escape(version)}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px; color: #222; max-width: 1100px; }}
h1 {{ font-size: 22px; margin: 0 0 4px; }}
h2 {{ font-size: 18px; margin: 28px 0 8px; }}
.meta {{ color: #666; font-size: 13px; margin-bottom: 16px; }}
table {{ border-collapse: collapse; font-size: 13px; margin-bottom: 8px; }}
th, td {{ text-align: left; padding: 5px 10px; border-bottom: 1px solid #e5e5e5; vertical-align: top; }}
th {{ background: #f6f6f6; font-weight: 600; }}
.num {{ display: block; text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
.badge {{ display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }}
.pass {{ background: #e3f4e8; color: #17692f; }}
.fail {{ background: #fbe4e4; color: #a31515; }}
#decision {{ background: #fafafa; border-left: 3px solid #4c72b0; padding: 4px 12px; }}
figure {{ display: inline-block; vertical-align: top; margin: 0 16px 16px 0; }}
figcaption {{ color: #666; font-size: 12px; }}
</style>
</head><body>
{body}
</body></html>
"""


def write_model_report(path: Path, name: str, version: str, table: pd.DataFrame, card: dict, chart: str,
                       facts: dict[str, str]) -> Path:
    """The report of one target's candidate: gate decision (pending until the gate records it), backtest means
    and each cutoff per scorer, the newest cutoff's chart, feature importance and the version's card."""
    mine = table[(table["model"] == name) & table["metric"].isin(HEADLINE_METRICS)]
    scorers = [s for s in SCORERS if s in set(mine["scorer"])]
    at_cutoffs = mine[mine["cutoff"].notna()]
    cutoff_scorers = [s for s in scorers if s in set(at_cutoffs["scorer"])]
    gate = ", ".join(TARGETS[name].gate_metrics)
    body = "\n".join([
        f"<h1>{html.escape(name)} model {html.escape(version)}</h1>",
        '<div class="meta">' + " · ".join(f"{html.escape(k)}: {html.escape(str(v))}" for k, v in facts.items()) + "</div>",
        f'<h2>Gate decision</h2><div id="decision">{DECISION_START}<p>Pending: ml/model_registry has not decided '
        f"on this version yet.</p>{DECISION_END}</div>",
        "<h2>Backtest mean per scorer</h2>",
        _html_table(["metric", "better", *scorers], _metric_rows(mine[mine["cutoff"].isna()], ["metric"], scorers)),
        f'<p class="meta">Bold: the best scorer but the oracle (the simulator\'s truth, out of any model\'s reach). '
        f"The gate compares the candidate with BG/NBD + Gamma-Gamma on {html.escape(gate)} "
        f"(the mean; {html.escape(TARGETS[name].blend_metric)} also at every cutoff).</p>",
        "<h2>Each backtest cutoff</h2>",
        _html_table(["metric", "cutoff", "better", *cutoff_scorers],
                    _metric_rows(at_cutoffs, ["metric", "cutoff"], cutoff_scorers)),
        "<h2>Charts</h2>", chart, _importance(name, card),
        "<h2>The version</h2>", _html_table(["card", "value"], _card_rows(card)),
    ])
    write_text_atomically(path, _page(name, version, body))
    return path


def write_model_reports(reports_root: Path, models_root: Path, candidates: dict[str, str], table: pd.DataFrame,
                        newest: dict, facts: dict[str, str]) -> dict[str, Path]:
    """One report per candidate version; `newest` holds the newest cutoff's customers and every scorer's forecasts."""
    evaluated = {"evaluated at": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC", **facts}
    return {name: write_model_report(model_report_path(reports_root, name, version), name, version, table,
                                     ModelVersion(name, version, Path(models_root) / name / version).card(),
                                     _chart(name, newest["test"], newest["forecasts"]), evaluated)
            for name, version in candidates.items()}
