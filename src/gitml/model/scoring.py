"""Score tables with a fitted pipeline: the one code path for evaluate, batch and HTTP scoring."""

from __future__ import annotations

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
