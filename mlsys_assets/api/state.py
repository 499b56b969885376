"""What the API serves: the production models and the online snapshot, scored once at load.

Known customers' features change once a day, so the whole snapshot is scored when it (or the pointer)
changes, with the same `ProductionModels.score` as batch predictions; a request is then a lookup. A
background thread watches both files and swaps in a fully loaded and validated new state; requests in
flight keep the state object they started with, and a new model or snapshot that fails to load or
validate is refused while the old one keeps serving.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mlsys_assets.ml.model_store import pointer_path
from mlsys_assets.ml.scoring import ProductionModels
from mlsys_assets.settings import horizon_days
from mlsys_assets.storage import online_store_in

log = logging.getLogger("mlsys.api")


def _signature(*paths: Path) -> tuple:
    return tuple((p.stat().st_mtime_ns, p.stat().st_size) if p.exists() else None for p in paths)


@dataclass(frozen=True)
class ServingState:
    models: ProductionModels
    features_as_of: dt.date
    horizon_days: int
    # customer_id -> (predicted_spend, churn_probability, risk_segment)
    predictions: dict[str, tuple[float, float, str]]
    signature: tuple
    loaded_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))

    @property
    def versions(self) -> dict[str, str]:
        return {"ltv": self.models.ltv.version.version, "churn": self.models.churn.version.version}

    @classmethod
    def load(cls, serving_root: Path) -> ServingState:
        online = online_store_in(serving_root)
        signature = _signature(pointer_path(serving_root), online)
        models = ProductionModels.load(serving_root)
        if not online.exists():
            raise FileNotFoundError(f"no online feature store at {online}: run `mlsys predict` (or export_online_store)")
        features = pd.read_parquet(online)
        missing = sorted(set(models.features) - set(features.columns))
        if missing:
            raise ValueError(f"the online store lacks features the production models need: {missing}")
        if features.empty:
            raise ValueError(f"{online} holds no customers")
        scores = models.score(features)
        spend, churn = scores["predicted_spend"].to_numpy(), scores["churn_probability"].to_numpy()
        if not (np.isfinite(spend).all() and np.isfinite(churn).all() and ((churn >= 0) & (churn <= 1)).all()):
            raise ValueError("the production models produce non-finite or out-of-range forecasts on the online store")
        predictions = dict(zip(features["customer_id"], zip(spend.tolist(), churn.tolist(), scores["risk_segment"])))
        # What the served model was trained for; where its card does not say, the horizon daily predictions use.
        horizon = int(models.ltv.version.card().get("label_window_days") or horizon_days())
        as_of = pd.Timestamp(features["as_of"].iloc[0]).date()
        return cls(models, as_of, horizon, predictions, signature)


class StateHolder:
    """Holds the current ServingState and reloads it in the background when its files change."""

    def __init__(self, serving_root: Path, reload_interval_seconds: float = 1.0):
        self.serving_root = serving_root
        self.reload_interval_seconds = reload_interval_seconds
        self.state: ServingState | None = None
        self.last_error: str | None = None
        self.reloads = 0
        self._failed_signature: tuple | None = None  # files that failed to load: not retried until they change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _files(self) -> tuple[Path, Path]:
        return pointer_path(self.serving_root), online_store_in(self.serving_root)

    def try_reload(self) -> bool:
        """Load the files if they changed since the last attempt; True when a new state was swapped in."""
        current = _signature(*self._files())
        if current == self._failed_signature or (self.state is not None and current == self.state.signature):
            return False
        try:
            new_state = ServingState.load(self.serving_root)
        except Exception as exc:  # whatever is wrong with the new files, keep serving the current state
            self.last_error, self._failed_signature = f"{type(exc).__name__}: {exc}", current
            log.error("refused to load the new serving state, keeping the current one: %s", self.last_error)
            return False
        self.state, self.last_error, self._failed_signature = new_state, None, None
        self.reloads += 1
        # What a state holds (models, the scored store: ~150,000 objects) lives until the next reload: out of
        # the cyclic collector's way, whose full collections otherwise walked it all (~50-150 ms, a pause for
        # every request in flight). Frozen objects are still freed when nothing refers to them.
        gc.freeze()
        log.info("serving %s with features as of %s", new_state.versions, new_state.features_as_of)
        return True

    def start(self) -> None:
        self.try_reload()
        self._thread = threading.Thread(target=self._watch, name="mlsys-reloader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _watch(self) -> None:
        while not self._stop.wait(self.reload_interval_seconds):
            self.try_reload()
