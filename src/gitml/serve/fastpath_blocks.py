"""The fitted preprocessing of a pipeline as plain parameters, and its arithmetic with numpy.

`plan_preprocessing` reads each ColumnTransformer block of a fitted pipeline into a
`BlockPlan`: the declared categories' one-hot or ordinal columns, or numbers with their
fitted scaler and imputer steps (`mean_`, `scale_`, `statistics_`). `fill_block` applies a
plan as scikit-learn's fitted step does (`X -= mean_`, `X /= scale_`, NaN replaced by
`statistics_`), writing into one preallocated matrix. Only steps whose transform is exactly
this arithmetic get a plan; the fast path (`gitml.serve.fastpath`) that runs them is checked
against the pipeline before it is used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from gitml.serve.inputs import Columns, InputSchema
from gitml.tasks import Task


def plan_preprocessing(pipeline: Any, schema: InputSchema, *, task: Task) -> list[BlockPlan] | None:
    """The fitted preprocessing as plain parameters, one plan per ColumnTransformer block in
    its output order; None if a step is not one this module reproduces exactly."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
        return None
    pre, estimator = pipeline.steps[0][1], pipeline.steps[1][1]
    if not isinstance(pre, ColumnTransformer) or getattr(pre, "sparse_output_", True):
        return None
    method = "predict" if task == "regression" else "predict_proba"
    if _output_config(pre) != "default" or not hasattr(estimator, method):
        return None
    rules = {r.name: r for r in schema.fields}
    plans: list[BlockPlan] = []
    for _, step, columns in pre.transformers_:
        if isinstance(step, str) and step == "drop":
            continue
        names = [str(c) for c in columns]
        if not names or any(n not in rules for n in names):
            return None
        plan = _plan(step, names, rules)
        if plan is None:
            return None
        plans.append(plan)
    return plans


def _output_config(step: Any) -> str:
    return str(getattr(step, "_sklearn_output_config", {}).get("transform", "default"))


@dataclass(frozen=True)
class BlockPlan:
    """One ColumnTransformer block as plain parameters: its kind, input names and, for
    numbers, the fitted steps in order (`("standard", mean or None, scale or None)`,
    `("impute", statistics, None)`); for one-hot, each input's number of categories."""

    kind: Literal["onehot", "ordinal", "numeric"]
    names: tuple[str, ...]
    sizes: tuple[int, ...] = ()
    steps: tuple[tuple[str, np.ndarray | None, np.ndarray | None], ...] = ()


def fields_of(plans: Sequence[BlockPlan]) -> list[tuple[str, ...]]:
    """For each column of the matrix the plans make, the input field it comes from."""
    out: list[tuple[str, ...]] = []
    for plan in plans:
        if plan.kind == "onehot":
            sizes = zip(plan.names, plan.sizes, strict=True)
            out += [(n,) for n, size in sizes for _ in range(size)]
        else:
            out += [(n,) for n in plan.names]
    return out


def block_width(plan: BlockPlan) -> int:
    return sum(plan.sizes) if plan.kind == "onehot" else len(plan.names)


def fill_block(plan: BlockPlan) -> Callable[[Columns, np.ndarray, int], None]:
    """`run_block`, written into columns `begin`... of `matrix` (C-ordered, zeros where the
    block goes): one allocation for the whole matrix, no copies to join."""
    names = list(plan.names)
    width = block_width(plan)
    if plan.kind == "ordinal":

        def ordinal(columns: Columns, matrix: np.ndarray, begin: int) -> None:
            out = matrix[:, begin : begin + width]
            for k, name in enumerate(names):
                out[:, k] = columns.codes[name]
            out[out < 0] = np.nan

        return ordinal
    if plan.kind == "onehot":
        sizes = list(plan.sizes)

        def onehot(columns: Columns, matrix: np.ndarray, begin: int) -> None:
            flat = matrix.reshape(-1)  # a view: the matrix is C-ordered
            row_start = np.arange(columns.n, dtype=np.intp) * matrix.shape[1] + begin
            start = 0
            for name, size in zip(names, sizes, strict=True):
                code = columns.codes[name]
                known = code >= 0  # -1 (unknown or null): a row of zeros
                flat[(row_start + start + code)[known]] = 1.0
                start += size

        return onehot
    transforms = [_transform(*step) for step in plan.steps]

    def numbers(columns: Columns, matrix: np.ndarray, begin: int) -> None:
        out = matrix[:, begin : begin + width]
        for k, name in enumerate(names):
            out[:, k] = columns.values[name]
        for transform in transforms:
            transform(out)

    return numbers


def _transform(
    kind: str, first: np.ndarray | None, second: np.ndarray | None
) -> Callable[[np.ndarray], None]:
    """A fitted step's arithmetic, in place (on the matrix's own block)."""
    if kind == "standard":
        mean, scale = first, second

        def standardise(x: np.ndarray) -> None:
            if mean is not None:
                x -= mean
            if scale is not None:
                x /= scale

        return standardise
    stats = first

    def impute(x: np.ndarray) -> None:
        rows, cols = np.nonzero(np.isnan(x))
        x[rows, cols] = stats[cols]  # type: ignore[index]

    return impute


def _plan(step: Any, names: list[str], rules: dict[str, Any]) -> BlockPlan | None:
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
    if (isinstance(step, str) and step == "passthrough") or _is_identity(step):
        return BlockPlan("numeric", tuple(names))
    if isinstance(step, Pipeline):
        if any(isinstance(s, str) for _, s in step.steps):
            return None
        steps = [_numeric(s) for _, s in step.steps]
    elif isinstance(step, StandardScaler | SimpleImputer):
        steps = [_numeric(step)]
    else:
        return None
    if any(s is None for s in steps):
        return None
    return BlockPlan("numeric", tuple(names), steps=tuple(s for s in steps if s is not None))


def _is_identity(step: Any) -> bool:
    """The FunctionTransformer that a fitted ColumnTransformer puts in place of "passthrough"."""
    from sklearn.preprocessing import FunctionTransformer

    return (
        isinstance(step, FunctionTransformer)
        and step.func is None
        and not step.validate
        and _output_config(step) == "default"
    )


def _numeric(step: Any) -> tuple[str, np.ndarray | None, np.ndarray | None] | None:
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler

    if isinstance(step, StandardScaler):
        mean = step.mean_ if step.with_mean else None
        scale = step.scale_ if step.with_std else None
        return ("standard", mean, scale)
    if isinstance(step, SimpleImputer):
        stats = np.asarray(step.statistics_, dtype=np.float64)
        missing = step.missing_values
        nan_marker = isinstance(missing, float) and np.isnan(missing)
        if not nan_marker or step.add_indicator or np.isnan(stats).any():
            return None
        return ("impute", stats, None)
    return None


def _encoder(step: Any, names: list[str], rules: dict[str, Any]) -> BlockPlan | None:
    categories = [list(c) for c in step.categories]
    if len(categories) != len(names):
        return None
    for name, cats in zip(names, categories, strict=True):
        if rules[name].type != "category" or list(rules[name].categories or ()) != cats:
            return None  # codes are positions in the signature's lists: they must agree
    if step.output not in ("onehot", "ordinal"):
        return None
    return BlockPlan(step.output, tuple(names), sizes=tuple(len(c) for c in categories))
