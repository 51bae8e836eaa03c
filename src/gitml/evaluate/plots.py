"""Plot data for `dvc plots` as row lists: binary ROC, precision-recall and calibration curves;
multiclass one-vs-rest ROC; regression predicted against actual values and residuals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# scikit-learn is imported inside the curve functions that use it: it takes about a second
# (scipy.stats with it), which `gitml gate` and `gitml report` would pay for nothing (they read
# `evaluation.outputs_from_predictions`, which draws no curve)

# Curves are thinned to about this many points: enough to draw, small enough to commit.
MAX_POINTS = 200
# Scatter plots (regression) keep at most this many rows, evenly spaced in actual value.
MAX_SCATTER = 500


def roc_points(y_true: np.ndarray, score: np.ndarray) -> list[dict[str, float]]:
    from sklearn import metrics as skm

    fpr, tpr, thresholds = skm.roc_curve(y_true, score)
    rows = [
        {"fpr": _r(f), "tpr": _r(t), "threshold": _r(min(th, 1.0))}
        for f, t, th in zip(fpr, tpr, thresholds, strict=True)
    ]
    return _thin(rows)


def precision_recall_points(y_true: np.ndarray, score: np.ndarray) -> list[dict[str, float]]:
    from sklearn import metrics as skm

    precision, recall, thresholds = skm.precision_recall_curve(y_true, score)
    thresholds = np.append(thresholds, 1.0)
    rows = [
        {"recall": _r(r), "precision": _r(p), "threshold": _r(t)}
        for p, r, t in zip(precision, recall, thresholds, strict=True)
    ]
    return _thin(rows)


def calibration_points(y_true: np.ndarray, score: np.ndarray, *, bins: int) -> list[dict[str, Any]]:
    from sklearn.calibration import calibration_curve

    fraction, predicted = calibration_curve(y_true, score, n_bins=bins, strategy="uniform")
    return [
        {"mean_predicted": _r(p), "fraction_positive": _r(f)}
        for p, f in zip(predicted, fraction, strict=True)
    ]


def roc_ovr_points(
    actual: np.ndarray, proba: np.ndarray, classes: Sequence[str]
) -> list[dict[str, Any]]:
    """One-vs-rest ROC curve of each class (rows with `class`, `fpr`, `tpr`, `threshold`);
    a class that is absent from the test rows, or fills them, has no curve."""
    rows: list[dict[str, Any]] = []
    for index, label in enumerate(classes):
        positive = np.asarray(actual) == index
        if positive.all() or not positive.any():
            continue
        rows += [{"class": label, **point} for point in roc_points(positive, proba[:, index])]
    return rows


def scatter_rows(actual: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """The rows a regression plot shows: all, or MAX_SCATTER evenly spaced in actual value
    (the same rows on every run: a stable sort, then fixed positions)."""
    order = np.argsort(np.asarray(actual, dtype=float), kind="stable")
    if len(order) <= MAX_SCATTER:
        return order
    return order[np.unique(np.linspace(0, len(order) - 1, MAX_SCATTER).round().astype(int))]


def predicted_vs_actual_points(actual: np.ndarray, predicted: np.ndarray) -> list[dict[str, float]]:
    return [
        {"actual": _r(actual[i]), "predicted": _r(predicted[i])}
        for i in scatter_rows(actual, predicted)
    ]


def residual_points(actual: np.ndarray, predicted: np.ndarray) -> list[dict[str, float]]:
    """Residual (actual - predicted) against the prediction, on the same rows."""
    return [
        {"predicted": _r(predicted[i]), "residual": _r(actual[i] - predicted[i])}
        for i in scatter_rows(actual, predicted)
    ]


def _thin(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    if len(rows) <= MAX_POINTS:
        return rows
    keep = np.unique(np.linspace(0, len(rows) - 1, MAX_POINTS).round().astype(int))
    return [rows[i] for i in keep]


def _r(value: float) -> float:
    return round(float(value), 6)
