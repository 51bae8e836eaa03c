"""The calibrator: isotonic maps from a classifier's scores to probabilities, fitted at evaluate
time on the held-out split and stored as JSON beside the model's metrics.

`reports/calibrator.json` is what the evaluate stage writes (`fit_calibrator`) and what
`gitml monitor` reads to estimate performance before labels arrive (`monitor.estimate`).
A classifier gets one isotonic regression per class (binary: the positive class only);
applying it is linear interpolation between the stored thresholds, clipped at both ends,
exactly what `IsotonicRegression(out_of_bounds="clip").predict` does, so reading it needs
neither scikit-learn nor a pickled object. A regressor gets a file saying none applies.
It sits in `gitml.evaluate` (values in, values out) because the evaluate stage fits it;
`gitml.monitor.estimate` applies it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gitml.errors import ModelError
from gitml.tasks import Task

CALIBRATOR_VERSION = 1
METHOD = "isotonic"
_DECIMALS = 12  # stored values: the same bytes on every platform, far below any use


def fit_calibrator(
    truth: Sequence[Any] | np.ndarray,
    scores: np.ndarray,
    *,
    task: Task,
    classes: Sequence[str],
    positive_class: str | None,
) -> dict[str, Any]:
    """The calibrator of held-out `truth` (class names as text; regression: values) and the
    model's `scores` on the same rows (binary: positive-class probability, (rows,);
    multiclass: probabilities (rows, classes) in `classes` order), as a JSON-able dict.

    Deterministic: the same rows give the same dict (and the same JSON bytes).
    """
    rows = len(truth)
    if task == "regression":
        return {
            "version": CALIBRATOR_VERSION,
            "task": task,
            "method": None,
            "rows": rows,
            "note": "no calibrator applies to a regression model: performance is estimated "
            "for classifiers only",
        }
    from sklearn.isotonic import IsotonicRegression

    labels = np.asarray([str(v) for v in truth], dtype=object)
    scores = np.asarray(scores, dtype=float)
    classes = [str(c) for c in classes]
    if task == "binary":
        if positive_class is None or positive_class not in classes:
            raise ValueError(f"positive class {positive_class!r} is not one of {classes}")
        fitted = {positive_class: scores.reshape(-1)}
    else:
        if scores.ndim != 2 or scores.shape[1] != len(classes):
            raise ValueError(f"need scores of shape (rows, {len(classes)}), got {scores.shape}")
        fitted = {c: scores[:, i] for i, c in enumerate(classes)}
    curves = {}
    for label, column in fitted.items():
        if len(column) != rows:
            raise ValueError(f"{rows} truth values but {len(column)} scores")
        if not np.isfinite(column).all():
            raise ValueError(f"scores of class {label!r} must be finite")
        target = (labels == label).astype(float)
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(column, target)
        curves[label] = {
            "thresholds": [float(x) for x in iso.X_thresholds_],
            "values": [round(float(v), _DECIMALS) + 0.0 for v in iso.y_thresholds_],
        }
    return {
        "version": CALIBRATOR_VERSION,
        "task": task,
        "method": METHOD,
        "rows": rows,
        "classes": classes,
        "positive_class": positive_class if task == "binary" else None,
        "curves": curves,
    }


def check_calibrator(
    calibrator: Any,
    *,
    task: Task,
    classes: Sequence[str],
    positive_class: str | None,
    source: str = "reports/calibrator.json",
) -> None:
    """Raise ModelError naming `source` and the field when `calibrator` does not fit the model
    (another task, other classes) or is malformed."""

    def fail(what: str) -> ModelError:
        return ModelError(
            f"{source}: {what}",
            hint="the calibrator is written by the evaluate stage with the model: run "
            "`dvc repro` (or fetch the release again) so that the two belong together",
        )

    if not isinstance(calibrator, dict):
        raise fail(f"expected a JSON object, found {type(calibrator).__name__}")
    if calibrator.get("version") != CALIBRATOR_VERSION:
        raise fail(f"version: expected {CALIBRATOR_VERSION}, found {calibrator.get('version')!r}")
    if calibrator.get("task") != task:
        raise fail(f"task: the model's task is {task}, found {calibrator.get('task')!r}")
    if task == "regression":
        return
    if calibrator.get("method") != METHOD:
        raise fail(f"method: expected {METHOD!r}, found {calibrator.get('method')!r}")
    found = calibrator.get("classes")
    if found != [str(c) for c in classes]:
        raise fail(f"classes: the model's are {list(classes)}, found {found!r}")
    if task == "binary" and calibrator.get("positive_class") != positive_class:
        raise fail(
            f"positive_class: the model's is {positive_class!r}, "
            f"found {calibrator.get('positive_class')!r}"
        )
    wanted = [positive_class] if task == "binary" else list(classes)
    curves = calibrator.get("curves")
    for label in wanted:
        curve = curves.get(label) if isinstance(curves, dict) else None
        xs = curve.get("thresholds") if isinstance(curve, dict) else None
        ys = curve.get("values") if isinstance(curve, dict) else None
        if not isinstance(xs, list) or not isinstance(ys, list) or not xs or len(xs) != len(ys):
            raise fail(f"curves.{label}: expected equally long, non-empty thresholds and values")
        try:
            x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
        except (TypeError, ValueError) as err:
            raise fail(f"curves.{label}: thresholds and values must be numbers") from err
        if np.any(np.diff(x) < 0) or np.any(np.diff(y) < 0) or y.min() < 0 or y.max() > 1:
            raise fail(f"curves.{label}: thresholds and values must be non-decreasing, values 0-1")


def calibrate(calibrator: dict[str, Any], scores: np.ndarray) -> np.ndarray:
    """Calibrated probabilities of `scores` (binary: of the positive class, (rows,); multiclass:
    (rows, classes) in the calibrator's class order, each row summing to 1)."""
    scores = np.asarray(scores, dtype=float)
    curves = calibrator["curves"]
    if calibrator["task"] == "binary":
        return _apply(curves[calibrator["positive_class"]], scores.reshape(-1))
    classes = calibrator["classes"]
    proba = np.stack([_apply(curves[c], scores[:, i]) for i, c in enumerate(classes)], axis=1)
    total = proba.sum(axis=1, keepdims=True)
    # a row every class curve maps to 0 keeps the model's own probabilities
    fallback = scores / np.maximum(scores.sum(axis=1, keepdims=True), np.finfo(float).tiny)
    return np.where(total > 0, proba / np.where(total > 0, total, 1.0), fallback)


def _apply(curve: dict[str, list[float]], scores: np.ndarray) -> np.ndarray:
    return np.interp(scores, curve["thresholds"], curve["values"])
