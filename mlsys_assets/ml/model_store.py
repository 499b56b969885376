"""Model versions on disk and the production pointer.

A version is an immutable folder `models/<model>/<version>/` with `model.cbm` and `card.json`. The
production pointer (`DataLayout.production_pointer`) names the serving version of each model; it is written to
a temporary file and renamed, so a reader never sees half of it. This module imports neither Dagster
nor the asset modules: the API uses it too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from catboost import CatBoost

from mlsys_assets.ml.targets import TARGETS
from mlsys_assets.storage import PRODUCTION_POINTER_FILE, write_text_atomically


class NoProductionModelError(RuntimeError):
    """No model version has passed the promotion gate yet."""


@dataclass(frozen=True)
class ModelVersion:
    model: str
    version: str
    path: Path

    @property
    def model_file(self) -> Path:
        return self.path / "model.cbm"

    @property
    def card_file(self) -> Path:
        return self.path / "card.json"

    @property
    def reference_file(self) -> Path:
        """Training rows (a sample) and the holdout day with the model's own predictions: the drift references."""
        return self.path / "reference.parquet"

    def card(self) -> dict[str, Any]:
        return json.loads(self.card_file.read_text())

    def load(self) -> CatBoost:
        model = TARGETS[self.model].catboost_class()
        model.load_model(str(self.model_file))
        return model


def save_version(
    models_root: Path, model_name: str, model: CatBoost | None, card: dict[str, Any], reference: pd.DataFrame | None = None
) -> ModelVersion:
    """Write a new immutable version; its id is the UTC time plus a hash of the model file (of the card for
    a version without one: BG/NBD + Gamma-Gamma, whose forecasts are snapshot columns)."""
    staging = models_root / model_name / f".staging-{os.getpid()}"
    staging.mkdir(parents=True, exist_ok=True)
    if model is not None:
        model.save_model(str(staging / "model.cbm"))
        digest = hashlib.sha256((staging / "model.cbm").read_bytes()).hexdigest()[:8]
    else:
        digest = hashlib.sha256(json.dumps(card, sort_keys=True, default=str).encode()).hexdigest()[:8]
    if reference is not None:
        reference.to_parquet(staging / "reference.parquet", index=False)
    kind = "" if model is not None else f"{card.get('kind', 'model')}-"
    stem = f"{model_name}-{kind}{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{digest}"
    # Training is reproducible, so the same model can be saved twice within a second: number the repeat.
    version, repeat = stem, 1
    while (models_root / model_name / version).exists():
        repeat += 1
        version = f"{stem}-{repeat}"
    card = {**card, "model": model_name, "version": version, "model_sha256_prefix": digest}
    (staging / "card.json").write_text(json.dumps(card, indent=2, sort_keys=True, default=str))
    final = models_root / model_name / version
    os.replace(staging, final)
    return ModelVersion(model_name, version, final)


def version_from_path(path: Path) -> ModelVersion:
    card = json.loads((path / "card.json").read_text())
    return ModelVersion(card["model"], card["version"], path)


def pointer_path(serving_root: Path) -> Path:
    return serving_root / PRODUCTION_POINTER_FILE


def read_pointer(serving_root: Path) -> dict[str, Any]:
    path = pointer_path(serving_root)
    if not path.exists():
        raise NoProductionModelError(
            f"no production model yet ({path} does not exist): no candidate has passed the promotion gate. "
            "Train with `mlsys train` (or the weekly_retraining job) and see ml.model_registry for the gate's reasons."
        )
    return json.loads(path.read_text())


def production_version(serving_root: Path, model_name: str, pointer: dict[str, Any] | None = None) -> ModelVersion:
    pointer = pointer if pointer is not None else read_pointer(serving_root)
    if model_name not in pointer.get("models", {}):
        raise NoProductionModelError(f"no production {model_name} model yet: none has passed the promotion gate")
    entry = pointer["models"][model_name]
    return ModelVersion(model_name, entry["version"], Path(entry["path"]))


def write_pointer(serving_root: Path, versions: dict[str, ModelVersion], reason: str) -> None:
    write_text_atomically(
        pointer_path(serving_root),
        json.dumps(
            {
                "updated_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                "reason": reason,
                "models": {name: {"version": v.version, "path": str(v.path)} for name, v in sorted(versions.items())},
            },
            indent=2,
        ),
    )
