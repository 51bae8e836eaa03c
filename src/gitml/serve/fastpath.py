"""A faster path for small requests, derived from the fitted pipeline and checked against it.

A one-row `predict_proba` on the pipeline costs a few milliseconds, nearly all of it pandas
and scikit-learn input handling (ColumnTransformer's column selection, `check_array`,
per-column encoder checks), not arithmetic. For small requests the server instead applies
the pipeline's own fitted parameters with numpy: the category codes it already holds become
the encoder's one-hot or ordinal columns, then each fitted scaler and imputer is applied as
scikit-learn applies it (`X -= mean_`, `X /= scale_`, NaN replaced by `statistics_`), and
the pipeline's own fitted estimator scores the matrix.

Nothing here is configured separately: every number comes from the loaded pipeline object.
Only step types whose transform is exactly this arithmetic are supported; any other
pipeline gets no fast path. At start-up the fast path must reproduce the pipeline's
probabilities on probe rows built from the signature (every category, unknowns, bounds,
nulls) to within 1e-12, or it is not used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gitml.serve.inputs import Columns, InputSchema

PARITY_TOLERANCE = 1e-12
Block = Callable[[Columns], np.ndarray]


def compile_fast_path(
    pipeline: Any, schema: InputSchema, positive_class: str
) -> Callable[[Columns], np.ndarray] | None:
    """Scores of the positive class for checked columns, or None if the pipeline has a step
    this module cannot reproduce exactly."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
        return None
    pre, estimator = pipeline.steps[0][1], pipeline.steps[1][1]
    if not isinstance(pre, ColumnTransformer) or getattr(pre, "sparse_output_", True):
        return None
    if _output_config(pre) != "default" or not hasattr(estimator, "predict_proba"):
        return None
    rules = {r.name: r for r in schema.fields}
    blocks: list[Block] = []
    for _, step, columns in pre.transformers_:
        if isinstance(step, str) and step == "drop":
            continue
        names = [str(c) for c in columns]
        if not names or any(n not in rules for n in names):
            return None
        block = _block(step, names, rules)
        if block is None:
            return None
        blocks.append(block)
    classes = [str(c) for c in estimator.classes_]
    if positive_class not in classes:
        return None
    column = classes.index(positive_class)

    def score(columns: Columns) -> np.ndarray:
        matrix = np.hstack([block(columns) for block in blocks])
        return estimator.predict_proba(matrix)[:, column]

    return score


def verify_fast_path(
    fast: Callable[[Columns], np.ndarray],
    reference: Callable[[Columns], np.ndarray],
    schema: InputSchema,
) -> float:
    """Largest difference between the fast path and the pipeline on probe rows."""
    probe = probe_columns(schema)
    return float(np.max(np.abs(fast(probe) - reference(probe))))


def probe_columns(schema: InputSchema, rows: int = 48) -> Columns:
    """Rows that visit every category (and an unknown one), the bounds, allowed values, the
    middle of each range and, for nullable inputs, nulls."""
    index = np.arange(rows)
    values: dict[str, np.ndarray] = {}
    codes: dict[str, np.ndarray] = {}
    for rule in schema.fields:
        if rule.type == "category":
            cycle = np.arange(-1, len(rule.categories or ()))  # -1: unknown or null
            codes[rule.name] = cycle[index % len(cycle)].astype(np.int16)
            continue
        if rule.allowed is not None:
            pool = list(rule.allowed)
        else:
            low = rule.min if rule.min is not None else -1000.0
            high = rule.max if rule.max is not None else 1000.0
            pool = [low, high, (low + high) / 2, low + (high - low) / 7, low + (high - low) / 3]
            if rule.type == "int":
                pool = [float(np.floor(v)) for v in pool]
        if rule.nullable:
            pool.append(np.nan)
        spread = (index * 7 + len(values)) % len(pool)  # columns out of step with each other
        values[rule.name] = np.asarray(pool, dtype=np.float64)[spread]
    return Columns(n=rows, values=values, codes=codes)


def _output_config(step: Any) -> str:
    return str(getattr(step, "_sklearn_output_config", {}).get("transform", "default"))


def _block(step: Any, names: list[str], rules: dict[str, Any]) -> Block | None:
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from gitml.model.encoding import CategoryEncoder

    if isinstance(step, CategoryEncoder):
        return _encoder(step, names, rules)
    if any(rules[n].type == "category" for n in names):
        return None
    if _output_config(step) != "default":
        return None

    def numbers(columns: Columns) -> np.ndarray:
        return np.column_stack([columns.values[n] for n in names])

    if (isinstance(step, str) and step == "passthrough") or _is_identity(step):
        return numbers
    if isinstance(step, Pipeline):
        if any(isinstance(s, str) for _, s in step.steps):
            return None
        transforms = [_numeric(s) for _, s in step.steps]
    elif isinstance(step, StandardScaler | SimpleImputer):
        transforms = [_numeric(step)]
    else:
        return None
    if any(t is None for t in transforms):
        return None

    def apply(columns: Columns) -> np.ndarray:
        matrix = numbers(columns)
        for transform in transforms:
            matrix = transform(matrix)  # type: ignore[misc]
        return matrix

    return apply


def _is_identity(step: Any) -> bool:
    """The FunctionTransformer that a fitted ColumnTransformer puts in place of "passthrough"."""
    from sklearn.preprocessing import FunctionTransformer

    return (
        isinstance(step, FunctionTransformer)
        and step.func is None
        and not step.validate
        and _output_config(step) == "default"
    )


def _numeric(step: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler

    if isinstance(step, StandardScaler):
        mean = step.mean_ if step.with_mean else None
        scale = step.scale_ if step.with_std else None

        def standardise(x: np.ndarray) -> np.ndarray:
            x = x.copy()
            if mean is not None:
                x -= mean
            if scale is not None:
                x /= scale
            return x

        return standardise
    if isinstance(step, SimpleImputer):
        stats = np.asarray(step.statistics_, dtype=np.float64)
        missing = step.missing_values
        nan_marker = isinstance(missing, float) and np.isnan(missing)
        if not nan_marker or step.add_indicator or np.isnan(stats).any():
            return None

        def impute(x: np.ndarray) -> np.ndarray:
            x = x.copy()
            rows, cols = np.nonzero(np.isnan(x))
            x[rows, cols] = stats[cols]
            return x

        return impute
    return None


def _encoder(step: Any, names: list[str], rules: dict[str, Any]) -> Block | None:
    categories = [list(c) for c in step.categories]
    if len(categories) != len(names):
        return None
    for name, cats in zip(names, categories, strict=True):
        if rules[name].type != "category" or list(rules[name].categories or ()) != cats:
            return None  # codes are positions in the signature's lists: they must agree
    sizes = [len(c) for c in categories]
    if step.output == "ordinal":

        def ordinal(columns: Columns) -> np.ndarray:
            out = np.column_stack([columns.codes[n] for n in names]).astype(np.float64)
            out[out < 0] = np.nan
            return out

        return ordinal
    if step.output != "onehot":
        return None

    def onehot(columns: Columns) -> np.ndarray:
        out = np.zeros((columns.n, sum(sizes)), dtype=np.float64)
        start = 0
        for name, size in zip(names, sizes, strict=True):
            code = columns.codes[name]
            rows = np.flatnonzero(code >= 0)
            out[rows, start + code[rows]] = 1.0  # -1 (unknown or null): a row of zeros
            start += size
        return out

    return onehot
