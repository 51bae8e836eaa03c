"""Performance before labels arrive: confidence-based performance estimation (CBPE).

A classifier's score, mapped through the calibrator fitted on the held-out split at evaluate
time (`gitml.evaluate.calibrator`), is the probability that the row is positive (binary) or of each
class (multiclass). Summed over a window's rows, those probabilities give the expected
confusion matrix, and the metrics of it: the point estimates. Their predictive interval
comes from labels simulated from the same probabilities (seeded): the spread of the metric
that the window's true labels would have if the assumptions below hold. Once labels arrive,
the realised metric should lie inside that interval; when it does not, the relation between
inputs and target has changed (concept drift) or the class mix has (label shift).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from gitml.config.schema import MonitorParams
from gitml.errors import DataError
from gitml.evaluate.calibrator import calibrate, check_calibrator
from gitml.evaluate.metrics import TaskOutputs, task_metric_arrays
from gitml.monitor.result import MetricValue
from gitml.review.bootstrap import label_weight_metrics, percentile_intervals, point_value
from gitml.tasks import Task, score_column

__all__ = ["ASSUMPTIONS", "ESTIMATED", "estimate_metrics"]

# Stated in every monitoring report (monitor.json "assumptions") and in
# docs/monitoring-performance.md.
ASSUMPTIONS: list[str] = [
    "Estimated performance assumes the scores stay calibrated as they were on the held-out "
    "test split, where the calibrator (reports/calibrator.json) was fitted.",
    "It assumes no concept drift: the relation between inputs and target, P(y | x), is "
    "unchanged since training. Concept drift makes the estimate wrong without warning; only "
    "labels reveal it (realised outside the estimated interval).",
    "Label shift (the class mix changing for reasons the inputs do not show) breaks it too.",
    "An estimate covers every row of its window, labelled or not; realised metrics cover the "
    "labelled rows only.",
]

# What is estimated per task, in display order. Binary adds the expected confusion counts.
ESTIMATED: dict[Task, tuple[str, ...]] = {
    "binary": ("roc_auc", "f1", "precision", "recall", "accuracy"),
    "multiclass": ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc_ovr"),
    "regression": (),
}
CONFUSION = ("true_positives", "false_positives", "false_negatives", "true_negatives")
# labels are simulated for at most this many rows of a window; the spread is scaled beyond
SIMULATED_ROWS = 20_000
POINT_ROWS = 1_000_000  # point estimates: every row up to this many, a seeded subset beyond
# working memory of one chunk of simulated label sets (about ten float arrays of its size)
_MEMORY_BUDGET = 100 * 2**20
_BYTES_PER_CELL = 10 * 8


def estimate_metrics(
    scored: pd.DataFrame,
    calibrator: dict[str, Any] | None,
    *,
    task: Task,
    classes: Sequence[str],
    positive_class: str | None,
    threshold: float,
    params: MonitorParams,
) -> list[MetricValue]:
    """The expected metrics of `scored`'s rows (all of them, labelled or not), each with its
    predictive interval at `params.performance.confidence`; [] for a regressor or without a
    calibrator. Raises ModelError when the calibrator belongs to another model."""
    if task == "regression" or calibrator is None or not len(scored):
        return []
    check_calibrator(calibrator, task=task, classes=classes, positive_class=positive_class)
    perf = params.performance
    if task == "binary":
        score = output_column(scored, "score")
        score = score[np.isfinite(score)]
        p = calibrate(calibrator, score)

        def estimate(rows: np.ndarray, resamples: int) -> dict[str, tuple[float, np.ndarray]]:
            return _estimate_binary(score[rows], p[rows], threshold, resamples, perf.seed)

        size = len(score)
    else:
        raw = np.column_stack([output_column(scored, score_column(c)) for c in classes])
        raw = raw[np.isfinite(raw).all(axis=1)]
        proba = calibrate(calibrator, raw)

        def estimate(rows: np.ndarray, resamples: int) -> dict[str, tuple[float, np.ndarray]]:
            return _estimate_multiclass(raw[rows], proba[rows], classes, resamples, perf.seed)

        size = len(raw)
    if not size:
        return []
    draws = _simulated(estimate, size, perf.resamples, perf.seed)
    intervals = percentile_intervals({n: v for n, (_, v) in draws.items()}, perf.confidence)
    return [
        MetricValue(name, point_value(point), *intervals[name])
        for name, (point, _) in draws.items()
    ]


def output_column(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A model output column of the scored rows as floats; DataError naming it if absent."""
    if name not in frame.columns:
        raise DataError(
            f"the scored rows have no {name!r} column (the model's output, as the prediction "
            f"log names it); found: {', '.join(map(str, frame.columns))}"
        )
    try:
        return pd.to_numeric(frame[name], errors="raise").to_numpy(dtype=float)
    except (TypeError, ValueError) as err:
        raise DataError(f"the scored rows' {name!r} column is not numbers ({err})") from err


def _simulated(
    estimate: Callable[[np.ndarray, int], dict[str, tuple[float, np.ndarray]]],
    rows: int,
    resamples: int,
    seed: int,
) -> dict[str, tuple[float, np.ndarray]]:
    """Each metric's point estimate and its simulated values.

    Beyond SIMULATED_ROWS rows, labels are simulated for a seeded random subset of that many
    rows, and the spread of each metric around the subset's point estimate is scaled to the
    window's size: by sqrt(subset / rows) for the metrics (averages over rows, whose spread
    shrinks as 1 / sqrt(rows)), by sqrt(rows / subset) for the confusion counts (sums).
    Point estimates use every row up to POINT_ROWS (a seeded subset beyond, counts scaled),
    which bounds memory: a multiclass point costs rows x classes² cells."""
    if rows <= SIMULATED_ROWS:
        return estimate(np.arange(rows), resamples)
    points = estimate(subset_rows(rows, POINT_ROWS, seed), 0)
    pick = subset_rows(rows, SIMULATED_ROWS, seed)
    out = {}
    for name, (point, simulated) in estimate(pick, resamples).items():
        counts = name in CONFUSION
        full = points[name][0] * (rows / min(rows, POINT_ROWS) if counts else 1.0)
        ratio = rows / SIMULATED_ROWS if counts else SIMULATED_ROWS / rows
        out[name] = (full, full + (simulated - point) * np.sqrt(ratio))
    return out


def subset_rows(rows: int, size: int, seed: int) -> np.ndarray:
    """All rows, or a seeded random subset of `size` of them, in order."""
    if rows <= size:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, size, replace=False))


def _estimate_binary(
    score: np.ndarray, p: np.ndarray, threshold: float, resamples: int, seed: int
) -> dict[str, tuple[float, np.ndarray]]:
    """Point estimate and simulated values of each binary metric and confusion count."""
    names = ESTIMATED["binary"]
    predicted = score >= threshold
    point = label_weight_metrics(
        score, p[None, :], 1 - p[None, :], threshold=threshold, names=names
    )
    values = {name: np.empty(resamples) for name in (*names, *CONFUSION)}
    for start, u in _uniforms(len(score), resamples, seed, width=2):
        positive = (u < p).astype(float)
        drawn = label_weight_metrics(
            score, positive, 1 - positive, threshold=threshold, names=names
        )
        tp = positive[:, predicted].sum(axis=1)
        fn = positive.sum(axis=1) - tp
        fp = np.count_nonzero(predicted) - tp
        tn = len(score) - tp - fn - fp
        for name, array in (*drawn.items(), *zip(CONFUSION, (tp, fp, fn, tn), strict=True)):
            values[name][start : start + len(u)] = array
    expected_tp = float(p[predicted].sum())
    expected = {
        "true_positives": expected_tp,
        "false_positives": float(np.count_nonzero(predicted)) - expected_tp,
        "false_negatives": float(p[~predicted].sum()),
        "true_negatives": float((1 - p[~predicted]).sum()),
    }
    points = {name: float(point[name][0]) for name in names} | expected
    return {name: (points[name], values[name]) for name in values}


def _estimate_multiclass(
    raw: np.ndarray, proba: np.ndarray, classes: Sequence[str], resamples: int, seed: int
) -> dict[str, tuple[float, np.ndarray]]:
    """Point estimate and simulated values of each multiclass metric.

    Each row is counted once as every class, weighted by its probability of being that class
    (point estimate) or by whether the simulated label is that class: the metric code of
    `gitml.evaluate.metrics` with weights, one implementation."""
    names = ESTIMATED["multiclass"]
    rows, width = raw.shape
    expanded = TaskOutputs(
        "multiclass",
        np.tile(np.arange(width), rows),
        np.repeat(raw, width, axis=0),
        tuple(str(c) for c in classes),
    )
    point = task_metric_arrays(expanded, proba.reshape(1, -1), names)
    cumulative = np.cumsum(proba, axis=1)[:, :-1]
    values = {name: np.empty(resamples) for name in names}
    for start, u in _uniforms(rows, resamples, seed, width=width * width):
        label = (u[:, :, None] >= cumulative[None, :, :]).sum(axis=2)
        weights = (label[:, :, None] == np.arange(width)).reshape(len(u), rows * width)
        drawn = task_metric_arrays(expanded, weights.astype(float), names)
        for name in names:
            values[name][start : start + len(u)] = drawn[name]
    return {name: (float(point[name][0]), values[name]) for name in names}


def _uniforms(
    rows: int, resamples: int, seed: int, *, width: int
) -> Iterator[tuple[int, np.ndarray]]:
    """(first simulation, uniforms (chunk, rows)): simulation i depends only on `seed` and i,
    so the chunk size (set by the memory budget) never changes the result."""
    children = np.random.SeedSequence(seed).spawn(resamples)
    chunk = max(1, _MEMORY_BUDGET // (_BYTES_PER_CELL * max(rows, 1) * width))
    for start in range(0, resamples, chunk):
        part = children[start : start + chunk]
        yield start, np.stack([np.random.default_rng(c).random(rows) for c in part])
