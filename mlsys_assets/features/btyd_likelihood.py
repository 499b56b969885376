"""The BG/NBD and Gamma-Gamma likelihoods with their analytic gradients, the optimizer that fits them,
and the input checks shared with the closed forms.

The fitting machinery of features/btyd.py (whose docstring has the maths and the references); that
module keeps the models' parameters, their forecasts and the public `fit_*` functions.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.optimize import minimize
from scipy.special import betaln, digamma, expit, gammaln

# Optimisation runs on log-parameters; the box only keeps exp() finite when a parameter runs off
# (e.g. b -> infinity when the data show no dropout at all).
LOG_PARAM_BOUNDS = (-20.0, 20.0)


@dataclass(frozen=True)
class BgNbdData:
    """RFM rows prepared for the likelihood, split into first-time-only and repeat buyers."""

    distinct_x: np.ndarray
    weight_by_distinct_x: np.ndarray
    # Customers with x = 0: only T matters.
    once_T: np.ndarray
    once_weight: np.ndarray
    # Customers with x >= 1.
    repeat_x: np.ndarray
    repeat_t_x: np.ndarray
    repeat_T: np.ndarray
    repeat_weight: np.ndarray
    total_weight: float

    @classmethod
    def build(
        cls, x: ArrayLike, t_x: ArrayLike, T: ArrayLike, weights: ArrayLike | None, *, deduplicate: bool
    ) -> BgNbdData:
        x, t_x, T = validated_rfm(x, t_x, T)
        weight = validated_weights(weights, len(x))
        # t_x carries no information when x = 0; zeroing it lets those rows merge.
        t_x = np.where(x > 0, t_x, 0.0)
        if deduplicate:
            merged = (
                pd.DataFrame({"x": x, "t_x": t_x, "T": T, "weight": weight})
                .groupby(["x", "t_x", "T"], sort=False)["weight"]
                .sum()
                .reset_index()
            )
            x, t_x, T, weight = (merged[c].to_numpy(dtype=float) for c in ("x", "t_x", "T", "weight"))
        kept = weight > 0
        x, t_x, T, weight = x[kept], t_x[kept], T[kept], weight[kept]
        if len(x) == 0:
            raise ValueError("no customers with positive weight to fit on")
        distinct_x, x_index = np.unique(x, return_inverse=True)
        repeat = x > 0
        return cls(
            distinct_x=distinct_x,
            weight_by_distinct_x=np.bincount(x_index, weights=weight, minlength=len(distinct_x)),
            once_T=T[~repeat],
            once_weight=weight[~repeat],
            repeat_x=x[repeat],
            repeat_t_x=t_x[repeat],
            repeat_T=T[repeat],
            repeat_weight=weight[repeat],
            total_weight=float(weight.sum()),
        )


def bgnbd_negative_mean_log_likelihood(log_params: np.ndarray, data: BgNbdData) -> tuple[float, np.ndarray]:
    """-(weighted mean log-likelihood) and its gradient in the log-parameters.

    Per customer, log L = log[Gamma(r+x) alpha^r / Gamma(r)] + log[B(a, b+x) / B(a, b)]
    + log[(alpha+T)^-(r+x) + [x > 0] a / (b+x-1) (alpha+t_x)^-(r+x)]; the last term is
    "alive at T" plus "died after the last purchase", combined by log-sum-exp.
    """
    r, alpha, a, b = np.exp(log_params)
    xs, wx = data.distinct_x, data.weight_by_distinct_x
    x, w = data.repeat_x, data.repeat_weight

    by_x = gammaln(r + xs) - gammaln(r) + r * np.log(alpha) + betaln(a, b + xs) - betaln(a, b)
    log_alpha_T_once = np.log(alpha + data.once_T)
    log_alpha_T = np.log(alpha + data.repeat_T)
    log_alpha_t_x = np.log(alpha + data.repeat_t_x)
    log_alive_term = -(r + x) * log_alpha_T
    # log(dead term / alive term); logaddexp(0, .) adds the dead term in log space.
    log_odds_dead = np.log(a) - np.log(b + x - 1.0) + (r + x) * (log_alpha_T - log_alpha_t_x)
    log_likelihood = (
        weighted_sum(wx, by_x)
        - r * weighted_sum(data.once_weight, log_alpha_T_once)
        + weighted_sum(w, log_alive_term + np.logaddexp(0.0, log_odds_dead))
    )

    # The derivatives of the two branches are weighted by their shares of the likelihood; the
    # dead branch's share is 1 - P(alive).
    weight_dead = w * expit(log_odds_dead)
    weight_alive = w - weight_dead
    d_r = (
        weighted_sum(wx, digamma(r + xs) - digamma(r) + np.log(alpha))
        - weighted_sum(data.once_weight, log_alpha_T_once)
        - weighted_sum(weight_alive, log_alpha_T)
        - weighted_sum(weight_dead, log_alpha_t_x)
    )
    d_alpha = (
        data.total_weight * r / alpha
        - r * weighted_sum(data.once_weight, 1.0 / (alpha + data.once_T))
        - weighted_sum(weight_alive, (r + x) / (alpha + data.repeat_T))
        - weighted_sum(weight_dead, (r + x) / (alpha + data.repeat_t_x))
    )
    d_a = weighted_sum(wx, digamma(a + b) - digamma(a + b + xs)) + weight_dead.sum() / a
    d_b = weighted_sum(wx, digamma(b + xs) - digamma(b) + digamma(a + b) - digamma(a + b + xs)) - weighted_sum(
        weight_dead, 1.0 / (b + x - 1.0)
    )
    gradient = np.array([d_r * r, d_alpha * alpha, d_a * a, d_b * b])
    return -log_likelihood / data.total_weight, -gradient / data.total_weight


# --- Gamma-Gamma internals -------------------------------------------------------------------


@dataclass(frozen=True)
class GammaGammaData:
    """Repeat buyers' (x, m_x) with the parameter-free sums of the likelihood precomputed."""

    x: np.ndarray
    m_x: np.ndarray
    weight: np.ndarray
    distinct_x: np.ndarray
    weight_by_distinct_x: np.ndarray
    sum_w_x_log_x_m: float
    sum_w_log_m: float
    total_weight: float

    @classmethod
    def build(cls, x: ArrayLike, m_x: ArrayLike, weights: ArrayLike | None) -> GammaGammaData:
        x = validated_frequency(x)
        m_x = np.asarray(m_x, dtype=float)
        weight = validated_weights(weights, len(x))
        kept = (x > 0) & (weight > 0)
        x, m_x, weight = x[kept], m_x[kept], weight[kept]
        if len(x) == 0:
            raise ValueError("the Gamma-Gamma model needs customers with at least one repeat purchase")
        if not np.all(np.isfinite(m_x) & (m_x > 0)):
            raise ValueError("m_x must be positive and finite for every customer with x >= 1")
        distinct_x, x_index = np.unique(x, return_inverse=True)
        return cls(
            x=x,
            m_x=m_x,
            weight=weight,
            distinct_x=distinct_x,
            weight_by_distinct_x=np.bincount(x_index, weights=weight, minlength=len(distinct_x)),
            sum_w_x_log_x_m=weighted_sum(weight, x * np.log(x * m_x)),
            sum_w_log_m=weighted_sum(weight, np.log(m_x)),
            total_weight=float(weight.sum()),
        )


def gamma_gamma_negative_mean_log_likelihood(
    log_params: np.ndarray, data: GammaGammaData
) -> tuple[float, np.ndarray]:
    """-(weighted mean log-likelihood) of the observed average spends, and its gradient.

    The log density of m_x given x (Fader and Hardie 2013):
    lnG(px+q) - lnG(px) - lnG(q) + q ln v + (px-1) ln m + px ln x - (px+q) ln(x m + v).
    """
    p, q, v = np.exp(log_params)
    xs, wx = data.distinct_x, data.weight_by_distinct_x
    log_x_m_v = np.log(data.x * data.m_x + v)
    w_x = data.weight * data.x

    log_likelihood = (
        weighted_sum(wx, gammaln(p * xs + q) - gammaln(p * xs) - gammaln(q) + q * np.log(v))
        + p * data.sum_w_x_log_x_m
        - data.sum_w_log_m
        - p * weighted_sum(w_x, log_x_m_v)
        - q * weighted_sum(data.weight, log_x_m_v)
    )
    d_p = (
        weighted_sum(wx, xs * (digamma(p * xs + q) - digamma(p * xs)))
        + data.sum_w_x_log_x_m
        - weighted_sum(w_x, log_x_m_v)
    )
    d_q = weighted_sum(wx, digamma(p * xs + q) - digamma(q) + np.log(v)) - weighted_sum(data.weight, log_x_m_v)
    d_v = data.total_weight * q / v - weighted_sum(data.weight, (p * data.x + q) / (data.x * data.m_x + v))
    gradient = np.array([d_p * p, d_q * q, d_v * v])
    return -log_likelihood / data.total_weight, -gradient / data.total_weight


# --- shared helpers ----------------------------------------------------------------------------


def maximize_likelihood(
    objective: Callable[[np.ndarray, Any], tuple[float, np.ndarray]], start: np.ndarray, data: Any, model: str
) -> tuple[float, ...]:
    result = minimize(
        objective,
        start,
        args=(data,),
        jac=True,
        method="L-BFGS-B",
        bounds=[LOG_PARAM_BOUNDS] * len(start),
        options={"maxiter": 1000, "ftol": 1e-13, "gtol": 1e-9},
    )
    if not np.all(np.isfinite(result.x)) or not np.isfinite(result.fun):
        raise RuntimeError(f"{model} fit failed: {result.message}")
    # A line search that cannot improve at the optimum is common with tight tolerances; only a
    # gradient that is still large means the fit stopped early.
    if not result.success and np.max(np.abs(result.jac)) > 1e-5:
        warnings.warn(f"{model} fit may not have converged: {result.message}", RuntimeWarning, stacklevel=3)
    if np.any(np.abs(result.x) >= LOG_PARAM_BOUNDS[1] - 1e-6):
        warnings.warn(f"{model} fit hit a parameter bound: {np.exp(result.x)}", RuntimeWarning, stacklevel=3)
    return tuple(float(value) for value in np.exp(result.x))


def weighted_sum(weights: np.ndarray, values: np.ndarray) -> float:
    # Not `weights @ values`: BLAS threads spinning between the optimiser's many small calls
    # made fits 20x slower on a busy machine.
    return float(np.sum(weights * values))


def validated_frequency(x: ArrayLike) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(x) & (x >= 0) & (x == np.floor(x))):
        raise ValueError("x (repeat purchases) must be non-negative integers")
    return x


def validated_rfm(x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = validated_frequency(x)
    t_x = np.asarray(t_x, dtype=float)
    T = np.asarray(T, dtype=float)
    x, t_x, T = np.broadcast_arrays(x, t_x, T)
    if not np.all(np.isfinite(t_x) & np.isfinite(T) & (t_x >= 0) & (t_x <= T)):
        raise ValueError("RFM rows need finite 0 <= t_x <= T")
    return x, t_x, T


def validated_horizon(t: ArrayLike) -> np.ndarray:
    t = np.asarray(t, dtype=float)
    if not np.all(np.isfinite(t) & (t >= 0)):
        raise ValueError("the horizon t must be finite and >= 0")
    return t


def validated_weights(weights: ArrayLike | None, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    weights = np.asarray(weights, dtype=float)
    if weights.shape != (n,) or not np.all(np.isfinite(weights) & (weights >= 0)):
        raise ValueError(f"weights must be {n} finite non-negative numbers")
    return weights


def subsample(n: int, max_customers: int | None, seed: int) -> np.ndarray | slice:
    if max_customers is None or max_customers >= n:
        return slice(None)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_customers, replace=False))
