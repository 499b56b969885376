"""Evaluation pictures as PNG bytes, for the HTML model reports (inline) and the model assets' metadata."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

from mlsys_assets.ml.metrics import calibration_bins


def _pyplot():
    """matplotlib on its file-only backend (no display on servers and in CI), imported on first use: it takes
    ~0.4 s, and only training draws."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(figure) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    _pyplot().close(figure)
    return buffer.getvalue()


def gains_png(actual: np.ndarray, predictions: dict[str, np.ndarray]) -> bytes:
    """Cumulative share of the window's revenue against the share of customers, ranked by each forecast."""
    figure, axis = _pyplot().subplots(figsize=(6, 4.2))
    shares = np.arange(1, len(actual) + 1) / len(actual)
    for name, predicted in predictions.items():
        order = np.lexsort((actual, -np.asarray(predicted, float)))
        axis.plot(shares, np.cumsum(actual[order]) / actual.sum(), label=name, linewidth=1.6)
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="random")
    axis.axvline(0.1, color="grey", linewidth=0.8)
    axis.set(xlabel="share of customers, highest forecast first", ylabel="share of the window's revenue",
             title="Gains: revenue captured by forecast rank")
    axis.legend(loc="lower right", fontsize=8)
    return _png(figure)


def calibration_png(churned: np.ndarray, probabilities: dict[str, np.ndarray]) -> bytes:
    figure, axis = _pyplot().subplots(figsize=(5, 4.2))
    for name, probability in probabilities.items():
        bins = calibration_bins(churned, probability)
        axis.plot([b[0] for b in bins], [b[1] for b in bins], marker="o", label=name, linewidth=1.4)
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    axis.set(xlabel="predicted churn probability (decile mean)", ylabel="observed churn rate",
             title="Churn calibration", xlim=(0, 1), ylim=(0, 1))
    axis.legend(loc="upper left", fontsize=8)
    return _png(figure)


def importance_png(names: list[str], importances: np.ndarray, title: str, top: int = 15) -> bytes:
    order = np.argsort(importances)[-top:]
    figure, axis = _pyplot().subplots(figsize=(6, 0.3 * len(order) + 1.2))
    axis.barh([names[i] for i in order], np.asarray(importances)[order], color="#4c72b0")
    axis.set(xlabel="importance (CatBoost PredictionValuesChange)", title=title)
    return _png(figure)


def importance_chart(names: list[str], importances: np.ndarray, title: str, path: Path, top: int = 15) -> Path:
    """`importance_png` saved to `path` (the model assets keep it beside their version's reports)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(importance_png(names, importances, title, top))
    return path


def data_uri(png: bytes) -> str:
    """A PNG as a data: URI, so a page or a Markdown entry needs no file beside it."""
    return f"data:image/png;base64,{base64.b64encode(png).decode()}"
