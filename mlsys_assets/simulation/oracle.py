"""The oracle: the simulator's ground truth turned into the best possible forecast of the next H days.

``oracle_expectations`` uses the true parameters with the realised death date inside the simulated period
and the exponential survival beyond it; no model can do better in expectation. Evaluation shows it as the
ceiling beside the candidates through ``mlsys_assets.demo_oracle`` (a resource, so evaluation never
imports the simulator), and bench/regimes.py scores it on the true future.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlsys_assets.simulation.seasonality import seasonal_multiplier


def _epoch_days(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Days since 1970-01-01 and a mask of missing values."""
    dates = pd.to_datetime(values).to_numpy().astype("datetime64[D]")
    missing = np.isnat(dates)
    return np.where(missing, 0, dates.astype(np.int64)), missing


def _process_constant(truth: pd.DataFrame, column: str, default: float) -> float:
    """A process parameter the ground truth repeats on every row; absent: the demo shop's value."""
    return float(truth[column].iloc[0]) if column in truth.columns and len(truth) else default


@dataclass(frozen=True)
class _Window:
    """The forecast window's epoch days, each with its seasonal intensity and price factor."""

    days: np.ndarray
    intensity: np.ndarray
    price: np.ndarray

    @classmethod
    def after(cls, truth: pd.DataFrame, window_first: int, horizon_days: int) -> _Window:
        days = np.arange(window_first, window_first + horizon_days)
        seasonality_scale = _process_constant(truth, "seasonality_scale", 1.0)
        intensity = seasonal_multiplier(days.astype("datetime64[D]"), seasonality_scale)
        price = np.ones(horizon_days)
        if len(truth) and pd.notna(truth["price_change_date"].iloc[0]):
            price_change, _ = _epoch_days(truth["price_change_date"].iloc[:1])
            price = np.where(days >= price_change[0], truth["price_change_factor"].iloc[0], 1.0)
        return cls(days, intensity, price)

    @property
    def first(self) -> int:
        return int(self.days[0])

    @property
    def last(self) -> int:
        return int(self.days[-1])

    def total(self, per_day: np.ndarray, first_day: np.ndarray, last_day: np.ndarray) -> np.ndarray:
        """per_day summed over the window's days in first_day .. last_day, one range per customer."""
        cumulative = np.concatenate([[0.0], np.cumsum(per_day)])
        horizon_days = len(self.days)
        low = np.clip(first_day - self.first, 0, horizon_days)
        high = np.clip(last_day - self.first + 1, 0, horizon_days)
        return np.where(high > low, cumulative[np.maximum(high, low)] - cumulative[low], 0.0)


@dataclass(frozen=True)
class _TrueCustomers:
    """The ground truth's parameters of the customers forecast, dates as epoch days."""

    buyer: np.ndarray
    first_purchase: np.ndarray
    death: np.ndarray
    alive_at_end: np.ndarray  # no death inside the simulated period
    anchor: np.ndarray  # alive for sure up to this day: the simulation's last day, or the first purchase if later
    rate: np.ndarray
    dropout: np.ndarray

    @classmethod
    def of(cls, truth: pd.DataFrame) -> _TrueCustomers:
        first_purchase, never_buys = _epoch_days(truth["first_purchase_date"])
        death, alive_at_end = _epoch_days(truth["death_date"])
        observed_until, _ = _epoch_days(truth["observed_until"])
        return cls(
            buyer=~never_buys,
            first_purchase=first_purchase,
            death=death,
            alive_at_end=alive_at_end,
            anchor=np.maximum(first_purchase, observed_until),
            rate=truth["purchase_rate"].to_numpy(),
            dropout=truth["dropout_rate"].to_numpy(),
        )


def oracle_expectations(ground_truth: pd.DataFrame, as_of: datetime.date, horizon_days: int) -> pd.DataFrame:
    """True expected purchases and spend in (as_of, as_of + horizon_days] for customers signed up by as_of.

    Uses the true parameters: the first purchase day, the realised death date
    inside the simulated period, the exponential lifetime after it, the
    seasonality (with its regime scale), any price drift and the share of $0
    sales. No model can do better in expectation.
    """
    if horizon_days < 1:
        raise ValueError(f"horizon_days must be at least 1, got {horizon_days}")
    signup, _ = _epoch_days(ground_truth["signup_date"])
    window_first = int(np.datetime64(as_of, "D").astype(np.int64)) + 1
    truth = ground_truth[signup < window_first]
    window = _Window.after(truth, window_first, horizon_days)
    customers = _TrueCustomers.of(truth)

    expected_purchases, expected_revenue, p_no_purchase = _while_surely_alive(customers, window)
    tail, tail_purchases, tail_revenue, tail_no_purchase = _after_the_anchor(customers, window)
    expected_purchases[tail] += tail_purchases
    expected_revenue[tail] += tail_revenue
    p_no_purchase[tail] *= tail_no_purchase

    paid_share = 1.0 - _process_constant(truth, "zero_amount_share", 0.0)  # $0 sales count but add no spend
    return pd.DataFrame(
        {
            "customer_id": truth["customer_id"].to_numpy(),
            "expected_spend": expected_revenue * truth["mean_spend"].to_numpy() * paid_share,
            "expected_purchases": expected_purchases,
            "p_no_purchase": p_no_purchase,
        }
    )


def _while_surely_alive(
    customers: _TrueCustomers, window: _Window
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected purchases, revenue (in mean spends) and P(no purchase) from the first purchase up to the
    known death, or up to the anchor when the customer was alive at the simulation's end."""
    last_sure_day = np.where(customers.alive_at_end, customers.anchor, customers.death - 1)
    first_purchase, buyer, rate = customers.first_purchase, customers.buyer, customers.rate
    sure_purchases = np.where(buyer, rate * window.total(window.intensity, first_purchase, last_sure_day), 0.0)
    sure_revenue = np.where(
        buyer, rate * window.total(window.intensity * window.price, first_purchase, last_sure_day), 0.0
    )
    first_in_window = buyer & (first_purchase >= window.first) & (first_purchase <= window.last)
    price_at_first = window.price[np.clip(first_purchase - window.first, 0, len(window.days) - 1)]

    expected_purchases = first_in_window + sure_purchases
    expected_revenue = np.where(first_in_window, price_at_first, 0.0) + sure_revenue
    p_no_purchase = np.where(first_in_window, 0.0, np.exp(-sure_purchases))
    return expected_purchases, expected_revenue, p_no_purchase


def _after_the_anchor(
    customers: _TrueCustomers, window: _Window
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The customers alive at the simulation's end whose anchor falls before the window's last day, and
    their expected purchases, revenue and P(no purchase) after the anchor.

    After the anchor the customer survives each further day with probability exp(-dropout): add the
    expected purchases and mix the no-purchase probability over the day of death.
    """
    tail = np.flatnonzero(customers.buyer & customers.alive_at_end & (customers.anchor < window.last))
    rate, dropout, anchor = customers.rate[tail], customers.dropout[tail], customers.anchor[tail]
    purchases = np.zeros(len(tail))
    revenue = np.zeros(len(tail))
    exposure = np.zeros(len(tail))  # seasonal intensity summed over the tail's days in the window so far
    # Probability of dying before the tail reaches the window.
    no_purchase = 1.0 - np.exp(-dropout * (np.maximum(anchor + 1, window.first) - anchor))
    dies_next_day = 1.0 - np.exp(-dropout)
    for offset, day in enumerate(window.days):
        in_tail = day > anchor
        survival = np.where(in_tail, np.exp(-dropout * (day - anchor)), 0.0)
        exposure += np.where(in_tail, window.intensity[offset], 0.0)
        purchases += rate * window.intensity[offset] * survival
        revenue += rate * window.intensity[offset] * window.price[offset] * survival
        # Probability that this is the last day alive (or, on the window's last day, that it is alive).
        last_alive = survival * dies_next_day if day < window.last else survival
        no_purchase += last_alive * np.exp(-rate * exposure)
    return tail, purchases, revenue, no_purchase
