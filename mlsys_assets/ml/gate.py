"""The promotion gate: a pure decision on backtest metrics (no Dagster, no warehouse).

Per target, a CatBoost candidate serves only if, on the mean over the backtest cutoffs, it is at least
as good as BG/NBD + Gamma-Gamma on every gate metric of its target (LTV: RMSE, Gini, top-10% capture,
|aggregate bias| within max(bound, the classic model's own); churn: ROC-AUC and Brier), beats the naive
and historical baselines on the ranking metrics, and is not worse than the production CatBoost model's
own backtest beyond a tolerance; on its error metric it must be clearly better than the classic model
on average (`min_improvement`) and no worse at any single cutoff. Failing against the classic model or the baselines means the classic
model serves the target (the fallback); failing only against production keeps production.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlsys_assets.ml.metrics import HIGHER_IS_BETTER
from mlsys_assets.ml.targets import Target

RANKING_METRICS = {"ltv": ("gini", "top10_capture"), "churn": ("roc_auc",)}
KEEP_PRODUCTION, SERVE_BTYD, PROMOTE = "keep production", "serve btyd", "promote"


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    action: str  # PROMOTE, SERVE_BTYD or KEEP_PRODUCTION
    reason: str


def _no_worse(metric: str, mine: float, theirs: float) -> bool:
    return mine >= theirs if HIGHER_IS_BETTER[metric] > 0 else mine <= theirs


def _against_btyd(target: Target, value: dict, max_abs_bias_pct: float, min_improvement: float) -> list[str]:
    failures = []
    for metric in target.gate_metrics:
        mine, theirs = value.get(("candidate", metric), np.nan), value.get(("bgnbd", metric), np.nan)
        if np.isnan(mine):
            failures.append(f"{metric} could not be computed on the backtest")
        elif (metric == target.blend_metric and not np.isnan(theirs) and mine <= theirs
              and mine > theirs * (1 - min_improvement)):
            failures.append(f"{metric} {mine:.4f} is not {min_improvement:.1%} better than BG/NBD's {theirs:.4f}")
        elif metric == "abs_bias_pct":
            bound = max(max_abs_bias_pct, theirs if not np.isnan(theirs) else 0.0)
            if mine > bound:
                failures.append(f"|bias| {mine:.1f}% is beyond {bound:.1f}% (max of ±{max_abs_bias_pct}% and BG/NBD's)")
        elif not np.isnan(theirs) and not _no_worse(metric, mine, theirs):
            mine_text, theirs_text = _distinct(mine, theirs)
            failures.append(f"{metric} {mine_text} is worse than BG/NBD's {theirs_text}")
    return failures


def _distinct(mine: float, theirs: float) -> tuple[str, str]:
    """Both values to 4 decimals, or to as many more as it takes for them to read differently (a reason
    that says "0.8557 is worse than 0.8557" explains nothing)."""
    for decimals in range(4, 9):
        mine_text, theirs_text = f"{mine:.{decimals}f}", f"{theirs:.{decimals}f}"
        if mine_text != theirs_text:
            break
    return mine_text, theirs_text


def _at_every_cutoff(target: Target, by_cutoff: dict[str, dict[tuple[str, str], float]]) -> list[str]:
    """On its error metric the candidate may lose to BG/NBD at no cutoff: better on average but worse in
    one season (the holiday window, say) is how a model loses on the one future window that matters."""
    metric = target.blend_metric
    return [f"{metric} %s is worse than BG/NBD's %s at the cutoff {cutoff}"
            % _distinct(values[("candidate", metric)], values[("bgnbd", metric)])
            for cutoff, values in sorted(by_cutoff.items())
            if ("candidate", metric) in values and ("bgnbd", metric) in values
            and not _no_worse(metric, values[("candidate", metric)], values[("bgnbd", metric)])]


def _against_baselines(target: Target, value: dict) -> list[str]:
    failures = []
    for metric in RANKING_METRICS[target.name]:
        mine = value.get(("candidate", metric), np.nan)
        for baseline in ("naive", "historical"):
            theirs = value.get((baseline, metric), np.nan)
            if not np.isnan(mine) and not np.isnan(theirs) and not mine > theirs:
                failures.append(f"{metric} {mine:.4f} does not beat {baseline} {theirs:.4f}")
    return failures


def gate_decision(target: Target, value: dict[tuple[str, str], float], production_backtest: dict | None,
                  tolerance: float, max_abs_bias_pct: float, min_improvement: float = 0.0,
                  by_cutoff: dict[str, dict[tuple[str, str], float]] | None = None) -> GateDecision:
    """`value` maps (scorer, metric) to the backtest mean; `production_backtest` is the production CatBoost
    version's own backtest means (None when the classic model or nothing serves). On its error metric
    (RMSE, Brier) the candidate must be `min_improvement` (relative) better than BG/NBD: a difference
    within the backtest's noise is no reason to serve a more complex model."""
    failures = (_against_btyd(target, value, max_abs_bias_pct, min_improvement)
                + _at_every_cutoff(target, by_cutoff or {}) + _against_baselines(target, value))
    if failures:
        return GateDecision(False, SERVE_BTYD, "; ".join(failures))
    worse = [f"{metric} {value[('candidate', metric)]:.4f} is worse than production's backtest "
             f"{production_backtest[metric]:.4f} beyond the tolerance {tolerance}"
             for metric in RANKING_METRICS[target.name]
             if production_backtest and metric in production_backtest
             and value[("candidate", metric)] < production_backtest[metric] - tolerance]
    if worse:
        return GateDecision(False, KEEP_PRODUCTION, "; ".join(worse))
    shown = ", ".join(f"{m} {value[('candidate', m)]:.4f} vs {value.get(('bgnbd', m), np.nan):.4f}"
                      for m in target.gate_metrics)
    return GateDecision(True, PROMOTE, f"matches or beats BG/NBD on the backtest ({shown}) and beats naive, historical")
