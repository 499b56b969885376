"""The shop's generative process: who signs up when, who buys, how often, how much, and the drift.

Per customer (all draws vectorized over customers/transactions):

* Acquisition. Signup days are drawn over the whole simulated period from an
  intensity that grows linearly (``ACQUISITION_GROWTH_PER_YEAR``), has a launch
  campaign bump decaying over the first weeks, and follows the same weekly and
  yearly seasonality as purchases (``seasonality.py``). Customer ids are given in
  signup order. The ``single_cohort`` regime signs everybody up in the first
  ``cohort_days`` days instead.
* Segments. Each customer gets a country (6, weighted) and an acquisition
  channel (5). Both act as multipliers on purchase rate, expected lifetime,
  mean spend and the chance of never buying (``SegmentEffect``).
* Never buyers. About 15% of signups never buy (channel/country dependent).
* First purchase. A buying customer buys first on the signup day (60%) or a few
  days later (1 + floor of an exponential delay with mean 4 days).
* Repeat purchases follow Pareto/NBD: a gamma-distributed purchase rate
  (``purchase_rate``, expected purchases per day before seasonality) and an
  unobserved exponential lifetime whose rate (``dropout_rate``) is itself
  gamma-distributed. Lifetime runs in whole days from the first purchase: the
  customer is alive on days ``first_purchase_date .. death_date - 1`` and makes
  Poisson purchases with intensity ``purchase_rate * seasonal_multiplier(day)``
  on each of them (on top of the first purchase). Purchase days are drawn by
  inverting the cumulative seasonal intensity with ``numpy.searchsorted``.
  Never buyers get ``death_date = signup_date`` (never alive as a buyer).
* Spend follows Gamma-Gamma: each customer's mean spend is ``p / nu`` with
  ``nu ~ Gamma(q, rate=gamma)``, scaled by the segment effects; each
  transaction amount is ``Gamma(shape=p, mean=mean_spend)``, rounded to cents.
* Quantity is 1 + Poisson whose mean grows with the (pre-drift) amount.
* Drift from ``drift_from`` (inclusive). "channel": a new channel ``tiktok_ads``
  takes a large share of new signups and brings clearly weaker customers
  (lower rate, shorter life, lower spend, more never buyers). "price": every
  amount on or after that day is multiplied by ``PRICE_DRIFT_FACTOR``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from mlsys_assets.simulation.config import SimulationConfig
from mlsys_assets.simulation.seasonality import DAYS_PER_YEAR, HOURLY_PROFILE, Calendar

# --- acquisition and first purchase -------------------------------------------
ACQUISITION_GROWTH_PER_YEAR = 1.0  # daily signups double over a year
LAUNCH_BUMP = 2.0  # the launch campaign triples signups on the first day ...
LAUNCH_DECAY_DAYS = 10.0  # ... and fades over the first weeks
NEVER_BUY_SHARE = 0.15
FIRST_PURCHASE_SAME_DAY_SHARE = 0.6
FIRST_PURCHASE_MEAN_DELAY_DAYS = 4.0

# --- Pareto/NBD and Gamma-Gamma parameters -------------------------------------
# Tuned so that 1M customers over two years make about 5M transactions, with a
# very skewed count per customer (shape < 1).
PURCHASE_RATE_SHAPE = 0.5
PURCHASE_RATE_SCALE = 0.053  # mean 0.0265 purchases/day before segment effects
DROPOUT_RATE_SHAPE = 2.0
DROPOUT_RATE_SCALE = 1 / 600  # median lifetime about 250 days
SPEND_SHAPE = 6.0  # p: spread of a customer's amounts around their mean
SPEND_MEAN_SHAPE = 4.0  # q
SPEND_MEAN_RATE = 25.0  # gamma: population mean spend p * gamma / (q - 1) = 50
QUANTITY_EXTRA_BASE = 0.1
QUANTITY_EXTRA_PER_AMOUNT = 1 / 100  # one more item expected per 100 of amount
QUANTITY_EXTRA_MAX = 4.0


@dataclass(frozen=True)
class SegmentEffect:
    """Share of signups and multipliers a country or channel applies."""

    share: float
    rate: float
    lifetime: float
    spend: float
    never_buy: float = 1.0


COUNTRIES = {
    "US": SegmentEffect(share=0.34, rate=1.00, lifetime=1.00, spend=1.10),
    "GB": SegmentEffect(share=0.18, rate=1.05, lifetime=1.10, spend=1.00),
    "DE": SegmentEffect(share=0.16, rate=0.95, lifetime=1.20, spend=1.05, never_buy=0.9),
    "FR": SegmentEffect(share=0.13, rate=0.90, lifetime=1.00, spend=0.95),
    "ES": SegmentEffect(share=0.10, rate=0.85, lifetime=0.90, spend=0.80, never_buy=1.2),
    "NL": SegmentEffect(share=0.09, rate=1.10, lifetime=1.05, spend=1.00),
}
CHANNELS = {
    "organic": SegmentEffect(share=0.35, rate=1.00, lifetime=1.15, spend=1.00, never_buy=0.8),
    "paid_search": SegmentEffect(share=0.25, rate=0.90, lifetime=0.90, spend=1.05),
    "social": SegmentEffect(share=0.18, rate=0.80, lifetime=0.75, spend=0.85, never_buy=1.3),
    "referral": SegmentEffect(share=0.12, rate=1.25, lifetime=1.30, spend=1.10, never_buy=0.6),
    "email": SegmentEffect(share=0.10, rate=1.15, lifetime=1.00, spend=0.95),
}
DRIFT_CHANNEL = "tiktok_ads"
# share = its share of signups from drift_from on; the other channels keep their
# relative shares of the rest.
DRIFT_CHANNEL_EFFECT = SegmentEffect(share=0.45, rate=0.5, lifetime=0.4, spend=0.6, never_buy=2.0)
PRICE_DRIFT_FACTOR = 1.25


@dataclass(frozen=True)
class Customers:
    """True parameters; days are indices into the calendar and may pass its end."""

    signup_day: np.ndarray
    country: np.ndarray  # index into COUNTRIES
    channel: np.ndarray  # index into channel names
    channel_names: tuple[str, ...]
    never_buys: np.ndarray
    first_purchase_day: np.ndarray
    purchase_rate: np.ndarray
    dropout_rate: np.ndarray
    death_day: np.ndarray
    mean_spend: np.ndarray  # whales' included
    whale: np.ndarray | None = None  # set when the config has whale_share > 0

    def __len__(self) -> int:
        return len(self.signup_day)


LINE_KINDS = ("sale", "refund", "cancelled")


@dataclass(frozen=True)
class Transactions:
    """One entry per transaction line, sorted by event time."""

    customer: np.ndarray
    day: np.ndarray
    second_of_day: np.ndarray
    cents: np.ndarray  # negative for a refund line
    quantity: np.ndarray
    kind: np.ndarray | None = None  # index into LINE_KINDS; None: every line is a sale

    def __len__(self) -> int:
        return len(self.day)


@dataclass(frozen=True)
class _Segments:
    """Each customer's country and channel, and the channels' effects (the drift channel's included)."""

    country: np.ndarray  # index into COUNTRIES
    channel: np.ndarray  # index into channel_names
    channel_names: tuple[str, ...]
    channel_effects: tuple[SegmentEffect, ...]

    def effect(self, attribute: str) -> np.ndarray:
        """Per customer, the product of its country's and its channel's multiplier of this attribute."""
        by_country = np.array([getattr(c, attribute) for c in COUNTRIES.values()])[self.country]
        by_channel = np.array([getattr(c, attribute) for c in self.channel_effects])[self.channel]
        return by_country * by_channel


def drift_day(config: SimulationConfig, kind: str) -> int | None:
    """Calendar index from which drift of this kind applies, or None."""
    if config.drift_from is None or config.drift_kind != kind:
        return None
    return (config.drift_from - config.start).days


def _sample_from_intensity(
    rng: np.random.Generator, cumulative: np.ndarray, low: np.ndarray, high: np.ndarray
) -> np.ndarray:
    """Day indices drawn with density proportional to the intensity between cumulative values low and high."""
    position = low + rng.random(len(low)) * (high - low)
    return np.searchsorted(cumulative, position, side="right") - 1


def _acquisition_intensity(config: SimulationConfig, calendar: Calendar) -> np.ndarray:
    """Relative signup intensity per calendar day."""
    if config.acquisition == "single_cohort":  # one cohort, watched for the rest of the period
        return np.where(np.arange(calendar.days) < config.cohort_days, calendar.intensity, 0.0)
    elapsed_years = np.arange(calendar.days) / DAYS_PER_YEAR
    launch = 1.0 + LAUNCH_BUMP * np.exp(-np.arange(calendar.days) / LAUNCH_DECAY_DAYS)
    return (1.0 + ACQUISITION_GROWTH_PER_YEAR * elapsed_years) * launch * calendar.intensity


def draw_customers(rng: np.random.Generator, config: SimulationConfig, calendar: Calendar) -> Customers:
    """Every customer's signup day, segments and true purchase, lifetime and spend parameters."""
    n = config.customers
    acquisition = _acquisition_intensity(config, calendar)
    cumulative_acquisition = np.concatenate([[0.0], np.cumsum(acquisition)])
    signup_day = np.sort(
        _sample_from_intensity(rng, cumulative_acquisition, np.zeros(n), np.full(n, cumulative_acquisition[-1]))
    )
    segments = _draw_segments(rng, config, signup_day)
    return _draw_buying_behaviour(rng, signup_day, segments, config.purchase_rate_scale)


def _draw_segments(rng: np.random.Generator, config: SimulationConfig, signup_day: np.ndarray) -> _Segments:
    """Country and channel; from the channel drift's first day the drift channel takes its share of signups."""
    n = len(signup_day)
    country_effects = list(COUNTRIES.values())
    country = rng.choice(len(country_effects), size=n, p=[c.share for c in country_effects])

    channel_effects = list(CHANNELS.values())
    channel_names = tuple(CHANNELS)
    channel = rng.choice(len(channel_effects), size=n, p=[c.share for c in channel_effects])
    # Drawn even without drift so that a drift run keeps the customers of the baseline's earlier signups.
    drift_channel_draw = rng.random(n)
    channel_drift_day = drift_day(config, "channel")
    if channel_drift_day is not None:
        channel_effects.append(DRIFT_CHANNEL_EFFECT)
        channel_names += (DRIFT_CHANNEL,)
        takes_drift_channel = (signup_day >= channel_drift_day) & (drift_channel_draw < DRIFT_CHANNEL_EFFECT.share)
        channel = np.where(takes_drift_channel, len(channel_effects) - 1, channel)
    return _Segments(country, channel, channel_names, tuple(channel_effects))


def _draw_buying_behaviour(
    rng: np.random.Generator, signup_day: np.ndarray, segments: _Segments, purchase_rate_scale: float
) -> Customers:
    """Never buying, the first purchase day, the Pareto/NBD rates, the death day and the mean spend."""
    n = len(signup_day)
    effect = segments.effect
    never_buys = rng.random(n) < NEVER_BUY_SHARE * effect("never_buy")
    delay = np.where(
        rng.random(n) < FIRST_PURCHASE_SAME_DAY_SHARE,
        0,
        1 + np.floor(rng.exponential(FIRST_PURCHASE_MEAN_DELAY_DAYS, n)).astype(np.int64),
    )
    first_purchase_day = signup_day + delay
    purchase_rate = rng.gamma(PURCHASE_RATE_SHAPE, PURCHASE_RATE_SCALE, n) * effect("rate") * purchase_rate_scale
    dropout_rate = rng.gamma(DROPOUT_RATE_SHAPE, DROPOUT_RATE_SCALE, n) / effect("lifetime")
    lifetime_days = np.floor(rng.exponential(1.0 / dropout_rate)).astype(np.int64)
    death_day = np.where(never_buys, signup_day, first_purchase_day + 1 + lifetime_days)
    spend_nu = rng.gamma(SPEND_MEAN_SHAPE, 1.0 / SPEND_MEAN_RATE, n)
    mean_spend = SPEND_SHAPE / spend_nu * effect("spend")
    return Customers(
        signup_day=signup_day,
        country=segments.country,
        channel=segments.channel,
        channel_names=segments.channel_names,
        never_buys=never_buys,
        first_purchase_day=first_purchase_day,
        purchase_rate=purchase_rate,
        dropout_rate=dropout_rate,
        death_day=death_day,
        mean_spend=mean_spend,
    )


def _price_factor(days: np.ndarray, price_drift_day: int | None) -> np.ndarray:
    """The price drift's factor on each of these days (1 before it, or without one)."""
    if price_drift_day is None:
        return np.ones(len(days))
    return np.where(days >= price_drift_day, PRICE_DRIFT_FACTOR, 1.0)


def draw_transactions(
    rng: np.random.Generator,
    customers: Customers,
    calendar: Calendar,
    price_drift_day: int | None,
    first_day: int = 0,
) -> Transactions:
    """The sales on calendar days first_day .. calendar.days - 1, sorted by event time.

    Purchases on disjoint day ranges are independent, so the days after a period can be drawn
    later from another stream without changing the period itself.
    """
    buyer = ~customers.never_buys
    first_purchase = customers.first_purchase_day
    first_buyers = np.flatnonzero(buyer & (first_purchase >= first_day) & (first_purchase < calendar.days))
    alive_from = np.maximum(first_purchase, first_day)
    alive_until = np.minimum(customers.death_day, calendar.days)
    repeat_buyers = np.flatnonzero(buyer & (alive_from < alive_until))

    low = calendar.cumulative[alive_from[repeat_buyers]]
    high = calendar.cumulative[alive_until[repeat_buyers]]
    repeat_counts = rng.poisson(customers.purchase_rate[repeat_buyers] * (high - low))
    repeaters = np.repeat(np.arange(len(repeat_buyers)), repeat_counts)
    repeat_days = _sample_from_intensity(rng, calendar.cumulative, low[repeaters], high[repeaters])

    customer = np.concatenate([first_buyers, repeat_buyers[repeaters]])
    day = np.concatenate([first_purchase[first_buyers], repeat_days])
    return transactions_on(rng, customers, customer, day, price_drift_day)


def transactions_on(
    rng: np.random.Generator,
    customers: Customers,
    customer: np.ndarray,
    day: np.ndarray,
    price_drift_day: int | None,
) -> Transactions:
    """Orders of these customers on these days: time of day, amount and quantity drawn, sorted by event time."""
    hourly = np.asarray(HOURLY_PROFILE) / np.sum(HOURLY_PROFILE)
    hour = rng.choice(24, size=len(day), p=hourly)
    second_of_day = hour * 3600 + rng.integers(0, 3600, len(day))

    mean_spend = customers.mean_spend[customer]
    amount = rng.gamma(SPEND_SHAPE, mean_spend / SPEND_SHAPE)
    extra_items = np.minimum(QUANTITY_EXTRA_BASE + QUANTITY_EXTRA_PER_AMOUNT * amount, QUANTITY_EXTRA_MAX)
    quantity = 1 + rng.poisson(extra_items)
    cents = np.maximum(np.round(amount * _price_factor(day, price_drift_day) * 100), 1).astype(np.int64)

    order = np.argsort(day * 86_400 + second_of_day, kind="stable")
    return Transactions(
        customer=customer[order],
        day=day[order],
        second_of_day=second_of_day[order],
        cents=cents[order],
        quantity=quantity[order],
    )


def process_definition() -> dict:
    """The process parameters in meta.json."""
    return {
        "acquisition_growth_per_year": ACQUISITION_GROWTH_PER_YEAR,
        "launch_bump": LAUNCH_BUMP,
        "launch_decay_days": LAUNCH_DECAY_DAYS,
        "never_buy_share": NEVER_BUY_SHARE,
        "first_purchase_same_day_share": FIRST_PURCHASE_SAME_DAY_SHARE,
        "first_purchase_mean_delay_days": FIRST_PURCHASE_MEAN_DELAY_DAYS,
        "purchase_rate_gamma": {"shape": PURCHASE_RATE_SHAPE, "scale": PURCHASE_RATE_SCALE},
        "dropout_rate_gamma": {"shape": DROPOUT_RATE_SHAPE, "scale": DROPOUT_RATE_SCALE},
        "spend_gamma_gamma": {"p": SPEND_SHAPE, "q": SPEND_MEAN_SHAPE, "gamma": SPEND_MEAN_RATE},
        "quantity": {
            "extra_base": QUANTITY_EXTRA_BASE,
            "extra_per_amount": QUANTITY_EXTRA_PER_AMOUNT,
            "extra_max": QUANTITY_EXTRA_MAX,
        },
        "countries": {name: asdict(effect) for name, effect in COUNTRIES.items()},
        "channels": {name: asdict(effect) for name, effect in CHANNELS.items()},
        "drift_channel": {"name": DRIFT_CHANNEL, **asdict(DRIFT_CHANNEL_EFFECT)},
        "price_drift_factor": PRICE_DRIFT_FACTOR,
    }
