"""Features derived from the as-of day alone: the season of the forecast window.

Two paths compute them: snapshot.sql for every customer of a day (snapshot.py templates `season_sql`
into it) and the API for the one row of a /v1/predict/features request (`season_features`), where a
DuckDB query per request would cost more than the whole request should. Both are rendered here from
the same constants in the same order of operations, so they agree bit for bit
(mlsys_tests/test_feature_parity.py). Plain Python: the API imports it without DuckDB or pandas.
"""

from __future__ import annotations

import datetime as dt
import math

# The season's period: a year, in days, on average over leap years.
SEASON_PERIOD_DAYS = 365.25
# Each season feature: its column, its function of the angle in DuckDB SQL and in Python.
_SEASON = (("season_sin", "sin", math.sin), ("season_cos", "cos", math.cos))
SEASON_FEATURES = tuple(name for name, _, _ in _SEASON)


def season_sql(day: str) -> str:
    """The season columns as a DuckDB select list, for the DATE expression `day`."""
    angle = f"2 * pi() * dayofyear({day}) / {SEASON_PERIOD_DAYS!r}"
    return ",\n    ".join(f"{sql_function}({angle}) AS {name}" for name, sql_function, _ in _SEASON)


def season_features(day: dt.date) -> dict[str, float]:
    """The season columns of a row whose as-of day is `day`: `season_sql`'s formula, in Python."""
    angle = 2 * math.pi * day.timetuple().tm_yday / SEASON_PERIOD_DAYS
    return {name: function(angle) for name, _, function in _SEASON}


# Every feature derived from the as-of day alone (what a /v1/predict/features payload does not carry).
DERIVED_FEATURES = SEASON_FEATURES


def derived_features(day: dt.date) -> dict[str, float]:
    """Every feature derived from the as-of day `day`, as plain floats (the API's rows, no pandas): the
    season today; a feature added here is added to the API's rows too."""
    return season_features(day)
