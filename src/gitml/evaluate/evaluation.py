"""Assemble evaluation outputs (metrics, slice metrics, predictions, curves) from test scores."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gitml.config.schema import Params
from gitml.evaluate.metrics import compute_metrics, compute_slices
from gitml.evaluate.plots import calibration_points, precision_recall_points, roc_points


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, Any]
    slices: dict[str, Any]
    predictions: pd.DataFrame
    plots: dict[str, list[dict[str, Any]]]


def evaluate_scores(test: pd.DataFrame, score: np.ndarray, params: Params) -> Evaluation:
    """Metrics overall and per slice, per-row predictions and curve data for the test set."""
    data, cfg = params.data, params.evaluate
    labels = test[data.target].astype(str)
    y_true = (labels == data.positive_class).to_numpy(dtype=int)
    negative = next(
        c for c in data.columns[data.target].categories or [] if c != data.positive_class
    )
    predicted = np.where(score >= cfg.threshold, data.positive, negative)
    predictions = pd.DataFrame(
        {
            "row_id": test.index.to_numpy(),
            "actual": labels.to_numpy(),
            "predicted": predicted,
            "score": np.round(score, 10),
        }
    )
    predictions = _committable(predictions, cfg.max_prediction_rows)
    metrics = {
        "model_name": params.project.model_name,
        "estimator": params.model.name,
        "threshold": cfg.threshold,
        "test_set": {
            "rows": len(test),
            "positives": int(y_true.sum()),
            "fingerprint": fingerprint_rows(test.index.to_numpy(), labels.to_numpy()),
            "predictions_saved": len(predictions),
        },
        "metrics": compute_metrics(y_true, score, threshold=cfg.threshold, names=cfg.metrics),
    }
    slices = {
        "threshold": cfg.threshold,
        "min_slice_rows": cfg.min_slice_rows,
        "slices": compute_slices(
            test,
            y_true,
            score,
            columns=cfg.slices,
            threshold=cfg.threshold,
            names=cfg.metrics,
            min_rows=cfg.min_slice_rows,
        ),
    }
    plots = {
        "roc": roc_points(y_true, score),
        "precision_recall": precision_recall_points(y_true, score),
        "calibration": calibration_points(y_true, score, bins=cfg.calibration_bins),
    }
    return Evaluation(metrics=metrics, slices=slices, predictions=predictions, plots=plots)


def fingerprint_rows(row_ids: np.ndarray, labels: np.ndarray) -> str:
    """A short hash of which rows (and labels) make up a test set: equal means comparable."""
    digest = hashlib.sha256()
    digest.update(np.asarray(row_ids, dtype=np.int64).tobytes())
    digest.update("\x1f".join(map(str, labels)).encode("utf-8"))
    return digest.hexdigest()[:16]


def _committable(predictions: pd.DataFrame, limit: int) -> pd.DataFrame:
    """At most `limit` rows, chosen by a hash of the row id: the same rows in every revision
    that shares the test set, so paired comparisons stay possible; metrics use all rows."""
    if len(predictions) <= limit:
        return predictions
    ids = predictions["row_id"].to_numpy().astype(np.uint64)
    with np.errstate(over="ignore"):
        keys = ids * np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: a fixed permutation
    keep = np.sort(np.argsort(keys, kind="stable")[:limit])
    return predictions.iloc[keep].reset_index(drop=True)
