"""Score feature rows with the production models: the one scoring function of batch and API.

Imports neither Dagster nor the asset modules, so the API can use it. Batch predictions and the API's
snapshot call `score` (a DataFrame); the API's on-the-fly routes call `score_rows` (plain rows, no
pandas). Both go through `Forecaster.forecast`, the one formula, and hand CatBoost the same values
(`model_frame` and `model_rows` convert alike), which is what makes their answers equal for the same
features and model versions (mlsys_tests/test_features_scoring.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from catboost import CatBoost, FeaturesData

from mlsys_assets.ml.model_store import ModelVersion, production_version, read_pointer
from mlsys_assets.ml.targets import TARGETS, Target

# Churn-risk segments by probability of no purchase in the horizon: [0, 0.3) low, [0.3, 0.6) medium, high.
RISK_SEGMENTS = ((0.3, "low"), (0.6, "medium"), (float("inf"), "high"))


def model_frame(frame: pd.DataFrame, features: list[str], categorical: list[str]) -> pd.DataFrame:
    """Features as CatBoost takes them: categoricals as strings, numbers as floats (NaN = missing)."""
    # Built column by column: selecting and copying the whole block first took 10x longer at 1M rows.
    return pd.DataFrame(
        {c: frame[c].astype(str) if c in categorical else frame[c].astype(float, copy=False) for c in features},
        index=frame.index, copy=False,
    )


def _number(value: object) -> float:
    """A feature value as `model_frame` hands it to CatBoost: a float, None (JSON null, SQL NULL) = NaN."""
    return math.nan if value is None else float(value)


# Up to this many rows CatBoost gets lists (its Pool from one list of values is the quicker build); from here
# on a FeaturesData, whose Pool is built from two arrays (~15x faster than from lists at 1,000 rows).
ROWS_AS_ARRAYS_FROM = 8


def model_rows(rows: Sequence[Mapping[str, object]], features: Sequence[str], categorical: Sequence[str]):
    """`model_frame` without pandas, for rows given as mappings (a payload's values): the same conversion value
    by value (categoricals as strings, numbers as floats, None = NaN), in the model's feature order; CatBoost
    takes it as it takes a `model_frame`. Many rows go as a `FeaturesData` where the categoricals follow the
    numbers (every model trained here: snapshot.FEATURES lists them last): numbers as float32, which is what
    CatBoost makes of any number it is given, categoricals as UTF-8 bytes."""
    categorical = set(categorical)
    numeric = [name for name in features if name not in categorical]
    cats = [name for name in features if name in categorical]
    if len(rows) < ROWS_AS_ARRAYS_FROM or list(features) != numeric + cats:
        return [[str(row[name]) if name in categorical else _number(row[name]) for name in features] for row in rows]
    return FeaturesData(
        num_feature_data=np.array([[_number(row[name]) for name in numeric] for row in rows], np.float32)
        if numeric else None,
        cat_feature_data=np.array([[str(row[name]).encode() for name in cats] for row in rows], object)
        .reshape(len(rows), len(cats)) if cats else None,
    )


def risk_segment(churn_probability: np.ndarray) -> np.ndarray:
    bounds = [bound for bound, _ in RISK_SEGMENTS]
    names = np.array([name for _, name in RISK_SEGMENTS])
    return names[np.searchsorted(bounds, np.asarray(churn_probability, float), side="right")]


@dataclass(frozen=True)
class Forecaster:
    """How a version turns feature rows into forecasts (see docs/models.md):

    - kind "btyd": BG/NBD + Gamma-Gamma's forecast, read from the snapshot's btyd_* column;
    - kind "catboost": CatBoost's raw score, plus the classic forecast on the link scale when the model
      was boosted from it (it learned a correction), then blended with the classic forecast by
      `blend_weight` and multiplied by `scale` (both chosen on the backtest; 1 and 1 by default).
    """

    target: Target
    kind: str
    features: list[str]
    categorical: list[str]
    model: CatBoost | None = None
    boost_from_btyd: bool = False
    blend_weight: float = 1.0
    scale: float = 1.0

    @classmethod
    def from_card(cls, card: dict, target: Target, model: CatBoost | None) -> Forecaster:
        post = card.get("postprocessing", {})
        return cls(
            target=target, kind="btyd" if card.get("kind") == "btyd" else "catboost",
            features=list(card["features"]), categorical=list(card.get("categorical_features", [])), model=model,
            boost_from_btyd=card.get("boost_from") == "btyd", blend_weight=float(post.get("blend_weight", 1.0)),
            scale=float(post.get("scale", 1.0)),
        )

    def catboost_values(self, frame: pd.DataFrame, matrix: pd.DataFrame | None = None) -> np.ndarray:
        """The CatBoost forecast before blending (boosted from the classic one where trained so)."""
        matrix = model_frame(frame, self.features, self.categorical) if matrix is None else matrix
        return self._catboost_forecast(self._raw(matrix, thread_count=-1), self.btyd_values(frame))

    def btyd_values(self, frame: pd.DataFrame) -> np.ndarray:
        return self.target.btyd_forecast(frame[self.target.btyd_column].to_numpy(float))

    def predict(self, frame: pd.DataFrame, matrix: pd.DataFrame | None = None) -> np.ndarray:
        btyd_column = frame[self.target.btyd_column].to_numpy(float)
        if self.kind == "btyd":
            return self.target.btyd_forecast(btyd_column)
        matrix = model_frame(frame, self.features, self.categorical) if matrix is None else matrix
        return self.forecast(btyd_column, matrix, thread_count=-1)

    def predict_rows(self, rows: Sequence[Mapping[str, object]], catboost_input=None) -> np.ndarray:
        """`predict` for rows given as mappings, without pandas; CatBoost on one thread (the API runs one
        worker process per core, and a thread pool costs more than a few rows take)."""
        btyd_column = np.array([_number(row[self.target.btyd_column]) for row in rows], float)
        if self.kind == "btyd":
            return self.target.btyd_forecast(btyd_column)
        if catboost_input is None:
            catboost_input = self.rows_input(rows)
        return self.forecast(btyd_column, catboost_input, thread_count=1)

    def rows_input(self, rows: Sequence[Mapping[str, object]]):
        return model_rows(rows, self.features, self.categorical)

    def forecast(self, btyd_column: np.ndarray, catboost_input, thread_count: int) -> np.ndarray:
        """The forecast of a CatBoost version from the classic model's column (NaN where it has no fit) and
        CatBoost's input (`model_frame` or `model_rows`): the one formula of both paths."""
        btyd = self.target.btyd_forecast(btyd_column)
        catboost = self._catboost_forecast(self._raw(catboost_input, thread_count), btyd)
        blended = self.blend_weight * catboost + (1 - self.blend_weight) * btyd
        return self.scale * blended

    def _raw(self, catboost_input, thread_count: int) -> np.ndarray:
        return np.asarray(self.model.predict(catboost_input, prediction_type="RawFormulaVal",
                                             thread_count=thread_count), float)

    def _catboost_forecast(self, raw: np.ndarray, btyd: np.ndarray) -> np.ndarray:
        if self.boost_from_btyd:
            raw = raw + self.target.to_raw(btyd)
        return self.target.from_raw(raw)


@dataclass(frozen=True)
class LoadedModel:
    version: ModelVersion
    forecaster: Forecaster

    @property
    def features(self) -> list[str]:
        return self.forecaster.features

    @property
    def categorical(self) -> list[str]:
        return self.forecaster.categorical

    @property
    def is_btyd(self) -> bool:
        return self.forecaster.kind == "btyd"

    @classmethod
    def load(cls, version: ModelVersion) -> LoadedModel:
        card = version.card()
        model = None if card.get("kind") == "btyd" else version.load()
        return cls(version, Forecaster.from_card(card, TARGETS[version.model], model))


@dataclass(frozen=True)
class ProductionModels:
    ltv: LoadedModel
    churn: LoadedModel

    @classmethod
    def load(cls, serving_root: Path) -> ProductionModels:
        """The pointer's versions; raises NoProductionModelError while none has passed the gate."""
        pointer = read_pointer(serving_root)  # read once: both versions come from the same promotion
        return cls(
            ltv=LoadedModel.load(production_version(serving_root, "ltv", pointer)),
            churn=LoadedModel.load(production_version(serving_root, "churn", pointer)),
        )

    @property
    def features(self) -> list[str]:
        return list(dict.fromkeys(self.ltv.features + self.churn.features))

    @cached_property
    def _shared_inputs(self) -> bool:
        """Both models take the same columns the same way: one CatBoost input serves both."""
        return (self.churn.features, self.churn.categorical) == (self.ltv.features, self.ltv.categorical)

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """predicted_spend, churn_probability and risk_segment per row: one vectorized call per model."""
        ltv_matrix = None if self.ltv.is_btyd else model_frame(frame, self.ltv.features, self.ltv.categorical)
        churn_matrix = ltv_matrix if self._shared_inputs else None
        spend, churn, segment = _bounded(self.ltv.forecaster.predict(frame, ltv_matrix),
                                         self.churn.forecaster.predict(frame, churn_matrix))
        return pd.DataFrame({"predicted_spend": spend, "churn_probability": churn, "risk_segment": segment},
                            index=frame.index)

    def score_rows(self, rows: Sequence[Mapping[str, object]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`score` for rows given as mappings of feature values (None = missing), without pandas: the same
        forecasts (spend, churn probability, risk segment arrays in the rows' order), one CatBoost call per
        model for all rows."""
        ltv_input = None if self.ltv.is_btyd else self.ltv.forecaster.rows_input(rows)
        churn_input = ltv_input if self._shared_inputs else None
        return _bounded(self.ltv.forecaster.predict_rows(rows, ltv_input),
                        self.churn.forecaster.predict_rows(rows, churn_input))


def _bounded(spend: np.ndarray, churn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spend at least 0, probabilities in [0, 1], and the churn-risk segment."""
    churn = np.clip(churn, 0.0, 1.0)
    return np.maximum(spend, 0.0), churn, risk_segment(churn)
