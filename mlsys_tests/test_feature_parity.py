"""The API's /v1/predict/features path builds exactly the feature row the snapshot SQL builds.

The API scores customers it has not seen from a JSON payload and computes the features derived from the
as-of day itself (the season); batch scoring and training read them from `features.customer_features`.
Every stored customer, sent through the API's feature path as a payload, must come out as the same
model input, column for column and bit for bit: otherwise the API would answer differently from the
pipeline for the same customer.
"""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import pandas as pd
import pytest

from mlsys_assets.api.features import feature_row
from mlsys_assets.api.schemas import FeaturePayload
from mlsys_assets.features import derived
from mlsys_assets.features.assets import customer_features
from mlsys_assets.features.snapshot import CATEGORICAL_FEATURES, FEATURES
from mlsys_assets.ml.scoring import model_frame
from mlsys_tests.conftest import SHOP_CONFIG

# The shop's newest day, and the leap day with its neighbours (day-of-year shifts by one after it).
DAYS = (SHOP_CONFIG.end, dt.date(2024, 2, 28), dt.date(2024, 2, 29), dt.date(2024, 3, 1))
PAYLOAD_FIELDS = [name for name in FeaturePayload.model_fields if name != "as_of"]


def feature_frame(payload: FeaturePayload, served_day: dt.date) -> pd.DataFrame:
    """The API's feature row for a payload as a one-row DataFrame (a null field a float NaN column), to compare
    it with the snapshot's rows; the API itself never builds one."""
    row = feature_row(payload, served_day)
    return pd.DataFrame([row]).astype({k: float for k, v in row.items() if v is None})


def json_value(value: object) -> object:
    """NULL -> null, numpy scalars -> JSON numbers, strings as they are."""
    if pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value


def payload_json(row: pd.Series) -> str:
    """A stored snapshot row as the JSON body a client sends for it."""
    values = {name: json_value(row[name]) for name in PAYLOAD_FIELDS}
    return json.dumps({**values, "as_of": row["as_of"].date().isoformat()})


@pytest.fixture
def stored_snapshots(shop) -> pd.DataFrame:
    stored = []
    for day in DAYS:  # each day read right after its run: a run drops old days beyond the retention
        shop.materialize([customer_features], partition_key=day.isoformat())
        stored.append(shop.frame("SELECT * FROM features.customer_features WHERE as_of = ? ORDER BY customer_id", [day]))
    return pd.concat(stored, ignore_index=True)


def test_every_stored_customer_gets_the_same_model_input_through_the_api(stored_snapshots: pd.DataFrame):
    features, categorical = list(FEATURES), list(CATEGORICAL_FEATURES)
    assert stored_snapshots["as_of"].nunique() == len(DAYS)
    # Buyers, one-day buyers (NULL gaps) and customers who signed up without buying (NULL recency) alike.
    assert stored_snapshots["recency_days"].isna().any() and stored_snapshots["gap_mean_days"].isna().any()
    # The served day only matters for payloads without as_of; every payload here names its day.
    served_day = stored_snapshots["as_of"].max().date()
    through_api = pd.concat(
        [feature_frame(FeaturePayload.model_validate_json(payload_json(row)), served_day)
         for _, row in stored_snapshots.iterrows()],
        ignore_index=True,
    )
    expected = model_frame(stored_snapshots, features, categorical)
    pd.testing.assert_frame_equal(model_frame(through_api, features, categorical), expected, check_exact=True)


def test_the_season_formula_agrees_in_sql_and_python_on_every_day_of_a_common_and_a_leap_year():
    sql = (f"SELECT day, {derived.season_sql('day')} FROM "
           "(SELECT unnest(range(DATE '2023-01-01', DATE '2025-01-01', INTERVAL 1 DAY))::DATE AS day)")
    rows = duckdb.sql(sql).fetchall()
    assert len(rows) == 365 + 366
    for day, *in_sql in rows:
        assert dict(zip(derived.SEASON_FEATURES, in_sql)) == derived.season_features(day), day
