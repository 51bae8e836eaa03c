"""Permutation importance of a model's input columns, with paired bootstrap intervals.

How much worse the task's primary metric gets when one *input* column's values are shuffled
among the test rows, the whole pipeline scoring each shuffled table (so a one-hot encoded
column counts once, as the column a user sends). Signed so that > 0 means the model relies
on the column, whichever direction the metric improves in.

Cost: one scoring pass per column and repeat, plus a bootstrap that is O(rows) per resample
and column: resample i draws its rows (as `gitml.review.bootstrap` does) and one of the
repeats, and compares the metric of the original and of that repeat's shuffled scores on the
same drawn rows (paired). Above `max_rows` rows a seeded subsample of `max_rows` is used, and
the result says so. Every random choice comes from the seed: the same inputs give the same
bytes, whatever the chunk size.

Here, not in `gitml.evaluate`: the weighted metrics of every task and the seeded row draws
live in `gitml.review.bootstrap` (binary) and `gitml.evaluate.metrics`, and scoring in
`gitml.model`; review is the lowest layer that may import all three.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from gitml.errors import DataError
from gitml.evaluate.metrics import TaskOutputs, task_metric_arrays
from gitml.model.scoring import positive_index, predict_frame
from gitml.review.bootstrap import (
    label_weight_metrics,
    percentile_intervals,
    point_value,
    weight_chunks,
)
from gitml.tasks import PRIMARY_METRIC, Task, higher_is_better

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

IMPORTANCE_VERSION = 1
# Independent random streams, each seeded by (seed, stream): the row draws of the bootstrap
# use the seed alone, as the card's and the review's do.
_SUBSAMPLE, _PERMUTE, _PICK = 1, 2, 3

Metric = Callable[[np.ndarray, np.ndarray], np.ndarray]


def permutation_importance(
    pipeline: Pipeline,
    frame: pd.DataFrame,
    *,
    features: Sequence[str],
    task: Task,
    target: str,
    positive_class: str | None = None,
    repeats: int = 5,
    resamples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    max_rows: int = 50_000,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """Importance of every column of `features` on the rows of `frame` (which holds `target`).

    Returns the body of `reports/importance.json` (the contract in the README) from `task` on:
    metric, direction, the unshuffled score, rows (test, used, subsampled, max_rows), repeats,
    bootstrap settings, seed and the columns ranked by importance (ties by name), each with
    its percentile interval. `chunk_size` (resamples at once) only bounds memory.
    """
    _check_settings(repeats, resamples, confidence, max_rows, features, frame, target)
    total = len(frame)
    if total > max_rows:
        keep = np.random.default_rng([seed, _SUBSAMPLE]).choice(total, max_rows, replace=False)
        frame = frame.iloc[np.sort(keep)]
    n = len(frame)
    metric = PRIMARY_METRIC[task]
    sign = 1.0 if higher_is_better(metric) else -1.0
    measure, width = _metric_of(pipeline, frame, task=task, target=target, positive=positive_class)
    score = _scorer(pipeline, features=list(features), task=task, positive=positive_class)
    table = frame[list(features)].copy()
    original = score(table)
    shuffled = {
        column: _shuffled(table, column, i, repeats, seed, score)
        for i, column in enumerate(features)
    }
    ones = np.ones((1, n))
    base = float(measure(original, ones)[0])
    if not np.isfinite(base):
        raise DataError(
            f"{metric} is undefined on the {n:,} test rows used (e.g. one class only): "
            "permutation importance needs a defined primary metric"
        )
    points = {
        c: float(np.mean([sign * (base - measure(out, ones)[0]) for out in outs]))
        for c, outs in shuffled.items()
    }
    picks = np.random.default_rng([seed, _PICK]).integers(0, repeats, size=resamples)
    drawn = {c: np.empty(resamples) for c in features}
    for start, weights in weight_chunks(n, resamples, seed, chunk_size=chunk_size, width=width):
        chunk = picks[start : start + len(weights)]
        before = measure(original, weights)
        for column, outs in shuffled.items():
            values = drawn[column][start : start + len(weights)]
            for r in np.unique(chunk):
                mask = chunk == r
                values[mask] = sign * (before[mask] - measure(outs[r], weights[mask]))
    intervals = percentile_intervals(drawn, confidence)
    return {
        "task": task,
        "metric": metric,
        "higher_is_better": sign > 0,
        "score": point_value(base),
        "rows": {"test": total, "used": n, "subsampled": n < total, "max_rows": max_rows},
        "repeats": repeats,
        "bootstrap": {"resamples": resamples, "confidence": confidence},
        "seed": seed,
        "columns": _ranked(points, intervals),
    }


def _check_settings(
    repeats: int,
    resamples: int,
    confidence: float,
    max_rows: int,
    features: Sequence[str],
    frame: pd.DataFrame,
    target: str,
) -> None:
    if repeats < 1 or resamples < 1 or max_rows < 2:
        raise ValueError(
            f"need repeats >= 1, resamples >= 1 and max_rows >= 2, got {repeats}, {resamples} "
            f"and {max_rows}"
        )
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")
    missing = [c for c in [*features, target] if c not in frame.columns]
    if missing:
        raise DataError(f"the test rows lack the model's columns {missing}")
    if len(frame) < 2:
        raise DataError(f"permutation importance needs at least 2 test rows, got {len(frame)}")


def _scorer(
    pipeline: Pipeline, *, features: list[str], task: Task, positive: str | None
) -> Callable[[pd.DataFrame], np.ndarray]:
    """What the metric reads from the pipeline: the positive class's probability (binary),
    every class's probability (multiclass) or the predicted value (regression)."""
    column = positive_index(pipeline, positive) if task == "binary" and positive else None

    def score(table: pd.DataFrame) -> np.ndarray:
        output = predict_frame(pipeline, table, features=features, task=task)
        return output[:, column] if column is not None else np.asarray(output, dtype=float)

    return score


def _metric_of(
    pipeline: Pipeline, frame: pd.DataFrame, *, task: Task, target: str, positive: str | None
) -> tuple[Metric, int]:
    """The primary metric of an output under each row of a weight matrix (k, rows), and how
    many arrays per row it holds (for the memory budget of the bootstrap)."""
    metric = PRIMARY_METRIC[task]
    truth = frame[target]
    if task == "binary":
        if positive is None:
            raise ValueError("a binary task needs its positive class")
        y = (truth.astype(str) == positive).to_numpy(dtype=float)

        def binary(output: np.ndarray, weights: np.ndarray) -> np.ndarray:
            # the threshold plays no part in a ranking metric
            return label_weight_metrics(
                output, weights * y, weights * (1 - y), threshold=0.5, names=[metric]
            )[metric]

        return binary, 1
    if task == "multiclass":
        classes = tuple(str(c) for c in pipeline.classes_)
        index = {c: i for i, c in enumerate(classes)}
        actual = np.array([index.get(str(v), -1) for v in truth], dtype=np.intp)
    else:
        actual, classes = truth.to_numpy(dtype=float), ()

    def other(output: np.ndarray, weights: np.ndarray) -> np.ndarray:
        outputs = TaskOutputs(task, actual, output, classes)
        return task_metric_arrays(outputs, weights, [metric])[metric]

    return other, max(1, len(classes))


def _shuffled(
    table: pd.DataFrame,
    column: str,
    position: int,
    repeats: int,
    seed: int,
    score: Callable[[pd.DataFrame], np.ndarray],
) -> list[np.ndarray]:
    """The scores of `table` with `column` shuffled, once per repeat (the table is restored).

    Each shuffle is seeded by (seed, column position, repeat): independent of the others.
    """
    kept = table[column]
    values = kept.array  # keeps the dtype (categorical, nullable) the pipeline expects
    outputs = []
    try:
        for r in range(repeats):
            order = np.random.default_rng([seed, _PERMUTE, position, r]).permutation(len(table))
            table[column] = type(kept)(values.take(order), index=table.index, name=column)
            outputs.append(score(table))
    finally:
        table[column] = kept
    return outputs


def _ranked(
    points: dict[str, float], intervals: dict[str, tuple[float | None, float | None]]
) -> list[dict[str, Any]]:
    """Columns by importance, largest first (an undefined one last), ties by name; rank 1-based."""
    values = {c: point_value(v) for c, v in points.items()}
    order = sorted(values, key=lambda c: (-_or_lowest(values[c]), c))
    return [
        {
            "name": c,
            "rank": i,
            "importance": values[c],
            "low": intervals[c][0],
            "high": intervals[c][1],
        }
        for i, c in enumerate(order, start=1)
    ]


def _or_lowest(value: float | None) -> float:
    return -np.inf if value is None else value
