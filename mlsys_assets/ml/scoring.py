"""Score feature rows with the production models: the one scoring function of batch and API.

Imports neither Dagster nor the asset modules, so the API can use it; batch predictions and the API
both call `score`, which is what makes their answers equal for the same features and model versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from catboost import CatBoost

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
        raw = np.asarray(self.model.predict(matrix, prediction_type="RawFormulaVal"), float)
        if self.boost_from_btyd:
            raw = raw + self.target.to_raw(self.btyd_values(frame))
        return self.target.from_raw(raw)

    def btyd_values(self, frame: pd.DataFrame) -> np.ndarray:
        return self.target.btyd_forecast(frame[self.target.btyd_column].to_numpy(float))

    def predict(self, frame: pd.DataFrame, matrix: pd.DataFrame | None = None) -> np.ndarray:
        btyd = self.btyd_values(frame)
        if self.kind == "btyd":
            return btyd
        blended = self.blend_weight * self.catboost_values(frame, matrix) + (1 - self.blend_weight) * btyd
        return self.scale * blended


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

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """predicted_spend, churn_probability and risk_segment per row: one vectorized call per model."""
        ltv_matrix = None if self.ltv.is_btyd else model_frame(frame, self.ltv.features, self.ltv.categorical)
        same_inputs = (self.churn.features, self.churn.categorical) == (self.ltv.features, self.ltv.categorical)
        churn_matrix = ltv_matrix if same_inputs else None
        spend = np.maximum(self.ltv.forecaster.predict(frame, ltv_matrix), 0.0)
        churn = np.clip(self.churn.forecaster.predict(frame, churn_matrix), 0.0, 1.0)
        return pd.DataFrame(
            {"predicted_spend": spend, "churn_probability": churn, "risk_segment": risk_segment(churn)},
            index=frame.index,
        )
