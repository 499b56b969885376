"""Seeded, vectorized simulator of a web shop's customers and their transactions.

Used for the demo, the tests and the benchmarks. ``simulate`` writes the landing
files the platform ingests plus the ground truth it can be scored against;
``oracle_expectations`` turns that ground truth into the best possible forecast.

The process, per customer (all draws vectorized over customers/transactions):

* Acquisition. Signup days are drawn over the whole simulated period from an
  intensity that grows linearly (``ACQUISITION_GROWTH_PER_YEAR``), has a launch
  campaign bump decaying over the first weeks, and follows the same weekly and
  yearly seasonality as purchases. Customer ids are given in signup order.
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
* Seasonality (``seasonal_multiplier``): a weekly profile (weekends busier) times
  a yearly profile (a smooth annual cosine plus a November/December peak), each
  normalised to mean 1 so ``purchase_rate`` keeps its meaning on average.
  Time of day comes from a fixed hourly profile (quiet nights, busy evenings).
* Spend follows Gamma-Gamma: each customer's mean spend is ``p / nu`` with
  ``nu ~ Gamma(q, rate=gamma)``, scaled by the segment effects; each
  transaction amount is ``Gamma(shape=p, mean=mean_spend)``, rounded to cents.
* Quantity is 1 + Poisson whose mean grows with the (pre-drift) amount.
* Drift from ``drift_from`` (inclusive). "channel": a new channel ``tiktok_ads``
  takes a large share of new signups and brings clearly weaker customers
  (lower rate, shorter life, lower spend, more never buyers). "price": every
  amount on or after that day is multiplied by ``PRICE_DRIFT_FACTOR``.
* Dirty rows (``dirty_share`` > 0). That share of transaction lines (CSV only)
  is replaced, in equal proportions, by the defects in
  ``DIRTY_TRANSACTION_KINDS``; the clean transaction of a replaced line is lost,
  as when a source system corrupts a record. A duplicate copies an earlier clean
  line of the same file, so each file's first line stays clean. Customers get
  about the same share (at least one of each kind) of the defects in
  ``DIRTY_CUSTOMER_KINDS``: unparseable signup dates are written in place, rows
  with an empty id or a missing field are inserted after a real row, so every
  customer keeps its own row.

Regimes (``simulate_regimes.py``, ``REGIME_FIELDS``): options that make the log
look like other shops' (a single acquisition cohort, mostly one-time buyers,
whales, stronger seasonality, $0 sales, refund lines, cancelled orders with a
status column, no customers export, one whitespace export file instead of daily
files) and a realised future after ``end`` that is never delivered. At their
defaults they change nothing: the demo shop's files stay byte for byte the same.

Randomness comes from five independent streams spawned from the seed
(customers, purchases, dirt, regime lines, future), so adding dirt, switching the
file format or simulating a future never changes the underlying clean data. The
ground truth stores every true parameter (a late signup's ``first_purchase_date``
may fall after ``end``; regime columns only when the regime is on);
``oracle_expectations`` uses it with the realised death date inside the
simulated period and the exponential survival beyond it.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlsys_assets.storage import atomic_path, write_bytes_atomically

GENERATOR_VERSION = "1.0.0"

TRANSACTION_COLUMNS = ("transaction_id", "customer_id", "event_time", "amount", "quantity")
CUSTOMER_COLUMNS = ("customer_id", "signup_date", "country", "acquisition_channel", "email", "name")
DRIFT_KINDS = ("channel", "price")
FILE_FORMATS = ("csv", "parquet")
ACQUISITION_KINDS = ("growing", "single_cohort")
EXPORT_LAYOUTS = ("daily", "whitespace_export")
# The regime options (simulate_regimes.py); at their defaults they change nothing, and meta.json lists
# only those that differ from the default, so the demo shop's files stay as they were.
REGIME_FIELDS = (
    "acquisition", "cohort_days", "purchase_rate_scale", "whale_share", "whale_spend_factor",
    "seasonality_scale", "zero_amount_share", "refund_share", "cancelled_share", "customers_export",
    "export_layout", "future_days", "regime",
)

# --- seasonality -------------------------------------------------------------
WEEKLY_PROFILE = (0.92, 0.90, 0.92, 0.95, 1.03, 1.18, 1.10)  # Monday .. Sunday
DAYS_PER_YEAR = 365.25
YEARLY_AMPLITUDE = 0.12
YEARLY_PEAK_DAY_OF_YEAR = 300  # late October; the trough falls in late April
HOLIDAY_AMPLITUDE = 0.6
HOLIDAY_PEAK_DAY_OF_YEAR = 340  # early December: Black Friday to Christmas
HOLIDAY_WIDTH_DAYS = 15.0
HOURLY_PROFILE = (
    0.20, 0.10, 0.05, 0.05, 0.05, 0.10, 0.30, 0.60, 0.90, 1.00, 1.10, 1.20,
    1.40, 1.30, 1.10, 1.00, 1.00, 1.10, 1.30, 1.60, 1.80, 1.60, 1.00, 0.50,
)

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

DIRTY_TRANSACTION_KINDS = (
    "extra_field",
    "non_numeric_amount",
    "unparseable_event_time",
    "negative_amount",
    "duplicate_transaction_id",
    "huge_amount",
    "future_event_time",
    "empty_customer_id",
    "unknown_customer_id",
)
DIRTY_CUSTOMER_KINDS = ("unparseable_signup_date", "empty_customer_id", "missing_field")
HUGE_AMOUNT_TEXT = "999999999.00"
MAX_FUTURE_DAYS = 30

FIRST_NAMES = (
    "Anna", "Ben", "Chloé", "David", "Emma", "Felix", "Grace", "Hugo", "Isabel", "Jonas",
    "Karin", "Liam", "Maria", "Noah", "Olivia", "Pablo", "Quinn", "Rosa", "Sven", "Tara",
    "Umar", "Vera", "William", "Zoë",
)
LAST_NAMES = (
    "Andersen", "Brown", "Castillo", "Dubois", "Evans", "Fischer", "García", "Hansen",
    "Jansen", "Klein", "López", "Martin", "Müller", "Nielsen", "O'Brien", "Petit",
    "Rossi", "Schmidt", "Smith", "Taylor", "Visser", "Wagner", "de Vries", "Lefèvre",
)


def _yesterday() -> datetime.date:
    return datetime.date.today() - datetime.timedelta(days=1)


def _default_start() -> datetime.date:
    return _yesterday() - datetime.timedelta(days=364)


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate; the defaults are 3,000 customers over the year up to yesterday."""

    customers: int = 3000
    start: datetime.date = field(default_factory=_default_start)  # first day, inclusive
    end: datetime.date = field(default_factory=_yesterday)  # last day, inclusive
    seed: int = 7
    drift_from: datetime.date | None = None  # first day of the drift, if any
    drift_kind: str = "channel"  # one of DRIFT_KINDS
    dirty_share: float = 0.0  # share of rows given defects, e.g. 0.002
    file_format: str = "csv"  # of the transaction files, one of FILE_FORMATS
    # Regimes: what real transaction logs look like (simulate_regimes.REGIMES names combinations).
    acquisition: str = "growing"  # one of ACQUISITION_KINDS; single_cohort: all signups in the first cohort_days
    cohort_days: int = 84
    purchase_rate_scale: float = 1.0  # multiplies every customer's repeat purchase rate
    whale_share: float = 0.0  # share of customers whose mean spend is multiplied by whale_spend_factor
    whale_spend_factor: float = 20.0
    seasonality_scale: float = 1.0  # multiplies the yearly and the holiday amplitude
    zero_amount_share: float = 0.0  # share of sales with amount 0.00 (they still count as purchases)
    refund_share: float = 0.0  # extra refund lines (negative amounts) per sale
    cancelled_share: float = 0.0  # share of all lines that are cancelled orders; > 0 adds a status column
    customers_export: bool = True  # False: no landing/customers file
    export_layout: str = "daily"  # one of EXPORT_LAYOUTS
    future_days: int = 0  # days simulated after end into simulation/future.parquet, never delivered
    regime: str | None = None  # name of the regime, recorded in meta.json

    def __post_init__(self) -> None:
        if self.customers < 1:
            raise ValueError(f"customers must be positive, got {self.customers}")
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        if self.drift_kind not in DRIFT_KINDS:
            raise ValueError(f"drift_kind must be one of {DRIFT_KINDS}, got {self.drift_kind!r}")
        if self.file_format not in FILE_FORMATS:
            raise ValueError(f"file_format must be one of {FILE_FORMATS}, got {self.file_format!r}")
        if not 0.0 <= self.dirty_share < 1.0:
            raise ValueError(f"dirty_share must be in [0, 1), got {self.dirty_share}")
        self._check_regime_fields()

    def _check_regime_fields(self) -> None:
        if self.acquisition not in ACQUISITION_KINDS:
            raise ValueError(f"acquisition must be one of {ACQUISITION_KINDS}, got {self.acquisition!r}")
        if self.export_layout not in EXPORT_LAYOUTS:
            raise ValueError(f"export_layout must be one of {EXPORT_LAYOUTS}, got {self.export_layout!r}")
        if self.cohort_days < 1 or self.future_days < 0:
            raise ValueError(f"need cohort_days >= 1 and future_days >= 0, got {self.cohort_days}, {self.future_days}")
        if self.purchase_rate_scale < 0 or self.whale_spend_factor <= 0:
            raise ValueError("purchase_rate_scale must be >= 0 and whale_spend_factor > 0")
        limit = 1.0 / YEARLY_AMPLITUDE  # keeps every day's intensity positive
        if not 0.0 <= self.seasonality_scale < limit:
            raise ValueError(f"seasonality_scale must be in [0, {limit:.2f}), got {self.seasonality_scale}")
        for name in ("whale_share", "zero_amount_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("refund_share", "cancelled_share"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")


@dataclass(frozen=True)
class SimulationSummary:
    """What simulate wrote; transactions counts the lines written, dirty ones included."""

    customers: int
    transactions: int
    days: int
    transaction_files: int
    dirty_rows: int
    landing_dir: Path
    ground_truth_path: Path
    export_path: Path | None = None  # export_layout "whitespace_export": the one export file ...
    mapping_path: Path | None = None  # ... and the mapping for `mlsys import`
    future_path: Path | None = None  # future_days > 0: the realised sales after end
    future_transactions: int = 0


# --- seasonality -------------------------------------------------------------


def _raw_yearly_multiplier(day_of_year: np.ndarray, scale: float = 1.0) -> np.ndarray:
    cycle = scale * YEARLY_AMPLITUDE * np.cos(2 * np.pi * (day_of_year - YEARLY_PEAK_DAY_OF_YEAR) / DAYS_PER_YEAR)
    distance = np.abs(day_of_year - HOLIDAY_PEAK_DAY_OF_YEAR)
    distance = np.minimum(distance, DAYS_PER_YEAR - distance)  # the peak wraps around New Year
    holiday = scale * HOLIDAY_AMPLITUDE * np.exp(-0.5 * (distance / HOLIDAY_WIDTH_DAYS) ** 2)
    return 1.0 + cycle + holiday


_WEEKLY_MULTIPLIER = np.asarray(WEEKLY_PROFILE) / np.mean(WEEKLY_PROFILE)
def _yearly_normaliser(scale: float = 1.0) -> float:
    return float(np.mean(_raw_yearly_multiplier(np.arange(1, 366, dtype=float), scale)))


_YEARLY_NORMALISER = _yearly_normaliser()


def seasonal_multiplier(dates: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Multiplier on the daily purchase intensity for each calendar day; scale multiplies both yearly amplitudes."""
    dates = np.asarray(dates, dtype="datetime64[D]")
    weekday = (dates.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    day_of_year = (dates - dates.astype("datetime64[Y]")).astype(np.int64) + 1
    normaliser = _YEARLY_NORMALISER if scale == 1.0 else _yearly_normaliser(scale)
    yearly = _raw_yearly_multiplier(day_of_year.astype(float), scale) / normaliser
    return _WEEKLY_MULTIPLIER[weekday] * yearly


def _seasonality_definition(scale: float = 1.0) -> dict:
    """The seasonality in meta.json; with a scale the amplitudes are the scaled ones."""
    definition = {
        "multiplier": "weekly[weekday] * yearly(day_of_year) / yearly_normaliser",
        "weekly_monday_first": [round(float(x), 6) for x in _WEEKLY_MULTIPLIER],
        "yearly": (
            "1 + amplitude * cos(2 pi (doy - peak_day) / days_per_year)"
            " + holiday_amplitude * exp(-0.5 * (circular_distance(doy, holiday_peak_day) / holiday_width_days)^2)"
        ),
        "amplitude": scale * YEARLY_AMPLITUDE,
        "peak_day": YEARLY_PEAK_DAY_OF_YEAR,
        "days_per_year": DAYS_PER_YEAR,
        "holiday_amplitude": scale * HOLIDAY_AMPLITUDE,
        "holiday_peak_day": HOLIDAY_PEAK_DAY_OF_YEAR,
        "holiday_width_days": HOLIDAY_WIDTH_DAYS,
        "yearly_normaliser": round(_yearly_normaliser(scale), 9),
        "hourly_profile": list(HOURLY_PROFILE),
    }
    if scale != 1.0:
        definition["scale"] = scale
    return definition


# --- the process ---------------------------------------------------------------


@dataclass(frozen=True)
class _Calendar:
    dates: np.ndarray  # datetime64[D], one per simulated day
    intensity: np.ndarray  # seasonal multiplier per day
    cumulative: np.ndarray  # cumulative intensity with a leading 0: day d spans [cumulative[d], cumulative[d+1])

    @classmethod
    def between(cls, start: datetime.date, end: datetime.date, seasonality_scale: float = 1.0) -> _Calendar:
        dates = np.arange(np.datetime64(start, "D"), np.datetime64(end, "D") + 1)
        intensity = seasonal_multiplier(dates, seasonality_scale)
        return cls(dates, intensity, np.concatenate([[0.0], np.cumsum(intensity)]))

    @property
    def days(self) -> int:
        return len(self.dates)


@dataclass(frozen=True)
class _Customers:
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
class _Transactions:
    """One entry per transaction line, sorted by event time."""

    customer: np.ndarray
    day: np.ndarray
    second_of_day: np.ndarray
    cents: np.ndarray  # negative for a refund line
    quantity: np.ndarray
    kind: np.ndarray | None = None  # index into LINE_KINDS; None: every line is a sale

    def __len__(self) -> int:
        return len(self.day)


def _drift_day(config: SimulationConfig, kind: str) -> int | None:
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


def _acquisition_intensity(config: SimulationConfig, calendar: _Calendar) -> np.ndarray:
    """Relative signup intensity per calendar day."""
    if config.acquisition == "single_cohort":  # one cohort, watched for the rest of the period
        return np.where(np.arange(calendar.days) < config.cohort_days, calendar.intensity, 0.0)
    elapsed_years = np.arange(calendar.days) / DAYS_PER_YEAR
    launch = 1.0 + LAUNCH_BUMP * np.exp(-np.arange(calendar.days) / LAUNCH_DECAY_DAYS)
    return (1.0 + ACQUISITION_GROWTH_PER_YEAR * elapsed_years) * launch * calendar.intensity


def _draw_customers(rng: np.random.Generator, config: SimulationConfig, calendar: _Calendar) -> _Customers:
    n = config.customers
    acquisition = _acquisition_intensity(config, calendar)
    cumulative_acquisition = np.concatenate([[0.0], np.cumsum(acquisition)])
    signup_day = np.sort(
        _sample_from_intensity(rng, cumulative_acquisition, np.zeros(n), np.full(n, cumulative_acquisition[-1]))
    )

    country_effects = list(COUNTRIES.values())
    country = rng.choice(len(country_effects), size=n, p=[c.share for c in country_effects])

    channel_effects = list(CHANNELS.values())
    channel_names = tuple(CHANNELS)
    channel = rng.choice(len(channel_effects), size=n, p=[c.share for c in channel_effects])
    # Drawn even without drift so that a drift run keeps the customers of the baseline's earlier signups.
    drift_channel_draw = rng.random(n)
    drift_day = _drift_day(config, "channel")
    if drift_day is not None:
        channel_effects.append(DRIFT_CHANNEL_EFFECT)
        channel_names += (DRIFT_CHANNEL,)
        takes_drift_channel = (signup_day >= drift_day) & (drift_channel_draw < DRIFT_CHANNEL_EFFECT.share)
        channel = np.where(takes_drift_channel, len(channel_effects) - 1, channel)

    def effect(attribute: str) -> np.ndarray:
        by_country = np.array([getattr(c, attribute) for c in country_effects])[country]
        by_channel = np.array([getattr(c, attribute) for c in channel_effects])[channel]
        return by_country * by_channel

    never_buys = rng.random(n) < NEVER_BUY_SHARE * effect("never_buy")
    delay = np.where(
        rng.random(n) < FIRST_PURCHASE_SAME_DAY_SHARE,
        0,
        1 + np.floor(rng.exponential(FIRST_PURCHASE_MEAN_DELAY_DAYS, n)).astype(np.int64),
    )
    first_purchase_day = signup_day + delay
    purchase_rate = rng.gamma(PURCHASE_RATE_SHAPE, PURCHASE_RATE_SCALE, n) * effect("rate") * config.purchase_rate_scale
    dropout_rate = rng.gamma(DROPOUT_RATE_SHAPE, DROPOUT_RATE_SCALE, n) / effect("lifetime")
    lifetime_days = np.floor(rng.exponential(1.0 / dropout_rate)).astype(np.int64)
    death_day = np.where(never_buys, signup_day, first_purchase_day + 1 + lifetime_days)
    spend_nu = rng.gamma(SPEND_MEAN_SHAPE, 1.0 / SPEND_MEAN_RATE, n)
    mean_spend = SPEND_SHAPE / spend_nu * effect("spend")
    return _Customers(
        signup_day=signup_day,
        country=country,
        channel=channel,
        channel_names=channel_names,
        never_buys=never_buys,
        first_purchase_day=first_purchase_day,
        purchase_rate=purchase_rate,
        dropout_rate=dropout_rate,
        death_day=death_day,
        mean_spend=mean_spend,
    )


def _price_factor(days: np.ndarray, drift_day: int | None) -> np.ndarray:
    if drift_day is None:
        return np.ones(len(days))
    return np.where(days >= drift_day, PRICE_DRIFT_FACTOR, 1.0)


def _draw_transactions(
    rng: np.random.Generator,
    customers: _Customers,
    calendar: _Calendar,
    price_drift_day: int | None,
    first_day: int = 0,
) -> _Transactions:
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
    return _transactions_on(rng, customers, customer, day, price_drift_day)


def _transactions_on(
    rng: np.random.Generator,
    customers: _Customers,
    customer: np.ndarray,
    day: np.ndarray,
    price_drift_day: int | None,
) -> _Transactions:
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
    return _Transactions(
        customer=customer[order],
        day=day[order],
        second_of_day=second_of_day[order],
        cents=cents[order],
        quantity=quantity[order],
    )


# --- text rendering ---------------------------------------------------------------

_TEXT = pa.large_string()


def _text(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), _TEXT)


def _literal(value: str) -> pa.Scalar:
    return pa.scalar(value, _TEXT)


def _join(parts: list, separator: str) -> pa.Array:
    """Element-wise join of text arrays and literals."""
    return pc.binary_join_element_wise(*parts, _literal(separator))


def _zero_padded(numbers: np.ndarray, width: int) -> pa.Array:
    # Cutting the leading "1" off number + 10**width is faster than utf8_lpad.
    return pc.utf8_slice_codeunits(_text(np.asarray(numbers, dtype=np.int64) + 10**width), 1)


def _amount_text(cents: np.ndarray) -> pa.Array:
    magnitude = np.abs(cents)
    text = _join([_text(magnitude // 100), _zero_padded(magnitude % 100, 2)], ".")
    negative = cents < 0
    return pc.if_else(pa.array(negative), _join([_literal("-"), text], ""), text) if negative.any() else text


def _customer_ids(count: int) -> pa.Array:
    return _join([_literal("C"), _zero_padded(np.arange(1, count + 1), max(7, len(str(count))))], "")


def _timestamps(calendar: _Calendar, day: np.ndarray, second_of_day: np.ndarray) -> pa.Array:
    epoch_seconds = (calendar.dates[0].astype(np.int64) + day) * 86_400 + second_of_day
    return pa.array(epoch_seconds, pa.timestamp("s"))


def _with_newlines(lines: pa.Array) -> pa.Array:
    return _join([lines, _literal("")], "\n")


def _line_bytes(lines: pa.Array, start: int, stop: int) -> pa.Buffer:
    """The UTF-8 bytes of lines[start:stop]: Arrow stores the values back to back."""
    if start == stop:
        return b""
    _, offsets_buffer, data = lines.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64, count=len(lines) + 1, offset=lines.offset * 8)
    return data[int(offsets[start]) : int(offsets[stop])]


def _header(columns: tuple[str, ...]) -> bytes:
    return (",".join(columns) + "\n").encode()


def _replace_rows(values: pa.Array, rows: np.ndarray, replacements: pa.Array) -> pa.Array:
    """values with values[rows] replaced; rows ascending and aligned with replacements."""
    mask = np.zeros(len(values), dtype=bool)
    mask[rows] = True
    return pc.replace_with_mask(values, pa.array(mask), replacements)


# --- dirty rows ---------------------------------------------------------------------


def _dirty_transaction_lines(
    rng: np.random.Generator,
    share: float,
    calendar: _Calendar,
    transactions: _Transactions,
    fields: dict[str, pa.Array],
    clean_lines: pa.Array,
) -> tuple[pa.Array, dict[str, int]]:
    """clean_lines with a share of them replaced by defective lines, and the count per kind."""
    day = transactions.day
    first_row_of_day = np.searchsorted(day, day, side="left")
    # A duplicate copies an earlier clean line of its file; keeping every file's first line clean guarantees one.
    eligible = np.flatnonzero(np.arange(len(day)) > first_row_of_day)
    count = min(int(round(share * len(day))), len(eligible))
    rows = np.sort(rng.choice(eligible, size=count, replace=False))
    kind = rng.permutation(np.arange(count) % len(DIRTY_TRANSACTION_KINDS))

    def is_kind(name: str) -> pa.Array:
        return pa.array(kind == DIRTY_TRANSACTION_KINDS.index(name))

    # Each defective line is rebuilt from the clean fields of its row with one field spoiled.
    dirty = {name: values.take(pa.array(rows)) for name, values in fields.items()}
    amount = dirty["amount"]
    negative = _join([_literal("-"), amount], "")
    decimal_comma = _join([_literal('"'), pc.replace_substring(amount, ".", ","), _literal('"')], "")
    non_numeric = pc.if_else(pa.array(rng.random(count) < 0.5), decimal_comma, _literal("N/A"))
    amount = pc.if_else(is_kind("negative_amount"), negative, amount)
    amount = pc.if_else(is_kind("non_numeric_amount"), non_numeric, amount)
    dirty["amount"] = pc.if_else(is_kind("huge_amount"), _literal(HUGE_AMOUNT_TEXT), amount)

    year_and_clock = _join(
        [pc.utf8_slice_codeunits(dirty["event_time"], 0, 4), pc.utf8_slice_codeunits(dirty["event_time"], 11)], " "
    )
    impossible_date = _join([_literal("31/02/"), year_and_clock], "")
    later_day = day[rows] + rng.integers(1, MAX_FUTURE_DAYS + 1, count)
    future = pc.cast(_timestamps(calendar, later_day, transactions.second_of_day[rows]), _TEXT)
    event_time = pc.if_else(is_kind("unparseable_event_time"), impossible_date, dirty["event_time"])
    dirty["event_time"] = pc.if_else(is_kind("future_event_time"), future, event_time)

    unknown_ids = _join([_literal("CX"), _zero_padded(rng.integers(0, 10**6, count), 6)], "")
    customer_id = pc.if_else(is_kind("empty_customer_id"), _literal(""), dirty["customer_id"])
    dirty["customer_id"] = pc.if_else(is_kind("unknown_customer_id"), unknown_ids, customer_id)

    lines = _join(list(dirty.values()), ",")  # fields are in column order
    lines = pc.if_else(is_kind("extra_field"), _join([lines, _literal("web")], ","), lines)
    is_clean = np.ones(len(day), dtype=bool)
    is_clean[rows] = False
    clean_rows = np.flatnonzero(is_clean)
    clean_before = np.concatenate([[0], np.cumsum(is_clean)])  # clean rows before each index
    first_clean_rank = clean_before[first_row_of_day[rows]]
    earlier_clean_count = clean_before[rows] - first_clean_rank
    copied_rows = clean_rows[first_clean_rank + np.floor(rng.random(count) * earlier_clean_count).astype(np.int64)]
    lines = pc.if_else(is_kind("duplicate_transaction_id"), clean_lines.take(pa.array(copied_rows)), lines)

    counts = {name: int(np.sum(kind == index)) for index, name in enumerate(DIRTY_TRANSACTION_KINDS)}
    return _replace_rows(clean_lines, rows, lines), counts


def _dirty_customer_lines(
    rng: np.random.Generator, share: float, fields: dict[str, pa.Array], signup_year: np.ndarray
) -> tuple[pa.Array, dict[str, int]]:
    """Customer lines with defects written in place or inserted after a real row, and the count per kind."""
    n = len(signup_year)
    per_kind = min(max(1, int(round(share * n / len(DIRTY_CUSTOMER_KINDS)))), n // len(DIRTY_CUSTOMER_KINDS))
    chosen = rng.choice(n, size=per_kind * len(DIRTY_CUSTOMER_KINDS), replace=False)
    bad_date_rows, empty_id_rows, missing_field_rows = (
        np.sort(rows) for rows in np.split(chosen, len(DIRTY_CUSTOMER_KINDS))
    )

    impossible_dates = _join([_text(signup_year[bad_date_rows]), _literal("02-30")], "-")
    fields = dict(fields, signup_date=_replace_rows(fields["signup_date"], bad_date_rows, impossible_dates))
    lines = _join([fields[name] for name in CUSTOMER_COLUMNS], ",")

    empty_id_take = pa.array(empty_id_rows)
    empty_id_lines = _join(
        [_literal("")] + [fields[name].take(empty_id_take) for name in CUSTOMER_COLUMNS[1:]], ","
    )
    missing_field_take = pa.array(missing_field_rows)
    missing_field_lines = _join([fields[name].take(missing_field_take) for name in CUSTOMER_COLUMNS[:-1]], ",")

    # Inserted lines go right after the row they were copied from.
    position = np.concatenate([np.arange(n) * 2, empty_id_rows * 2 + 1, missing_field_rows * 2 + 1])
    all_lines = pa.concat_arrays([lines, empty_id_lines, missing_field_lines])
    counts = dict(zip(DIRTY_CUSTOMER_KINDS, (per_kind,) * len(DIRTY_CUSTOMER_KINDS)))
    return all_lines.take(pa.array(np.argsort(position, kind="stable"))), counts


# --- writing -----------------------------------------------------------------------


def _write_parquet_atomically(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as temporary:  # a watcher (the landing sensor) never sees a partial file
        pq.write_table(table, temporary)


def _write_transactions(
    directory: Path,
    calendar: _Calendar,
    transactions: _Transactions,
    file_format: str,
    payload: pa.Array | pa.Table,
    columns: tuple[str, ...] = TRANSACTION_COLUMNS,
) -> None:
    """One file per calendar day; payload is the CSV lines or the parquet table, sorted by day."""
    directory.mkdir(parents=True, exist_ok=True)
    day_bounds = np.searchsorted(transactions.day, np.arange(calendar.days + 1), side="left")
    header = _header(columns)
    other_format = "parquet" if file_format == "csv" else "csv"
    for day, date in enumerate(np.datetime_as_string(calendar.dates)):
        start, stop = int(day_bounds[day]), int(day_bounds[day + 1])
        path = directory / f"{date}.{file_format}"
        if file_format == "csv":
            write_bytes_atomically(path, [header, _line_bytes(payload, start, stop)])
        else:
            _write_parquet_atomically(payload.slice(start, stop - start), path)
        # A re-run in the other format must not leave the old day file behind.
        (directory / f"{date}.{other_format}").unlink(missing_ok=True)


def _date_array(calendar: _Calendar, days: np.ndarray, missing: np.ndarray) -> pa.Array:
    dates = calendar.dates[0] + np.where(missing, 0, days)
    return pa.array(np.where(missing, np.datetime64("NaT"), dates).astype("datetime64[D]"))


def _ground_truth_table(
    customers: _Customers, customer_ids: pa.Array, calendar: _Calendar, config: SimulationConfig
) -> pa.Table:
    n = len(customers)
    signup_dates = calendar.dates[customers.signup_day]
    months, month_index = np.unique(signup_dates.astype("datetime64[M]"), return_inverse=True)
    price_drift_day = _drift_day(config, "price")
    price_change_date = None if price_drift_day is None else config.drift_from
    return pa.table(
        {
            "customer_id": pc.cast(customer_ids, pa.string()),
            "signup_date": pa.array(signup_dates),
            "cohort": pa.array(np.datetime_as_string(months)).take(pa.array(month_index)),
            "country": pa.array(list(COUNTRIES)).take(pa.array(customers.country)),
            "acquisition_channel": pa.array(list(customers.channel_names)).take(pa.array(customers.channel)),
            "never_buys": pa.array(customers.never_buys),
            "first_purchase_date": _date_array(calendar, customers.first_purchase_day, customers.never_buys),
            "purchase_rate": pa.array(customers.purchase_rate),
            "dropout_rate": pa.array(customers.dropout_rate),
            "death_date": _date_array(calendar, customers.death_day, customers.death_day >= calendar.days),
            "mean_spend": pa.array(customers.mean_spend),
            "spend_shape": pa.array(np.full(n, SPEND_SHAPE)),
            "observed_until": pa.array(np.full(n, calendar.dates[-1])),
            "price_change_date": pa.array([price_change_date] * n, pa.date32()),
            "price_change_factor": pa.array(np.full(n, 1.0 if price_change_date is None else PRICE_DRIFT_FACTOR)),
            **_regime_truth_columns(config, customers),
        }
    )


def _regime_truth_columns(config: SimulationConfig, customers: _Customers) -> dict[str, pa.Array]:
    """Ground truth columns of regime options, present only when the option is on (read by the oracle)."""
    n = len(customers)
    columns = {}
    if customers.whale is not None:
        columns["is_whale"] = pa.array(customers.whale)
    if config.seasonality_scale != 1.0:
        columns["seasonality_scale"] = pa.array(np.full(n, config.seasonality_scale))
    if config.zero_amount_share > 0:
        columns["zero_amount_share"] = pa.array(np.full(n, config.zero_amount_share))
    return columns


def _meta(config: SimulationConfig, counts: dict) -> dict:
    config_json = asdict(config)
    for name in ("start", "end", "drift_from"):
        config_json[name] = None if config_json[name] is None else config_json[name].isoformat()
    defaults = SimulationConfig(start=config.start, end=config.end)
    for name in REGIME_FIELDS:  # listed only when they differ from the default
        if getattr(config, name) == getattr(defaults, name):
            del config_json[name]
    return {
        "generator_version": GENERATOR_VERSION,
        "config": config_json,
        "seasonality": _seasonality_definition(config.seasonality_scale),
        "process": {
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
        },
        "counts": counts,
    }


def _transaction_fields(
    calendar: _Calendar, transactions: _Transactions, customer_ids: pa.Array, with_status: bool = False
) -> dict[str, pa.Array]:
    """The CSV text of every transaction column, in column order (status last, when asked for)."""
    id_width = max(9, len(str(len(transactions))))
    fields = {
        "transaction_id": _join([_literal("T"), _zero_padded(np.arange(1, len(transactions) + 1), id_width)], ""),
        "customer_id": customer_ids.take(pa.array(transactions.customer)),
        "event_time": pc.cast(_timestamps(calendar, transactions.day, transactions.second_of_day), _TEXT),
        "amount": _amount_text(transactions.cents),
        "quantity": _text(transactions.quantity),
    }
    if with_status:
        kind = np.zeros(len(transactions), dtype=np.int64) if transactions.kind is None else transactions.kind
        cancelled = kind == LINE_KINDS.index("cancelled")
        fields["status"] = pc.if_else(pa.array(cancelled), _literal("cancelled"), _literal("completed"))
    return fields


def _transaction_table(calendar: _Calendar, transactions: _Transactions, fields: dict[str, pa.Array]) -> pa.Table:
    """Transactions with natural column types, for parquet."""
    columns = {
        "transaction_id": pc.cast(fields["transaction_id"], pa.string()),
        "customer_id": pc.cast(fields["customer_id"], pa.string()),
        "event_time": _timestamps(calendar, transactions.day, transactions.second_of_day).cast(pa.timestamp("us")),
        "amount": pa.array(transactions.cents / 100),
        "quantity": pa.array(transactions.quantity),
    }
    if "status" in fields:
        columns["status"] = pc.cast(fields["status"], pa.string())
    return pa.table(columns)


def _customer_fields(
    rng: np.random.Generator, calendar: _Calendar, customers: _Customers, customer_ids: pa.Array
) -> dict[str, pa.Array]:
    """The CSV text of every customer column."""
    name_index = rng.integers(0, [len(FIRST_NAMES), len(LAST_NAMES)], size=(len(customers), 2))
    first_names = pa.array(FIRST_NAMES, _TEXT).take(pa.array(name_index[:, 0]))
    last_names = pa.array(LAST_NAMES, _TEXT).take(pa.array(name_index[:, 1]))
    return {
        "customer_id": customer_ids,
        "signup_date": pa.array(np.datetime_as_string(calendar.dates), _TEXT).take(pa.array(customers.signup_day)),
        "country": pa.array(list(COUNTRIES), _TEXT).take(pa.array(customers.country)),
        "acquisition_channel": pa.array(customers.channel_names, _TEXT).take(pa.array(customers.channel)),
        "email": _join([pc.utf8_lower(customer_ids), _literal("@example.com")], ""),
        "name": _join([first_names, last_names], " "),
    }


def simulate(data_dir: Path, config: SimulationConfig) -> SimulationSummary:
    """Simulate the shop and write landing files, ground truth and metadata under data_dir."""
    from mlsys_assets import simulate_regimes as regimes  # builds on this module

    data_dir = Path(data_dir)
    landing_dir = data_dir / "landing"
    simulation_dir = data_dir / "simulation"
    # More streams than the three of the demo shop: spawning more leaves the first three unchanged.
    customer_rng, purchase_rng, dirt_rng, regime_rng, future_rng = np.random.default_rng(config.seed).spawn(5)

    calendar = _Calendar.between(config.start, config.end, config.seasonality_scale)
    customers = regimes.with_whales(regime_rng, config, _draw_customers(customer_rng, config, calendar))
    sales = _draw_transactions(purchase_rng, customers, calendar, _drift_day(config, "price"))
    lines = regimes.with_regime_lines(regime_rng, config, customers, sales)
    customer_ids = _customer_ids(len(customers))

    simulation_dir.mkdir(parents=True, exist_ok=True)
    dirty_counts = {
        "transactions": _write_transaction_lines(dirt_rng, config, calendar, lines, customer_ids, data_dir),
        "customers": _write_customers(customer_rng, dirt_rng, config, calendar, customers, customer_ids, landing_dir),
    }
    ground_truth_path = simulation_dir / "ground_truth.parquet"
    _write_parquet_atomically(_ground_truth_table(customers, customer_ids, calendar, config), ground_truth_path)
    future = regimes.write_future(future_rng, config, customers, customer_ids, simulation_dir)

    dirty_rows = sum(dirty_counts["transactions"].values()) + sum(dirty_counts["customers"].values())
    transaction_files = calendar.days if config.export_layout == "daily" else 0
    counts = {
        "customers": len(customers),
        "buying_customers": int((~customers.never_buys & (customers.first_purchase_day < calendar.days)).sum()),
        "transactions": len(lines),
        "days": calendar.days,
        "transaction_files": transaction_files,
        "dirty_rows": dirty_rows,
        "dirty_rows_by_kind": dirty_counts,
    }
    meta = _meta(config, counts) | regimes.meta_entries(config, lines, future)
    write_bytes_atomically(simulation_dir / "meta.json", [(json.dumps(meta, indent=2) + "\n").encode()])
    return SimulationSummary(
        customers=len(customers),
        transactions=len(lines),
        days=calendar.days,
        transaction_files=transaction_files,
        dirty_rows=dirty_rows,
        landing_dir=landing_dir,
        ground_truth_path=ground_truth_path,
        **regimes.summary_paths(config, simulation_dir, future),
    )


def _write_transaction_lines(
    dirt_rng: np.random.Generator,
    config: SimulationConfig,
    calendar: _Calendar,
    lines: _Transactions,
    customer_ids: pa.Array,
    data_dir: Path,
) -> dict[str, int]:
    """The daily landing files (or the one export file); the count of dirty lines per kind."""
    from mlsys_assets import simulate_regimes as regimes

    dirty_counts = dict.fromkeys(DIRTY_TRANSACTION_KINDS, 0)
    fields = _transaction_fields(calendar, lines, customer_ids, with_status=config.cancelled_share > 0)
    directory = data_dir / "landing" / "transactions"
    if config.export_layout == "whitespace_export":
        regimes.write_whitespace_export(data_dir / "simulation", calendar, lines, fields, directory)
        return dirty_counts  # defects are written into CSV files only, as for parquet
    regimes.remove_export(data_dir / "simulation")
    if config.file_format == "csv":
        text_lines = _join(list(fields.values()), ",")
        if config.dirty_share > 0:
            text_lines, dirty_counts = _dirty_transaction_lines(
                dirt_rng, config.dirty_share, calendar, lines, fields, text_lines
            )
        payload = _with_newlines(text_lines)
    else:
        payload = _transaction_table(calendar, lines, fields)
    _write_transactions(directory, calendar, lines, config.file_format, payload, tuple(fields))
    return dirty_counts


def _write_customers(
    customer_rng: np.random.Generator,
    dirt_rng: np.random.Generator,
    config: SimulationConfig,
    calendar: _Calendar,
    customers: _Customers,
    customer_ids: pa.Array,
    landing_dir: Path,
) -> dict[str, int]:
    """landing/customers/customers.csv (none when customers_export is off); the count of dirty rows per kind."""
    customers_path = landing_dir / "customers" / "customers.csv"
    if not config.customers_export:
        customers_path.unlink(missing_ok=True)  # a re-run must not leave an earlier run's export behind
        return dict.fromkeys(DIRTY_CUSTOMER_KINDS, 0)
    customer_fields = _customer_fields(customer_rng, calendar, customers, customer_ids)
    dirty_counts = dict.fromkeys(DIRTY_CUSTOMER_KINDS, 0)
    if config.dirty_share > 0:
        signup_year = calendar.dates[customers.signup_day].astype("datetime64[Y]").astype(np.int64) + 1970
        customer_lines, dirty_counts = _dirty_customer_lines(dirt_rng, config.dirty_share, customer_fields, signup_year)
    else:
        customer_lines = _join([customer_fields[name] for name in CUSTOMER_COLUMNS], ",")
    customer_lines = _with_newlines(customer_lines)
    customers_path.parent.mkdir(parents=True, exist_ok=True)
    customer_bytes = _line_bytes(customer_lines, 0, len(customer_lines))
    write_bytes_atomically(customers_path, [_header(CUSTOMER_COLUMNS), customer_bytes])
    return dirty_counts


# --- oracle ------------------------------------------------------------------------


def _epoch_days(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Days since 1970-01-01 and a mask of missing values."""
    dates = pd.to_datetime(values).to_numpy().astype("datetime64[D]")
    missing = np.isnat(dates)
    return np.where(missing, 0, dates.astype(np.int64)), missing


def _process_constant(truth: pd.DataFrame, column: str, default: float) -> float:
    """A process parameter the ground truth repeats on every row; absent: the demo shop's value."""
    return float(truth[column].iloc[0]) if column in truth.columns and len(truth) else default


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
    window_last = window_first + horizon_days - 1
    truth = ground_truth[signup < window_first]

    first_purchase, never_buys = _epoch_days(truth["first_purchase_date"])
    death, alive_at_end = _epoch_days(truth["death_date"])
    observed_until, _ = _epoch_days(truth["observed_until"])
    rate = truth["purchase_rate"].to_numpy()
    dropout = truth["dropout_rate"].to_numpy()

    window = np.arange(window_first, window_last + 1)
    intensity = seasonal_multiplier(window.astype("datetime64[D]"), _process_constant(truth, "seasonality_scale", 1.0))
    price = np.ones(horizon_days)
    if len(truth) and pd.notna(truth["price_change_date"].iloc[0]):
        price_change, _ = _epoch_days(truth["price_change_date"].iloc[:1])
        price = np.where(window >= price_change[0], truth["price_change_factor"].iloc[0], 1.0)
    cumulative_intensity = np.concatenate([[0.0], np.cumsum(intensity)])
    cumulative_revenue_intensity = np.concatenate([[0.0], np.cumsum(intensity * price)])

    def window_sum(cumulative: np.ndarray, first_day: np.ndarray, last_day: np.ndarray) -> np.ndarray:
        low = np.clip(first_day - window_first, 0, horizon_days)
        high = np.clip(last_day - window_first + 1, 0, horizon_days)
        return np.where(high > low, cumulative[np.maximum(high, low)] - cumulative[low], 0.0)

    # Alive for sure from the first purchase up to the known death, or up to the
    # last day the simulation has seen (or the first purchase, if later).
    anchor = np.maximum(first_purchase, observed_until)
    last_sure_day = np.where(alive_at_end, anchor, death - 1)
    buyer = ~never_buys
    sure_purchases = np.where(buyer, rate * window_sum(cumulative_intensity, first_purchase, last_sure_day), 0.0)
    sure_revenue = np.where(buyer, rate * window_sum(cumulative_revenue_intensity, first_purchase, last_sure_day), 0.0)
    first_in_window = buyer & (first_purchase >= window_first) & (first_purchase <= window_last)
    price_at_first = price[np.clip(first_purchase - window_first, 0, horizon_days - 1)]

    expected_purchases = first_in_window + sure_purchases
    expected_revenue = np.where(first_in_window, price_at_first, 0.0) + sure_revenue
    p_no_purchase = np.where(first_in_window, 0.0, np.exp(-sure_purchases))

    # After the anchor the customer survives each further day with probability
    # exp(-dropout): add the expected purchases and mix the no-purchase
    # probability over the day of death.
    tail = np.flatnonzero(buyer & alive_at_end & (anchor < window_last))
    if len(tail):
        tail_rate, tail_dropout, tail_anchor = rate[tail], dropout[tail], anchor[tail]
        tail_purchases = np.zeros(len(tail))
        tail_revenue = np.zeros(len(tail))
        exposure = np.zeros(len(tail))  # seasonal intensity summed over the tail's days in the window so far
        # Probability of dying before the tail reaches the window.
        no_purchase = 1.0 - np.exp(-tail_dropout * (np.maximum(tail_anchor + 1, window_first) - tail_anchor))
        dies_next_day = 1.0 - np.exp(-tail_dropout)
        for offset, day in enumerate(window):
            in_tail = day > tail_anchor
            survival = np.where(in_tail, np.exp(-tail_dropout * (day - tail_anchor)), 0.0)
            exposure += np.where(in_tail, intensity[offset], 0.0)
            tail_purchases += tail_rate * intensity[offset] * survival
            tail_revenue += tail_rate * intensity[offset] * price[offset] * survival
            # Probability that this is the last day alive (or, on the window's last day, that it is alive).
            last_alive = survival * dies_next_day if day < window_last else survival
            no_purchase += last_alive * np.exp(-tail_rate * exposure)
        expected_purchases[tail] += tail_purchases
        expected_revenue[tail] += tail_revenue
        p_no_purchase[tail] *= no_purchase

    paid_share = 1.0 - _process_constant(truth, "zero_amount_share", 0.0)  # $0 sales count but add no spend
    return pd.DataFrame(
        {
            "customer_id": truth["customer_id"].to_numpy(),
            "expected_spend": expected_revenue * truth["mean_spend"].to_numpy() * paid_share,
            "expected_purchases": expected_purchases,
            "p_no_purchase": p_no_purchase,
        }
    )
