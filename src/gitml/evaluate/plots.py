"""Plot data for `dvc plots`: ROC, precision-recall and calibration curves as row lists."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

# Curves are thinned to about this many points: enough to draw, small enough to commit.
MAX_POINTS = 200


def roc_points(y_true: np.ndarray, score: np.ndarray) -> list[dict[str, float]]:
    fpr, tpr, thresholds = skm.roc_curve(y_true, score)
    rows = [
        {"fpr": _r(f), "tpr": _r(t), "threshold": _r(min(th, 1.0))}
        for f, t, th in zip(fpr, tpr, thresholds, strict=True)
    ]
    return _thin(rows)


def precision_recall_points(y_true: np.ndarray, score: np.ndarray) -> list[dict[str, float]]:
    precision, recall, thresholds = skm.precision_recall_curve(y_true, score)
    thresholds = np.append(thresholds, 1.0)
    rows = [
        {"recall": _r(r), "precision": _r(p), "threshold": _r(t)}
        for p, r, t in zip(precision, recall, thresholds, strict=True)
    ]
    return _thin(rows)


def calibration_points(y_true: np.ndarray, score: np.ndarray, *, bins: int) -> list[dict[str, Any]]:
    fraction, predicted = calibration_curve(y_true, score, n_bins=bins, strategy="uniform")
    return [
        {"mean_predicted": _r(p), "fraction_positive": _r(f)}
        for p, f in zip(predicted, fraction, strict=True)
    ]


def _thin(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    if len(rows) <= MAX_POINTS:
        return rows
    keep = np.unique(np.linspace(0, len(rows) - 1, MAX_POINTS).round().astype(int))
    return [rows[i] for i in keep]


def _r(value: float) -> float:
    return round(float(value), 6)
