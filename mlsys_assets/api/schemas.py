"""Request and response bodies of the prediction API (they are also its OpenAPI documentation)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

Count = Field(ge=0, le=10_000_000)
Days = Field(ge=0, le=36_500)
Money = Field(ge=0, le=1e9)
# How far `as_of` may lie from the online store's as-of day (enforced by the route: the day is not static).
AS_OF_MAX_YEARS = 5


# Every request string has a length constraint: pydantic-core then refuses text that is not valid Unicode
# (a lone surrogate such as "\\ud800", which JSON allows but no response can encode) with a 422
# `string_unicode`; an unconstrained `list[str]` let it through to a 500 when the answer echoed it.
CustomerId = Annotated[str, Field(min_length=1, max_length=128, examples=["C0000042"])]
Label = Annotated[str, Field(min_length=1, max_length=64)]


class CustomerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: CustomerId


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_ids: list[CustomerId] = Field(
        min_length=1, examples=[["C0000042", "C0000043"]],
        description="At most MLSYS_API_BATCH_LIMIT ids (default 1000); more is a 413.",
    )


class FeaturePayload(BaseModel):
    """Every feature of a customer not yet in the online store (docs/models.md explains each)."""

    model_config = ConfigDict(extra="forbid")
    recency_days: int | None = Field(default=None, ge=0, le=36_500, description="Days since the last purchase; null if none.")
    tenure_days: int | None = Field(default=None, ge=0, le=36_500, description="Days since the first purchase; null if none.")
    days_since_signup: int = Days
    purchase_days: int = Count
    tx_lifetime: int = Count
    spend_lifetime: float = Money
    qty_lifetime: int = Count
    tx_30: int = Count
    spend_30: float = Money
    qty_30: int = Count
    tx_90: int = Count
    spend_90: float = Money
    qty_90: int = Count
    tx_180: int = Count
    spend_180: float = Money
    qty_180: int = Count
    tx_365: int = Count
    spend_365: float = Money
    qty_365: int = Count
    spend_trend_90: float | None = Field(default=0.0, ge=-1e9, le=1e9,
                                         description="Spend of the last 90 days minus the 90 before.")
    gap_mean_days: float | None = Field(default=None, ge=0, le=36_500)
    gap_std_days: float | None = Field(default=None, ge=0, le=36_500)
    last_gap_days: float | None = Field(default=None, ge=0, le=36_500)
    avg_basket: float | None = Field(default=None, ge=0, le=1e9)
    avg_items: float | None = Field(default=None, ge=0, le=1e6)
    max_amount: float | None = Field(default=None, ge=0, le=1e9)
    btyd_expected_purchases: float | None = Field(default=None, ge=0, le=1e6)
    btyd_expected_spend: float | None = Field(default=None, ge=0, le=1e9)
    btyd_p_alive: float | None = Field(default=None, ge=0, le=1)
    btyd_p_no_purchase: float | None = Field(default=None, ge=0, le=1)
    country: Label = "unknown"
    acquisition_channel: Label = "unknown"
    as_of: dt.date | None = Field(default=None, description="Day the features describe (sets the season features); "
                                  "default: the online store's as-of day. It must lie within "
                                  f"{AS_OF_MAX_YEARS} years of that day, otherwise 422.")

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: object) -> object:
        # Lax pydantic reads true/false as 1/0 in number fields; no field of this payload is a boolean.
        if isinstance(value, bool):
            raise ValueError("true/false is not a value of this field")
        return value


class FeatureBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rows: list[FeaturePayload] = Field(
        min_length=1, description="The features of each customer to score, as /v1/predict/features takes them; at "
                                  "most MLSYS_API_BATCH_LIMIT rows (default 1000), more is a 413.",
    )


class Prediction(BaseModel):
    customer_id: str | None = None
    predicted_spend: float = Field(description="Forecast revenue in the next horizon_days.")
    churn_probability: float = Field(description="Probability of no purchase in the next horizon_days.")
    risk_segment: str
    horizon_days: int
    features_as_of: dt.date
    model_versions: dict[str, str]


class BatchResponse(BaseModel):
    predictions: list[Prediction]
    unknown_customer_ids: list[str]


class FeatureBatchResponse(BaseModel):
    predictions: list[Prediction] = Field(description="One per posted row, in the order of `rows`.")


class ErrorResponse(BaseModel):
    """400 (unparseable body), 401, 404, 413 and 503 answers."""

    detail: str


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description="Where: e.g. [\"body\", \"as_of\"].")
    msg: str
    type: str


class ValidationErrorResponse(BaseModel):
    """422: the request is well-formed JSON but breaks the schema; each issue names its field."""

    detail: list[ValidationIssue]
