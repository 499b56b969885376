"""Buy-till-you-die baseline: the BG/NBD purchase model and the Gamma-Gamma spend model.

References
----------
- P. S. Fader, B. G. S. Hardie, K. L. Lee (2005), "'Counting Your Customers' the Easy Way: An
  Alternative to the Pareto/NBD Model", Marketing Science 24(2), 275-284: the BG/NBD model, its
  likelihood (eq. 6) and the conditional expectation E[Y(t) | x, t_x, T] (eq. 10).
- P. S. Fader, B. G. S. Hardie, K. L. Lee, notes "Computing P(alive) Using the BG/NBD Model" and
  "Computing E[Y(t) | x, t_x, T]" (the CDNOW example: 1.226 purchases in 39 weeks).
- P. S. Fader, B. G. S. Hardie (2013), "The Gamma-Gamma Model of Monetary Value" (note).

Inputs are per-customer RFM summaries: ``x`` = number of repeat purchases, ``t_x`` = time of the
last purchase since the first one, ``T`` = age since the first purchase. Any time unit works as
long as it is the same for ``t_x``, ``T``, the horizon ``t`` and the fitted parameters; the
platform uses days. ``m_x`` is the average value of the repeat purchases.

BG/NBD: while alive, a customer buys as a Poisson process with rate lambda ~ Gamma(r, alpha);
after each repeat purchase they die with probability p ~ Beta(a, b). Nobody dies at the first
purchase (time 0), so customers with x = 0 are alive with certainty.

Probability of no purchase in the next t
-----------------------------------------
``p_no_purchase(t, ...)`` is the exact P(Y(t) = 0 | x, t_x, T), where Y(t) counts purchases in
(T, T + t]. A customer can only die right after a purchase, so one who is alive at T stays alive
until their next purchase. "No purchase in (T, T + t]" therefore means: dead at T, or alive at T
and the next Poisson arrival comes after T + t. Given alive and lambda, the latter has probability
exp(-lambda t) (memorylessness). Given alive, the data's likelihood in lambda is
lambda^x exp(-lambda T), so lambda's posterior is Gamma(r + x, alpha + T), independent of p, and

    P(Y(t) = 0 | data) = 1 - P(alive) + P(alive) * ((alpha + T) / (alpha + T + t)) ** (r + x).

It is not 1 - P(alive): that treats every live customer as a certain buyer, which overstates
buying for slow buyers and for the young customers with x = 0 (whose P(alive) is exactly 1).

Numerical notes
---------------
- The log-likelihood is computed in log space; the two terms of a repeat buyer's likelihood are
  combined with log-sum-exp. Terms that depend on x alone (gammaln/betaln) are evaluated once per
  distinct x, and the fit uses the analytic gradient, which is what makes 1M customers fast.
- Eq. 10's term ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; c; z), with c = a+b+x-1 and
  z = t / (alpha+T+t), equals (1-z)^(a-1) 2F1(a+b-1-r, a-1; c; z) (Euler's transformation).
  Each row uses the form whose 2F1 stays bounded as z -> 1: the transformed one when
  x + r + 1 > a (every repeat buyer in practice; it also keeps the large x out of the numerator
  parameters, so heavy buyers over long horizons converge fast), the literal one otherwise.
  1 - (1-z)^k F is then computed as -expm1(k log(1-z)) F - (F - 1) or directly, whichever rounds
  less: the first for short horizons (where the direct form cancels), the second when F is large.
- Eq. 10 has removable singularities at a = 1 (the prefactor 1 / (a - 1)) and, for x = 0, at
  a + b = 1 (a pole of 2F1 at c = 0). Within 1e-4 of either, the expectation is interpolated
  linearly in a between the two sides (relative error ~1e-7 at worst).
- scipy's hyp2f1 returns NaN when its c - a - b is an integer, which happens here for every x when
  r - a is an integer (e.g. hand-set r = 2, a = 3), and is inaccurate within ~1e-10 of it. Within
  1e-7 the expectation is interpolated linearly in r across 1e-4.
- Checked against an independent quadrature (E[(1 - exp(-lambda p t)) / p] over the posterior)
  for x up to 1000, horizons from 0.01 to 1e5 and random parameters: relative error <= 2e-7.
  For t much shorter than alpha + T the relative error grows like 1e-16 / z: negligible for
  horizons of a day or more when alpha + T is in days.
- The Gamma-Gamma mean spend p v / (q - 1) is finite only for q > 1; spend predictions raise when
  the fitted q is not (a sign of very heavy-tailed spend, e.g. unremoved outliers).
- The Gamma-Gamma model assumes spend per transaction is independent of purchase frequency.
- Day-granular RFM (integer t_x, T) is a discretised continuous-time process; on simulated data
  it biases the fitted r and alpha by ~2-3% (the rate r / alpha much less), which is small next to
  the model's misspecification on real data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.special import expit, hyp2f1

from mlsys_assets.features.btyd_likelihood import (
    BgNbdData,
    GammaGammaData,
    bgnbd_negative_mean_log_likelihood,
    gamma_gamma_negative_mean_log_likelihood,
    maximize_likelihood,
    subsample,
    validated_frequency,
    validated_horizon,
    validated_rfm,
    validated_weights,
    weighted_sum,
)

# Half-width of the interval across which eq. 10 is interpolated at its removable singularities.
SINGULARITY_HALF_WIDTH = 1e-4
# How close r - a may come to an integer before scipy's hyp2f1 is not trusted (see below).
HYP2F1_INTEGER_GAP_TOLERANCE = 1e-7


@dataclass(frozen=True)
class BgNbdParams:
    """Fitted BG/NBD parameters: lambda ~ Gamma(r, alpha) (alpha in the time unit), p ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float

    def log_likelihood(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike, weights: ArrayLike | None = None) -> float:
        """The total (weighted) log-likelihood of the RFM rows (FHL 2005 eq. 6)."""
        data = BgNbdData.build(x, t_x, T, weights, deduplicate=False)
        return -bgnbd_negative_mean_log_likelihood(self._log_values(), data)[0] * data.total_weight

    def p_alive(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> np.ndarray:
        """P(alive at T | x, t_x, T)."""
        x, t_x, T = validated_rfm(x, t_x, T)
        return _p_alive(self.r, self.alpha, self.a, self.b, x, t_x, T)

    def expected_purchases(self, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> np.ndarray:
        """E[number of purchases in (T, T + t] | x, t_x, T] (FHL 2005 eq. 10)."""
        x, t_x, T = validated_rfm(x, t_x, T)
        t = validated_horizon(t)
        alive = _p_alive(self.r, self.alpha, self.a, self.b, x, t_x, T)
        return alive * self._expected_purchases_if_alive(t, x, T)

    def p_no_purchase(self, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> np.ndarray:
        """The exact P(no purchase in (T, T + t] | x, t_x, T); see the module docstring."""
        x, t_x, T = validated_rfm(x, t_x, T)
        t = validated_horizon(t)
        alive = _p_alive(self.r, self.alpha, self.a, self.b, x, t_x, T)
        return _p_no_purchase(alive, self.r, self.alpha, t, x, T)

    def _expected_purchases_if_alive(self, t: np.ndarray, x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """Eq. 10 without P(alive), stepping around the parameter values it cannot be evaluated at."""

        def at(r: float, a: float) -> np.ndarray:
            return _expected_purchases_if_alive(t, x, T, r, self.alpha, a, self.b)

        def at_a(a: float) -> np.ndarray:
            # hyp2f1 fails where r - a is an integer, although E[Y] is smooth in r there.
            nearest_bad_r = a + round(self.r - a)
            if abs(self.r - nearest_bad_r) < HYP2F1_INTEGER_GAP_TOLERANCE and nearest_bad_r > SINGULARITY_HALF_WIDTH:
                return _interpolate_across(lambda r: at(r, a), self.r, nearest_bad_r)
            return at(self.r, a)

        removable_singularities = [1.0] + ([1.0 - self.b] if np.any(x == 0) else [])
        values = None
        for singular_a in removable_singularities:
            if abs(self.a - singular_a) < SINGULARITY_HALF_WIDTH:
                values = _interpolate_across(at_a, self.a, singular_a)
        if values is None:
            values = at_a(self.a)
        # At extreme fits (a -> 0 with b huge: dropout after a purchase has probability a/(a+b) ~ 0) scipy's
        # hyp2f1 returns NaN; the expectation there is the no-dropout limit, the Gamma posterior's mean rate.
        no_dropout = (self.r + x) / (self.alpha + T) * t
        return np.where(np.isfinite(values), values, no_dropout)

    def _log_values(self) -> np.ndarray:
        return np.log([self.r, self.alpha, self.a, self.b])


@dataclass(frozen=True)
class GammaGammaParams:
    """Fitted Gamma-Gamma parameters: spend per transaction ~ Gamma(p, nu), nu ~ Gamma(q, v)."""

    p: float
    q: float
    v: float

    @property
    def population_mean_spend(self) -> float:
        """The expected spend per transaction of a customer we know nothing about: p v / (q - 1)."""
        self._require_finite_mean()
        return self.p * self.v / (self.q - 1.0)

    def log_likelihood(self, x: ArrayLike, m_x: ArrayLike, weights: ArrayLike | None = None) -> float:
        """The total (weighted) log-likelihood of the customers with x >= 1."""
        data = GammaGammaData.build(x, m_x, weights)
        return -gamma_gamma_negative_mean_log_likelihood(np.log([self.p, self.q, self.v]), data)[0] * data.total_weight

    def conditional_expected_average_spend(self, x: ArrayLike, m_x: ArrayLike) -> np.ndarray:
        """E[spend per transaction | x, m_x]: a credibility-weighted mix of m_x and the population mean.

        Customers with x = 0 get the population mean (their m_x is ignored and may be NaN).
        """
        self._require_finite_mean()
        x = validated_frequency(x)
        m_x = np.asarray(m_x, dtype=float)
        observed_total = x * np.where(x > 0, m_x, 0.0)
        if np.any(~np.isfinite(observed_total)):
            raise ValueError("m_x must be finite for customers with x >= 1")
        return self.p * (self.v + observed_total) / (self.p * x + self.q - 1.0)

    def _require_finite_mean(self) -> None:
        if self.q <= 1.0:
            raise ValueError(
                f"Gamma-Gamma q = {self.q:.4g} <= 1: the spend distribution has no finite mean; "
                "check the spend data for outliers"
            )


@dataclass(frozen=True)
class BtydModel:
    """BG/NBD purchases and Gamma-Gamma spend, fitted together on one RFM table."""

    bgnbd: BgNbdParams
    gamma_gamma: GammaGammaParams

    @classmethod
    def fit(
        cls,
        x: ArrayLike,
        t_x: ArrayLike,
        T: ArrayLike,
        m_x: ArrayLike,
        weights: ArrayLike | None = None,
        *,
        max_customers: int | None = None,
        seed: int = 0,
    ) -> BtydModel:
        """Fit both models; the same deterministic subsample (if any) feeds both."""
        x, t_x, T = validated_rfm(x, t_x, T)
        m_x = np.asarray(m_x, dtype=float)
        weights = validated_weights(weights, len(x))
        rows = subsample(len(x), max_customers, seed)
        return cls(
            bgnbd=fit_bgnbd(x[rows], t_x[rows], T[rows], weights[rows]),
            gamma_gamma=fit_gamma_gamma(x[rows], m_x[rows], weights[rows]),
        )

    def expected_spend(self, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike, m_x: ArrayLike) -> np.ndarray:
        """Expected spend in (T, T + t]: expected purchases times the conditional average spend."""
        spend_per_purchase = self.gamma_gamma.conditional_expected_average_spend(x, m_x)
        return self.bgnbd.expected_purchases(t, x, t_x, T) * spend_per_purchase

    def predict(
        self, horizon_days: float, x: ArrayLike, t_x: ArrayLike, T: ArrayLike, m_x: ArrayLike
    ) -> pd.DataFrame:
        """Per-customer forecasts for the next horizon_days; keeps x's index when x is a Series."""
        index = x.index if isinstance(x, pd.Series) else None
        x, t_x, T = validated_rfm(x, t_x, T)
        t = validated_horizon(horizon_days)
        params = self.bgnbd
        alive = _p_alive(params.r, params.alpha, params.a, params.b, x, t_x, T)
        purchases = alive * params._expected_purchases_if_alive(t, x, T)
        spend_per_purchase = self.gamma_gamma.conditional_expected_average_spend(x, m_x)
        return pd.DataFrame(
            {
                "expected_purchases": purchases,
                "expected_spend": purchases * spend_per_purchase,
                "p_alive": alive,
                "p_no_purchase": _p_no_purchase(alive, params.r, params.alpha, t, x, T),
            },
            index=index,
        )

    def to_dict(self) -> dict[str, dict[str, float]]:
        """JSON-serialisable parameters, to store with a model version."""
        return {"bgnbd": asdict(self.bgnbd), "gamma_gamma": asdict(self.gamma_gamma)}

    @classmethod
    def from_dict(cls, params: dict[str, dict[str, float]]) -> BtydModel:
        return cls(
            bgnbd=BgNbdParams(**{k: float(v) for k, v in params["bgnbd"].items()}),
            gamma_gamma=GammaGammaParams(**{k: float(v) for k, v in params["gamma_gamma"].items()}),
        )


def fit_bgnbd(
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    max_customers: int | None = None,
    seed: int = 0,
) -> BgNbdParams:
    """Maximum-likelihood BG/NBD parameters.

    ``weights`` are counts (or any non-negative weights) of the rows. Identical RFM rows are merged
    before fitting, so day-granular data fits in the time of its distinct rows. ``max_customers``
    fits on a deterministic uniform subsample of that many rows (weights kept).
    """
    x, t_x, T = validated_rfm(x, t_x, T)
    weights = validated_weights(weights, len(x))
    rows = subsample(len(x), max_customers, seed)
    x, t_x, T, weights = x[rows], t_x[rows], T[rows], weights[rows]
    data = BgNbdData.build(x, t_x, T, weights, deduplicate=True)
    # Start at r = 1 with the rate r / alpha matching the average purchase rate.
    mean_x = max(weighted_sum(weights, x) / data.total_weight, 1e-3)
    mean_T = max(weighted_sum(weights, T) / data.total_weight, 1e-3)
    start = np.log([1.0, mean_T / mean_x, 1.0, 1.0])
    r, alpha, a, b = maximize_likelihood(bgnbd_negative_mean_log_likelihood, start, data, "BG/NBD")
    return BgNbdParams(r=r, alpha=alpha, a=a, b=b)


def fit_gamma_gamma(
    x: ArrayLike,
    m_x: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    max_customers: int | None = None,
    seed: int = 0,
) -> GammaGammaParams:
    """Maximum-likelihood Gamma-Gamma parameters, fitted on the customers with x >= 1.

    Rows with x = 0 are ignored (their m_x may be NaN). So are repeat buyers whose repeat purchases
    average $0 (free samples, vouchers): the Gamma distribution has no mass at 0, so they cannot
    inform the spend distribution; their forecast still follows from the fitted parameters (the
    conditional expectation is defined for m_x = 0 and shrinks toward it).
    """
    x = validated_frequency(x)
    m_x = np.asarray(m_x, dtype=float)
    weights = validated_weights(weights, len(x))
    rows = np.arange(len(x))[subsample(len(x), max_customers, seed)]
    rows = rows[(x[rows] == 0) | (np.isfinite(m_x[rows]) & (m_x[rows] > 0))]
    data = GammaGammaData.build(x[rows], m_x[rows], weights[rows])
    mean_spend = weighted_sum(data.weight, data.m_x) / data.total_weight
    # Start at p = 1, q = 2, where the population mean p v / (q - 1) equals the observed mean.
    start = np.log([1.0, 2.0, mean_spend])
    p, q, v = maximize_likelihood(gamma_gamma_negative_mean_log_likelihood, start, data, "Gamma-Gamma")
    return GammaGammaParams(p=p, q=q, v=v)


# --- BG/NBD internals ------------------------------------------------------------------------


def _p_alive(r: float, alpha: float, a: float, b: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    repeat = x > 0
    # log of P(dead) / P(alive); only repeat buyers can be dead.
    log_odds_dead = (
        np.log(a)
        - np.log(np.where(repeat, b + x - 1.0, 1.0))
        + (r + x) * np.log1p((T - t_x) / (alpha + t_x))
    )
    return np.where(repeat, expit(-log_odds_dead), 1.0)


def _p_no_purchase(
    alive: np.ndarray, r: float, alpha: float, t: np.ndarray, x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    # 1 - P(alive) (1 - ((alpha+T) / (alpha+T+t))^(r+x)), with expm1/log1p for short horizons.
    buys_if_alive = -np.expm1(-(r + x) * np.log1p(t / (alpha + T)))
    return np.clip(1.0 - alive * buys_if_alive, 0.0, 1.0)


def _interpolate_across(evaluate: Callable[[float], np.ndarray], value: float, singular_value: float) -> np.ndarray:
    """evaluate(value) by linear interpolation between the two sides of a point it cannot be evaluated at."""
    lower_value = singular_value - SINGULARITY_HALF_WIDTH
    lower, upper = evaluate(lower_value), evaluate(singular_value + SINGULARITY_HALF_WIDTH)
    return lower + (value - lower_value) / (2 * SINGULARITY_HALF_WIDTH) * (upper - lower)


def _expected_purchases_if_alive(
    t: np.ndarray, x: np.ndarray, T: np.ndarray, r: float, alpha: float, a: float, b: float
) -> np.ndarray:
    """E[Y(t) | alive at T, data]: eq. 10 without its P(alive) denominator.

    The bracket 1 - (1-z)^(r+x) 2F1(r+x, b+x; c; z) is evaluated in whichever of the literal and
    the Euler-transformed forms has a 2F1 that stays bounded as z -> 1 (see the module docstring).
    """
    c = a + b + x - 1.0
    z = t / (alpha + T + t)
    log_one_minus_z = -np.log1p(t / (alpha + T))
    euler = x + r + 1.0 - a > 0
    power = np.where(euler, a - 1.0, r + x)
    hypergeometric = hyp2f1(np.where(euler, a + b - 1.0 - r, r + x), np.where(euler, a - 1.0, b + x), c, z)
    power_minus_one = np.expm1(power * log_one_minus_z)
    # The bracket 1 - (1-z)^power F cancels for small t; writing it as -((1-z)^power - 1) F - (F - 1)
    # confines that to F - 1, but cancels itself when F is large. Take the form with less rounding.
    split = -(power_minus_one * hypergeometric + (hypergeometric - 1.0))
    direct = 1.0 - (power_minus_one + 1.0) * hypergeometric
    split_rounding = np.abs(power_minus_one * hypergeometric) + np.abs(hypergeometric)
    direct_rounding = 1.0 + np.abs((power_minus_one + 1.0) * hypergeometric)
    bracket = np.where(split_rounding <= direct_rounding, split, direct)
    return c / (a - 1.0) * bracket
