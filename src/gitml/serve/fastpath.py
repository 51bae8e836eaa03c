"""A faster path for small requests and batch scoring, derived from the fitted pipeline and
checked against it.

A one-row `predict_proba` on the pipeline costs a few milliseconds, nearly all of it pandas
and scikit-learn input handling (ColumnTransformer's column selection, `check_array`,
per-column encoder checks), not arithmetic. For small requests the server instead applies
the pipeline's own fitted parameters with numpy: the category codes it already holds become
the encoder's one-hot or ordinal columns, then each fitted scaler and imputer is applied as
scikit-learn applies it (`X -= mean_`, `X /= scale_`, NaN replaced by `statistics_`), and
the pipeline's own fitted estimator scores the matrix: `predict_proba` for classification
(the positive class's column for binary, every column for multiclass), `predict` for
regression.

`gitml predict` scores every chunk this way, in blocks of BLOCK_ROWS rows (`build_fast_path`),
when the check passes. The preprocessing's plain parameters and their arithmetic live in
`gitml.serve.fastpath_blocks`.

Nothing here is configured separately: every number comes from the loaded pipeline object.
Only step types whose transform is exactly this arithmetic are supported; any other
pipeline gets no fast path. At start-up the fast path must reproduce the pipeline's
outputs (every probability, or the predicted value) on probe rows built from the signature
(every category, unknowns, bounds, nulls, +-1e308) to within 1e-12 and refuse the same
rows, or it is not used (`prepare_fast_path` fails closed and says why).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from gitml.errors import InputError
from gitml.serve.inputs import Columns, InputSchema
from gitml.tasks import Task

if TYPE_CHECKING:
    from gitml.model.scoring import EstimatorTraits
    from gitml.serve.fastpath_blocks import BlockPlan

PARITY_TOLERANCE = 1e-12
_REFUSAL_ROUNDS = 4


class CompiledFastPath(NamedTuple):
    """The served outputs for checked columns (`ServedModel.predict`: the positive class's
    probability, every class's probability, or the predicted value, by `task`), and the
    preprocessed matrix they score (what explanations read)."""

    score: Callable[[Columns], np.ndarray]
    matrix: Callable[[Columns], np.ndarray]


def compile_fast_path(
    pipeline: Any,
    schema: InputSchema,
    positive_class: str | None = None,
    *,
    task: Task = "binary",
    target: str = "target",
) -> CompiledFastPath | None:
    """The fast path of `pipeline`, or None if the pipeline has a step this module cannot
    reproduce exactly. Unchecked: `prepare_fast_path` is what vouches for it."""
    from gitml.model.scoring import traits_of
    from gitml.serve.fastpath_blocks import plan_preprocessing

    plans = plan_preprocessing(pipeline, schema, task=task)
    if plans is None:
        return None
    estimator = pipeline.steps[1][1]
    column: int | None = None
    if task == "binary":
        classes = [str(c) for c in estimator.classes_]
        if positive_class not in classes:
            return None
        column = classes.index(positive_class)
    method = estimator.predict if task == "regression" else estimator.predict_proba
    matrix_of = build_matrix(plans, traits_of(estimator), schema)
    score = _score_matrix(matrix_of, method, task=task, column=column, target=target)
    return CompiledFastPath(score, matrix_of)


def build_fast_path(
    plans: Sequence[BlockPlan],
    method: Callable[[np.ndarray], np.ndarray],
    traits: EstimatorTraits,
    schema: InputSchema,
    *,
    task: Task,
    column: int | None,
    target: str,
) -> Callable[[Columns], np.ndarray]:
    """The served outputs computed from `plans` and the estimator's `method` (predict_proba,
    or predict for regression): the one arithmetic both fast paths run."""
    matrix_of = build_matrix(plans, traits, schema)
    return _score_matrix(matrix_of, method, task=task, column=column, target=target)


def _score_matrix(
    matrix_of: Callable[[Columns], np.ndarray],
    method: Callable[[np.ndarray], np.ndarray],
    *,
    task: Task,
    column: int | None,
    target: str,
) -> Callable[[Columns], np.ndarray]:
    """`method` on `matrix_of`'s matrix: the served outputs, in blocks of BLOCK_ROWS rows."""
    from gitml.serve.outputs import check_values

    if task == "binary":
        assert column is not None

        def score(columns: Columns) -> np.ndarray:
            return method(matrix_of(columns))[:, column]

        return _in_blocks(score)

    def outputs(columns: Columns) -> np.ndarray:
        matrix = matrix_of(columns)
        with np.errstate(over="ignore", invalid="ignore"):  # refused below, by record
            values = method(matrix)
        if task == "regression":
            values = np.asarray(values, dtype=float)
        return check_values(values, target=target)  # as ServedModel.predict refuses

    return _in_blocks(outputs)


def build_matrix(
    plans: Sequence[BlockPlan], traits: EstimatorTraits, schema: InputSchema
) -> Callable[[Columns], np.ndarray]:
    """The preprocessed matrix (what the estimator sees) of checked columns, from `plans`,
    refusing what `predict_frame` refuses (InputError naming record and field). Both fast
    paths score it; explanations (`gitml.serve.explanations`) read it."""
    from gitml.model.scoring import check_matrix
    from gitml.serve.fastpath_blocks import block_width, fields_of, fill_block

    rules = {r.name: r for r in schema.fields}
    fills = []
    width = 0
    for plan in plans:
        fills.append((fill_block(plan), width))
        width += block_width(plan)
    fields = fields_of(plans)

    def matrix_of(columns: Columns) -> np.ndarray:
        matrix = np.zeros((columns.n, width), dtype=np.float64)
        for fill, begin in fills:
            fill(columns, matrix, begin)
        try:
            check_matrix(traits, matrix, fields)  # what predict_frame checks, alike
        except InputError as err:
            for problem in err.problems:
                problem["value"] = _value(columns, rules, problem["record"], problem["field"])
            raise
        return matrix

    return matrix_of


BLOCK_ROWS = 8192  # a block's matrix (rows x features, float64) stays in the CPU's cache


def _in_blocks(score: Callable[[Columns], np.ndarray]) -> Callable[[Columns], np.ndarray]:
    """`score`, run on blocks of BLOCK_ROWS rows: a large chunk's matrix never leaves the
    cache (row by row, the arithmetic is the same). A block with a refused row scores the
    whole input again, so the InputError counts and names the records of every row."""

    def blocks(columns: Columns) -> np.ndarray:
        if columns.n <= BLOCK_ROWS:
            return score(columns)
        parts = []
        try:
            for begin in range(0, columns.n, BLOCK_ROWS):
                end = min(begin + BLOCK_ROWS, columns.n)
                part = Columns(
                    n=end - begin,
                    values={k: v[begin:end] for k, v in columns.values.items()},
                    codes={k: c[begin:end] for k, c in columns.codes.items()},
                )
                parts.append(score(part))
        except InputError:
            return score(columns)
        return np.concatenate(parts)

    return blocks


@dataclass(frozen=True)
class FastPathCheck:
    """The start-up verdict on the fast path: the function when it is on, and why."""

    score: Callable[[Columns], np.ndarray] | None
    reason: str
    # the preprocessed matrix `score` scores, vouched for by the same check: explanations
    # (`gitml.serve.explanations`) read it
    matrix: Callable[[Columns], np.ndarray] | None = None


def prepare_fast_path(
    pipeline: Any,
    schema: InputSchema,
    positive_class: str | None,
    reference: Callable[[Columns], np.ndarray],
    *,
    task: Task = "binary",
    target: str = "target",
) -> FastPathCheck:
    """Compile the fast path and check it against `reference` (the pipeline) on probe rows.

    Fails closed: a step the fast path cannot reproduce, a difference above
    PARITY_TOLERANCE (the largest over every output: each class's probability, or the
    predicted value), a NaN or infinite output, a row refused by one path but not the other,
    or any exception while checking leaves the fast path off.
    """
    try:
        compiled = compile_fast_path(pipeline, schema, positive_class, task=task, target=target)
    except Exception as err:  # fail closed: whatever went wrong, the pipeline still scores
        return FastPathCheck(None, f"off: compiling it failed ({type(err).__name__}: {err})")
    if compiled is None:
        return FastPathCheck(None, "off: the pipeline has a step the fast path cannot reproduce")
    fast, matrix = compiled
    try:
        difference = verify_fast_path(fast, reference, schema)
    except Exception as err:
        return FastPathCheck(None, f"off: the start-up check failed ({type(err).__name__}: {err})")
    if not difference <= PARITY_TOLERANCE:  # NaN compares False: off
        return FastPathCheck(
            None,
            f"off: differs from the pipeline by {difference:.3g} on probe rows "
            f"(tolerance {PARITY_TOLERANCE:g})",
        )
    rows = probe_columns(schema).n
    reason = f"on: matches the pipeline to {difference:.1e} on {rows} probe rows"
    return FastPathCheck(fast, reason, matrix)


def verify_fast_path(
    fast: Callable[[Columns], np.ndarray],
    reference: Callable[[Columns], np.ndarray],
    schema: InputSchema,
) -> float:
    """Largest difference between the fast path and the pipeline on probe rows.

    Infinite when they disagree on anything but the last bits: a NaN or infinite score on
    either side, or rows that one refuses (InputError) and the other scores. Rows both
    refuse alike are left out of the comparison, in as many rounds as refusals come in: a
    regression model refuses infinite features first, then values it cannot predict finitely.
    """
    rows = probe_columns(schema)
    for _ in range(_REFUSAL_ROUNDS):
        (a, refused_fast), (b, refused_ref) = _attempt(fast, rows), _attempt(reference, rows)
        if refused_fast != refused_ref:
            return math.inf
        if not refused_ref:
            break
        # score again without the rows both refuse (positions in `rows`)
        keep = np.ones(rows.n, dtype=bool)
        for record, _ in refused_ref:
            keep[record] = False
        if not keep.any():
            return math.inf  # nothing left to compare: not verified
        rows = _take(rows, keep)
    else:
        return math.inf  # still refusing rows: not verified
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return math.inf
    return float(np.max(np.abs(a - b)))


def _attempt(
    score: Callable[[Columns], np.ndarray], columns: Columns
) -> tuple[np.ndarray | None, set[tuple[int, str]]]:
    """The scores of `columns`, or None and the (record, field) pairs scoring refused."""
    try:
        return score(columns), set()
    except InputError as err:
        return None, {(int(p["record"]), str(p["field"])) for p in err.problems}


def _take(columns: Columns, keep: np.ndarray) -> Columns:
    return Columns(
        n=int(keep.sum()),
        values={k: v[keep] for k, v in columns.values.items()},
        codes={k: v[keep] for k, v in columns.codes.items()},
    )


def _value(columns: Columns, rules: dict[str, Any], row: int, field: str) -> Any:
    if field in columns.values:
        value = float(columns.values[field][row])
        return value if math.isfinite(value) else str(value)
    if field in columns.codes:
        code = int(columns.codes[field][row])
        return rules[field].categories[code] if code >= 0 else None
    return None


PROBE_ROWS = 48


def probe_columns(schema: InputSchema, rows: int = PROBE_ROWS) -> Columns:
    """Rows that visit every category (and an unknown one), the bounds, allowed values, the
    middle of each range, +-1e308 where a side is unbounded and, for nullable inputs, nulls."""
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
    # then one row per unbounded side of each numeric input, at +-1e308, the rest as row 0
    extremes = [
        (rule.name, v)
        for rule in schema.fields
        if rule.numeric and rule.allowed is None
        for v, free in ((-1e308, rule.min is None), (1e308, rule.max is None))
        if free
    ]
    if not extremes:
        return Columns(n=rows, values=values, codes=codes)
    first = np.zeros(len(extremes), dtype=np.intp)
    values = {k: np.concatenate([v, v[first]]) for k, v in values.items()}
    codes = {k: np.concatenate([c, c[first]]) for k, c in codes.items()}
    for k, (name, value) in enumerate(extremes):
        values[name][rows + k] = value
    return Columns(n=rows + len(extremes), values=values, codes=codes)
