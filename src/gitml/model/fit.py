"""Fit the pipeline on training data and describe the run (metadata for lineage and review)."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from gitml.config.schema import Params
from gitml.errors import ModelError
from gitml.model.build import build_pipeline
from gitml.tasks import is_classification

_LIBRARIES = ("scikit-learn", "pandas", "numpy", "pyarrow", "skops", "gitml")


@dataclass(frozen=True)
class FitResult:
    pipeline: Pipeline
    fit_seconds: float
    rows: int
    class_counts: dict[str, int]  # empty for regression


def fit_pipeline(params: Params, train: pd.DataFrame) -> FitResult:
    """Build the configured pipeline and fit it on the declared features of `train`.

    Classifiers (binary, multiclass) learn the target's category strings; a regressor learns
    its numbers as float64.
    """
    data = params.data
    missing = [c for c in [*data.features, data.target] if c not in train.columns]
    if missing:
        raise ModelError(f"training data lacks declared columns {missing}")
    pipeline = build_pipeline(params.model, data)
    if not is_classification(data.task):
        y = pd.to_numeric(train[data.target], errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(y).all():
            bad = np.flatnonzero(~np.isfinite(y))
            raise ModelError(
                f"regression target {data.target!r} must be a finite number in every training "
                f"row; {len(bad)} row(s) are not (first: row {int(bad[0]) + 1}, "
                f"{train[data.target].iloc[int(bad[0])]!r})",
                hint="run the validate stage: it names every such row",
            )
        return _fit(params, pipeline, train, y, class_counts={})
    y, class_counts = _class_labels(train[data.target])
    return _fit(params, pipeline, train, y, class_counts=class_counts)


def _class_labels(column: pd.Series) -> tuple[np.ndarray, dict[str, int]]:
    """The target as fixed-width numpy strings, and the rows per class (sorted by class).

    Fixed-width: scikit-learn's label handling sorts and maps Python string objects
    otherwise, which costs seconds on large tables. A Categorical without missing values is
    read off its codes, never one string per row; the width is the longest class present,
    as `astype(str)` gives, since the model stores the classes with their dtype.
    """
    if isinstance(column.dtype, pd.CategoricalDtype) and not column.isna().any():
        codes = column.cat.codes.to_numpy()
        names = np.asarray([str(c) for c in column.cat.categories], dtype=object)
        counts = np.bincount(codes, minlength=len(names))
        seen = np.flatnonzero(counts)
        width = max((len(names[i]) for i in seen), default=1)
        y = names.astype(f"<U{width}")[codes]
        order = sorted(seen, key=lambda i: names[i])
        return y, {str(names[i]): int(counts[i]) for i in order}
    y = column.astype(str).to_numpy(dtype=str)
    labels, counts = np.unique(y, return_counts=True)
    return y, {str(k): int(v) for k, v in zip(labels, counts, strict=True)}


def _fit(
    params: Params,
    pipeline: Pipeline,
    train: pd.DataFrame,
    y: np.ndarray,
    *,
    class_counts: dict[str, int],
) -> FitResult:
    data = params.data
    started = time.perf_counter()
    try:
        pipeline.fit(train[data.features], y)
    except ValueError as err:
        raise ModelError(f"fitting {params.model.name} failed: {err}") from err
    fit_seconds = round(time.perf_counter() - started, 3)
    return FitResult(
        pipeline=pipeline, fit_seconds=fit_seconds, rows=len(train), class_counts=class_counts
    )


def training_metadata(
    params: Params,
    result: FitResult,
    *,
    model_bytes: int,
    model_sha256: str,
    train_sha256: str,
    profile: dict[str, Any],
) -> dict[str, Any]:
    """What review, the registry and the model card need to know about this training run.

    Only what the inputs determine: no fit time, no date. The file is committed, and a re-run
    of the same commit must reproduce it byte for byte (the stage prints the fit time).
    `training.class_counts` is there for classification; a regression target's distribution
    is its entry in `training.profile`.
    """
    training: dict[str, Any] = {"rows": result.rows}
    if is_classification(params.data.task):
        training["class_counts"] = result.class_counts
    training |= {
        "data_sha256": train_sha256,
        # column profiles: review compares them across revisions, monitoring uses them
        # as the reference distribution
        "profile": profile,
    }
    return {
        "model_name": params.project.model_name,
        "estimator": params.model.name,
        "hyperparameters": params.model.params.model_dump(),
        "preprocessing": params.model.preprocessing.model_dump(),
        "features": list(params.data.features),
        "training": training,
        "model_file": {"bytes": model_bytes, "sha256": model_sha256, "format": "skops"},
        "versions": {"python": platform.python_version(), **_versions()},
    }


def _versions() -> dict[str, str]:
    found = {}
    for name in _LIBRARIES:
        try:
            found[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            found[name] = "unknown"
    return found
