"""Score tables with a fitted pipeline: the one code path for evaluate, batch and HTTP scoring."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gitml.errors import InputError, ModelError
from gitml.tasks import Task

if TYPE_CHECKING:  # checking a matrix (`check_matrix`) needs neither: batch scoring's fast start
    import pandas as pd
    from sklearn.pipeline import Pipeline


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
    """Probability of the positive class for every row of `frame` (a binary model).

    Raises InputError naming the row and field when preprocessing turns a value into one the
    estimator cannot score (`check_features`), instead of scikit-learn's ValueError.
    """
    column = positive_index(pipeline, positive_class)
    return predict_frame(pipeline, frame, features=features, task="binary")[:, column]


def predict_frame(
    pipeline: Pipeline, frame: pd.DataFrame, *, features: list[str], task: Task
) -> np.ndarray:
    """What the model says about every row of `frame`, for its task (`gitml.tasks`).

    Classification (binary, multiclass): `predict_proba`, shape (rows, classes), in the order
    of `pipeline.classes_`. Regression: `predict`, shape (rows,). The one code path for
    evaluate, review, batch and HTTP scoring; InputError as in `score_frame`.
    """
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise ModelError(f"cannot score: input lacks the model's columns {missing}")
    X = frame[features]
    if task == "regression":
        if len(pipeline.steps) < 2:
            return np.asarray(pipeline.predict(X), dtype=float)
    elif len(pipeline.steps) < 2:
        return pipeline.predict_proba(X)
    # what the Pipeline would do, with a look at the matrix between the two halves
    matrix = pipeline[:-1].transform(X)
    estimator = pipeline.steps[-1][1]
    # the fields are only worked out to name a problem: nothing extra per request
    check_features(estimator, matrix, lambda: feature_fields(pipeline), frame=frame)
    if task == "regression":
        return np.asarray(estimator.predict(matrix), dtype=float)
    return estimator.predict_proba(matrix)


FINITE_RULE = "finite_after_preprocessing"
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def feature_fields(pipeline: Pipeline) -> list[tuple[str, ...]]:
    """For each column of the preprocessed matrix, the input fields it is computed from."""
    from sklearn.compose import ColumnTransformer

    from gitml.model.encoding import CategoryEncoder

    pre = pipeline.steps[0][1]
    names = tuple(str(c) for c in getattr(pipeline, "feature_names_in_", []))
    out: list[tuple[str, ...]] = []
    if isinstance(pre, ColumnTransformer) and hasattr(pre, "output_indices_"):
        for name, step, columns in pre.transformers_:
            part = pre.output_indices_.get(name, slice(0, 0))
            width = part.stop - part.start
            if width <= 0:
                continue
            fields = [str(c) for c in columns]
            if isinstance(step, CategoryEncoder) and step.output == "onehot":
                out += [(f,) for f, cats in zip(fields, step.categories, strict=True) for _ in cats]
            elif width == len(fields):
                out += [(f,) for f in fields]
            else:
                out += [tuple(fields)] * width
    else:
        width = len(pipeline[:-1].get_feature_names_out())
        out = [names] * width
    return out


@dataclass(frozen=True)
class EstimatorTraits:
    """What `check_matrix` needs to know about an estimator: its name (for messages), whether
    it scores NaN, and whether it computes in float32. Plain values, so a fast path kept
    without the estimator (`gitml.serve.fastpath_cache`) checks its matrix alike."""

    name: str
    allows_nan: bool
    float32: bool


def traits_of(estimator: Any) -> EstimatorTraits:
    return EstimatorTraits(type(estimator).__name__, _allows_nan(estimator), _float32(estimator))


def check_features(
    estimator: Any,
    matrix: np.ndarray,
    fields: Sequence[tuple[str, ...]] | Callable[[], Sequence[tuple[str, ...]]],
    *,
    frame: pd.DataFrame | None = None,
) -> None:
    """Raise InputError for rows whose preprocessed features the estimator cannot score.

    Infinite features (e.g. 1e308 standardised) are refused for every estimator, NaN for
    estimators without missing-value support, and values beyond float32 for tree ensembles,
    which compute in float32. Each problem names the record (row position) and input field,
    in the shape the API reports every other broken rule. `fields` (one tuple of input
    fields per matrix column) may be given as a function, called only to name a problem.
    """
    check_matrix(traits_of(estimator), matrix, fields, frame=frame)


def check_matrix(
    traits: EstimatorTraits,
    matrix: np.ndarray,
    fields: Sequence[tuple[str, ...]] | Callable[[], Sequence[tuple[str, ...]]],
    *,
    frame: pd.DataFrame | None = None,
) -> None:
    """`check_features` for an estimator known by its traits."""
    matrix = np.asarray(matrix)
    if matrix.dtype.kind != "f":
        return
    float32 = traits.float32
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(matrix)
        too_big = finite & (np.abs(matrix) > _FLOAT32_MAX) if float32 else None
        if finite.all() and (too_big is None or not too_big.any()):
            return  # the common case
        nan = np.isnan(matrix)
        problems = ~finite & ~nan
        if not traits.allows_nan:
            problems |= nan
        if too_big is not None:
            problems |= too_big
    if not problems.any():
        return
    if callable(fields):
        fields = fields()
    found: dict[tuple[int, str], str] = {}
    for row, col in zip(*np.nonzero(problems), strict=True):
        value = matrix[row, col]
        if np.isnan(value):
            reason = f"becomes NaN after preprocessing, which {traits.name} cannot score"
        elif np.isinf(value):
            reason = "becomes infinite after preprocessing (too large for the model's arithmetic)"
        else:
            reason = (
                f"becomes {value:.3g} after preprocessing, beyond the float32 range "
                f"{traits.name} computes in"
            )
        for field in fields[col] if col < len(fields) else ("(unknown)",):
            found.setdefault((int(row), field), reason)
    problems_list = [
        {
            "record": row,
            "field": field,
            "rule": FINITE_RULE,
            "reason": reason,
            "value": _value(frame, row, field),
        }
        for (row, field), reason in sorted(found.items())
    ]
    first = problems_list[0]
    more = f" (and {len(problems_list) - 1} more)" if len(problems_list) > 1 else ""
    raise InputError(
        f"record {first['record']}: field {first['field']!r}: {first['reason']}{more}",
        problems=problems_list,
    )


def _allows_nan(estimator: Any) -> bool:
    try:
        return bool(estimator.__sklearn_tags__().input_tags.allow_nan)
    except AttributeError:
        return False


def _float32(estimator: Any) -> bool:
    """Trees and forests cast their input to float32."""
    module = type(estimator).__module__
    return module.startswith(("sklearn.tree", "sklearn.ensemble._forest", "sklearn.ensemble._gb"))


def _value(frame: pd.DataFrame | None, row: int, field: str) -> Any:
    if frame is None or field not in frame.columns:
        return None
    value = frame[field].iloc[row]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if np.isfinite(value) else str(value)
    return None if value is None or value != value else str(value)


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
