"""Seasonality of the simulated shop, and the calendar of simulated days with their intensity.

A weekly profile (weekends busier) times a yearly profile (a smooth annual cosine plus a
November/December peak), each normalised to mean 1 so a purchase rate keeps its meaning on average.
Time of day comes from a fixed hourly profile (quiet nights, busy evenings). A regime's
``seasonality_scale`` multiplies both yearly amplitudes. The oracle uses the same multiplier.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import numpy as np

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


def seasonality_definition(scale: float = 1.0) -> dict:
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


@dataclass(frozen=True)
class Calendar:
    """The simulated days; a customer's or a line's day is an index into them."""

    dates: np.ndarray  # datetime64[D], one per simulated day
    intensity: np.ndarray  # seasonal multiplier per day
    cumulative: np.ndarray  # cumulative intensity with a leading 0: day d spans [cumulative[d], cumulative[d+1])

    @classmethod
    def between(cls, start: datetime.date, end: datetime.date, seasonality_scale: float = 1.0) -> Calendar:
        dates = np.arange(np.datetime64(start, "D"), np.datetime64(end, "D") + 1)
        intensity = seasonal_multiplier(dates, seasonality_scale)
        return cls(dates, intensity, np.concatenate([[0.0], np.cumsum(intensity)]))

    @property
    def days(self) -> int:
        return len(self.dates)
