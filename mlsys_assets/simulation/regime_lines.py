"""What a regime adds to the demo shop's customers and sales: whales, $0 sales, refunds, cancelled orders.

* Whales (``whale_share``): that share of customers has its mean spend multiplied by
  ``whale_spend_factor``; the ground truth's ``mean_spend`` includes the factor, ``is_whale`` flags them.
* $0 sales (``zero_amount_share``): that share of the sales gets amount 0.00. They are purchases with no
  spend; the ground truth carries the share so the oracle's expected spend accounts for it.
* Refund lines (``refund_share`` per sale): a refund of an earlier sale of the same customer, of minus its
  amount, 1 to ``MAX_REFUND_DELAY_DAYS`` days later (within the period), with its own transaction id.
  The platform quarantines negative amounts, so refunds never count as spend, and the sale stays a sale.
* Cancelled orders (``cancelled_share`` of all lines): an order of a buying customer on the day of one of
  their sales, with its own amount and id and ``status`` ``cancelled``; every other line is
  ``completed``. The status column exists only when ``cancelled_share`` > 0.

The draws come from the regime stream, so a regime never changes what its options do not touch.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mlsys_assets.simulation.config import SimulationConfig
from mlsys_assets.simulation.process import LINE_KINDS, Customers, Transactions, drift_day, transactions_on
from mlsys_assets.simulation.seasonality import HOURLY_PROFILE

MAX_REFUND_DELAY_DAYS = 30
SALE, REFUND, CANCELLED = (LINE_KINDS.index(kind) for kind in ("sale", "refund", "cancelled"))


def with_whales(rng: np.random.Generator, config: SimulationConfig, customers: Customers) -> Customers:
    """whale_share of the customers (rounded) get whale_spend_factor times their mean spend."""
    if config.whale_share <= 0:
        return customers
    n = len(customers)
    whale = np.zeros(n, dtype=bool)
    whale[rng.choice(n, size=int(round(config.whale_share * n)), replace=False)] = True
    mean_spend = customers.mean_spend * np.where(whale, config.whale_spend_factor, 1.0)
    return replace(customers, mean_spend=mean_spend, whale=whale)


def with_zero_amounts(rng: np.random.Generator, transactions: Transactions, share: float) -> Transactions:
    """That share of the sales (drawn per sale) at amount 0."""
    if share <= 0:
        return transactions
    zero = rng.random(len(transactions)) < share
    return replace(transactions, cents=np.where(zero, 0, transactions.cents))


def with_regime_lines(
    rng: np.random.Generator, config: SimulationConfig, customers: Customers, sales: Transactions
) -> Transactions:
    """The lines of the delivered period: the sales ($0 ones included), refund lines and cancelled orders."""
    sales = with_zero_amounts(rng, sales, config.zero_amount_share)
    if config.refund_share <= 0 and config.cancelled_share <= 0:
        return sales
    days = (config.end - config.start).days + 1
    refunds = _refund_lines(rng, config.refund_share, sales, days)
    cancelled_count = int(round(config.cancelled_share / (1 - config.cancelled_share) * (len(sales) + len(refunds))))
    cancelled = _cancelled_orders(rng, cancelled_count, customers, sales, drift_day(config, "price"))
    parts = [replace(sales, kind=np.full(len(sales), SALE)), refunds, cancelled]

    def joined(name: str) -> np.ndarray:
        return np.concatenate([getattr(part, name) for part in parts])

    merged = {name: joined(name) for name in ("customer", "day", "second_of_day", "cents", "quantity", "kind")}
    order = np.argsort(merged["day"] * 86_400 + merged["second_of_day"], kind="stable")  # sales first on ties
    return Transactions(**{name: values[order] for name, values in merged.items()})


def _time_of_day(rng: np.random.Generator, count: int) -> np.ndarray:
    hour = rng.choice(24, size=count, p=np.asarray(HOURLY_PROFILE) / np.sum(HOURLY_PROFILE))
    return hour * 3600 + rng.integers(0, 3600, count)


def _refund_lines(rng: np.random.Generator, share: float, sales: Transactions, days: int) -> Transactions:
    """Refunds of share * len(sales) distinct paid sales, 1 .. MAX_REFUND_DELAY_DAYS days later, within the period."""
    eligible = np.flatnonzero((sales.cents > 0) & (sales.day < days - 1))
    count = min(int(round(share * len(sales))), len(eligible))
    original = np.sort(rng.choice(eligible, size=count, replace=False)) if count else np.zeros(0, dtype=np.int64)
    room = np.minimum(MAX_REFUND_DELAY_DAYS, days - 1 - sales.day[original])
    delay = 1 + np.floor(rng.random(count) * room).astype(np.int64)
    return Transactions(
        customer=sales.customer[original],
        day=sales.day[original] + delay,
        second_of_day=_time_of_day(rng, count),
        cents=-sales.cents[original],
        quantity=sales.quantity[original],
        kind=np.full(count, REFUND),
    )


def _cancelled_orders(
    rng: np.random.Generator,
    count: int,
    customers: Customers,
    sales: Transactions,
    price_drift_day: int | None,
) -> Transactions:
    """count orders, each by the customer and on the day of a random sale, with an amount of their own."""
    template = rng.integers(0, len(sales), count) if len(sales) else np.zeros(0, dtype=np.int64)
    orders = transactions_on(rng, customers, sales.customer[template], sales.day[template], price_drift_day)
    return replace(orders, kind=np.full(len(template), CANCELLED))
