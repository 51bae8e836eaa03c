"""Score tables with a fitted pipeline: the one code path for evaluate, batch and HTTP scoring."""

from __future__ import annotations

import statistics
import time

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from gitml.errors import ModelError


def positive_index(pipeline: Pipeline, positive_class: str) -> int:
    """Column of `predict_proba` that holds the positive class."""
    classes = [str(c) for c in pipeline.classes_]
    if positive_class not in classes:
        raise ModelError(
            f"the model's classes {classes} do not include the positive class {positive_class!r}"
        )
    return classes.index(positive_class)


def score_frame(
    pipeline: Pipeline, frame: pd.DataFrame, *, features: list[str], positive_class: str
) -> np.ndarray:
    """Probability of the positive class for every row of `frame`."""
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise ModelError(f"cannot score: input lacks the model's columns {missing}")
    column = positive_index(pipeline, positive_class)
    return pipeline.predict_proba(frame[features])[:, column]


def fix_summation_order(pipeline: Pipeline) -> Pipeline:
    """`pipeline`, set to predict with one thread where threads would add up partial results.

    A random forest with n_jobs > 1 adds its trees' probabilities in whatever order the
    threads finish, so the last bits of its scores change from run to run; in tree order, the
    scores (and every committed output computed from them) are the same on every run.
    """
    estimator = pipeline.steps[-1][1]
    if "n_jobs" in estimator.get_params(deep=False) and hasattr(estimator, "estimators_"):
        estimator.set_params(n_jobs=1)
    return pipeline


def time_prediction(
    pipeline: Pipeline,
    frame: pd.DataFrame,
    *,
    features: list[str],
    rows: int = 1000,
    repeats: int = 5,
) -> float:
    """Median milliseconds for `predict_proba` on `rows` rows (a serving budget in the gate)."""
    batch = frame[features].iloc[:rows]
    if batch.empty:
        raise ModelError("cannot time predictions on an empty table")
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        pipeline.predict_proba(batch)
        timings.append(time.perf_counter() - started)
    per_row_ms = statistics.median(timings) * 1000 / len(batch)
    return round(per_row_ms * 1000, 3)
