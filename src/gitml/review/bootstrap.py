"""Paired bootstrap of metric differences between two models scored on the same rows."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from gitml.evaluate.metrics import TaskOutputs, task_metric_arrays
from gitml.tasks import METRICS

# Upper bound on the working memory of one chunk of resamples: about ten 8-byte arrays of
# shape (chunk, rows) are alive at once (draws, their keys, class weights, cumulative sums).
_MEMORY_BUDGET = 200 * 2**20
_BYTES_PER_CELL = 10 * 8
_RANKING = ("roc_auc", "average_precision")
_MIN_RESAMPLES = 100


@dataclass(frozen=True)
class MetricDelta:
    """One metric of base and head, head − base, and the bootstrap interval of that difference.

    A field is None where the metric is undefined (e.g. ROC AUC with one class only).
    """

    base: float | None
    head: float | None
    delta: float | None
    low: float | None
    high: float | None


def paired_bootstrap(
    y_true: np.ndarray,
    base_score: np.ndarray,
    head_score: np.ndarray,
    *,
    threshold: float,
    base_threshold: float | None = None,
    names: Sequence[str],
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    chunk_size: int | None = None,
) -> dict[str, MetricDelta]:
    """Per metric: both point estimates, their difference and its percentile interval.

    Both models are scored on the same resampled rows (paired), so the interval reflects the
    uncertainty of the difference, not of each metric alone. Resample i depends only on
    `seed` and i, so `chunk_size` (resamples computed at once; default: fits the memory
    budget) never changes the result. Resamples where a ranking metric is undefined (one
    class drawn) are left out of its interval.
    """
    y, base, head = _check_inputs(y_true, base_score, head_score, names, resamples, confidence)
    if chunk_size is None:
        chunk_size = max(1, _MEMORY_BUDGET // (_BYTES_PER_CELL * len(y)))
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    # each model is judged at its own decision threshold (a PR may change it)
    cuts = (threshold if base_threshold is None else base_threshold, threshold)
    models = [_prepare(y, score, cut) for score, cut in zip((base, head), cuts, strict=True)]
    children = np.random.SeedSequence(seed).spawn(resamples)
    diffs = {name: np.empty(resamples) for name in names}
    for start in range(0, resamples, chunk_size):
        draws = _draw_rows(children[start : start + chunk_size], len(y))
        base_values, head_values = (
            _group_metrics(model, *_drawn_weights(model, draws), names) for model in models
        )
        for name in names:
            diffs[name][start : start + len(draws)] = head_values[name] - base_values[name]
    # point estimates from the same numpy code with unit weights: equal to compute_metrics
    # (tested) without importing scikit-learn, which would double the report's run time
    ones = np.ones((1, len(y)))
    base_point, head_point = (
        {k: point_value(v[0]) for k, v in _weighted_metrics(y, s, ones, cut, names).items()}
        for s, cut in zip((base, head), cuts, strict=True)
    )
    return {
        name: _summarize(base_point[name], head_point[name], diffs[name], confidence)
        for name in names
    }


def bootstrap_intervals(
    y_true: np.ndarray,
    score: np.ndarray,
    *,
    threshold: float,
    names: Sequence[str],
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, tuple[float | None, float | None]]:
    """Per metric: the percentile interval of one model's metric over bootstrap resamples.

    The same resampling as `paired_bootstrap` (resample i depends only on `seed` and i), for
    a model on its own, as the model card reports it.
    """
    y, score, _ = _check_inputs(y_true, score, score, names, resamples, confidence)
    model = _prepare(y, score, threshold)
    chunk_size = max(1, _MEMORY_BUDGET // (_BYTES_PER_CELL * len(y)))
    children = np.random.SeedSequence(seed).spawn(resamples)
    values = {name: np.empty(resamples) for name in names}
    for start in range(0, resamples, chunk_size):
        draws = _draw_rows(children[start : start + chunk_size], len(y))
        drawn = _group_metrics(model, *_drawn_weights(model, draws), names)
        for name in names:
            values[name][start : start + len(draws)] = drawn[name]
    return percentile_intervals(values, confidence)


def label_weight_metrics(
    score: np.ndarray,
    positive: np.ndarray,
    negative: np.ndarray,
    *,
    threshold: float,
    names: Sequence[str],
) -> dict[str, np.ndarray]:
    """Binary metrics when row i counts `positive[k, i]` times as a positive and
    `negative[k, i]` times as a negative, one value per row k of the weights; NaN where
    undefined, unrounded. 0/1 weights are labels (e.g. simulated ones); probabilities p and
    1 - p give the expected confusion counts and the metrics of those (CBPE)."""
    score = np.asarray(score, dtype=float)
    _check_names(names, METRICS["binary"])
    model = _prepare(np.zeros(len(score), dtype=int), score, threshold)
    positive = np.asarray(positive, dtype=float)
    k, groups = len(positive), model.groups
    keys = (model.key + np.arange(k)[:, None] * groups).ravel()
    pos, neg = (
        np.bincount(keys, np.asarray(w, dtype=float).ravel(), minlength=k * groups).reshape(
            k, groups
        )
        for w in (positive, negative)
    )
    return _group_metrics(model, neg, pos, names)


def point_value(value: float) -> float | None:
    """A point estimate as compute_metrics reports it: rounded, None where undefined."""
    return None if np.isnan(value) else _round(float(value))


def _check_inputs(
    y_true: np.ndarray,
    base_score: np.ndarray,
    head_score: np.ndarray,
    names: Sequence[str],
    resamples: int,
    confidence: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated 1-D arrays: 0/1 truth as int, both scores as float."""
    y = np.asarray(y_true)
    base = np.asarray(base_score, dtype=float)
    head = np.asarray(head_score, dtype=float)
    if y.ndim != 1 or base.ndim != 1 or head.ndim != 1:
        raise ValueError("y_true, base_score and head_score must be 1-D arrays")
    if not len(y) == len(base) == len(head):
        raise ValueError(
            "y_true, base_score and head_score must have the same length (aligned rows), "
            f"got {len(y)}, {len(base)} and {len(head)}"
        )
    if len(y) == 0:
        raise ValueError("cannot bootstrap zero rows")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold only 0 and 1")
    if not (np.isfinite(base).all() and np.isfinite(head).all()):
        raise ValueError("scores must be finite")
    _check_names(names, METRICS["binary"])
    _check_settings(resamples, confidence)
    return y.astype(int), base, head


def _check_names(names: Sequence[str], known: Sequence[str]) -> None:
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; known: {sorted(known)}")


def _check_settings(resamples: int, confidence: float) -> None:
    if resamples < _MIN_RESAMPLES:
        raise ValueError(f"resamples must be at least {_MIN_RESAMPLES}, got {resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")


def _draw_rows(children: Sequence[np.random.SeedSequence], n: int) -> np.ndarray:
    """Row indices drawn with replacement, n per resample, one resample per child seed."""
    draws = np.empty((len(children), n), dtype=np.intp)
    for row, child in zip(draws, children, strict=True):
        row[:] = np.random.default_rng(child).integers(0, n, size=n)
    return draws


@dataclass(frozen=True)
class _Prepared:
    """One model's scores reduced to groups of tied scores, shared by every resample.

    Every metric depends on a row only through its class and its score, so each resample
    is summarised by the weight of negatives and of positives in each group (descending
    score), and the per-row terms of log loss and Brier score become per-group constants.
    """

    key: np.ndarray  # per row: its group, plus `groups` for a positive
    groups: int
    cut: int  # the first `cut` groups score at or above the threshold
    loss: np.ndarray  # (2, groups): log loss of a negative / a positive in each group
    squared: np.ndarray  # (2, groups): squared error of a negative / a positive


def _prepare(y: np.ndarray, score: np.ndarray, threshold: float) -> _Prepared:
    """Group tied scores in descending order and tabulate the per-group terms."""
    order = np.argsort(-score, kind="stable")
    ranked = score[order]
    starts = np.append(True, ranked[1:] != ranked[:-1])
    group = np.empty(len(y), dtype=np.intp)
    group[order] = np.cumsum(starts) - 1
    level = ranked[starts]
    eps = np.finfo(np.float64).eps
    p = np.clip(level, eps, 1 - eps)
    return _Prepared(
        key=group + y * len(level),
        groups=len(level),
        cut=int(np.count_nonzero(level >= threshold)),
        loss=np.stack([-np.log1p(-p), -np.log(p)]),
        squared=np.stack([level**2, (level - 1) ** 2]),
    )


def _drawn_weights(model: _Prepared, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Negative and positive counts per group (each (k, groups)) of each resample's draws."""
    k, width = len(draws), 2 * model.groups
    keys = model.key[draws]
    keys += np.arange(k)[:, None] * width  # one block of bins per resample
    counts = np.bincount(keys.ravel(), minlength=k * width).reshape(k, 2, model.groups)
    counts = counts.astype(float)  # one contiguous conversion, then two views
    return counts[:, 0], counts[:, 1]


def _weighted_metrics(
    y: np.ndarray, score: np.ndarray, weights: np.ndarray, threshold: float, names: Sequence[str]
) -> dict[str, np.ndarray]:
    """Each metric under each row of `weights` (shape (k, rows)); NaN where undefined.

    With integer weights these equal the metrics of `compute_metrics` on the rows repeated
    that many times, unrounded: a row weighs as a positive when y is 1, else as a negative.
    """
    weights = np.asarray(weights, dtype=float)
    y = np.asarray(y, dtype=float)
    return label_weight_metrics(
        score, weights * y, weights * (1 - y), threshold=threshold, names=names
    )


def _group_metrics(
    model: _Prepared, neg: np.ndarray, pos: np.ndarray, names: Sequence[str]
) -> dict[str, np.ndarray]:
    """Every metric from the negative and positive weight per group, one row per resample."""
    values = _count_metrics(model, neg, pos)
    if any(name in _RANKING for name in names):
        values.update(_ranking_metrics(neg, pos))
    return {name: values[name] for name in names}


def _count_metrics(model: _Prepared, neg: np.ndarray, pos: np.ndarray) -> dict[str, np.ndarray]:
    """Threshold metrics from the groups above the cut; log loss and Brier as weighted sums."""
    positives = pos.sum(axis=1)
    total = positives + neg.sum(axis=1)
    tp = pos[:, : model.cut].sum(axis=1)
    fp = neg[:, : model.cut].sum(axis=1)
    fn = positives - tp
    # einsum, not BLAS (matmul, vecdot): threaded BLAS stalls when the cores are busy.
    loss = np.einsum("kg,g->k", neg, model.loss[0]) + np.einsum("kg,g->k", pos, model.loss[1])
    squared = np.einsum("kg,g->k", neg, model.squared[0]) + np.einsum(
        "kg,g->k", pos, model.squared[1]
    )
    return {
        "f1": _divide(2 * tp, 2 * tp + fp + fn, 0.0),
        "precision": _divide(tp, tp + fp, 0.0),
        "recall": _divide(tp, tp + fn, 0.0),
        "accuracy": _divide(total - fp - fn, total, 0.0),
        "log_loss": _divide(loss, total, np.nan),
        "brier": _divide(squared, total, np.nan),
    }


def _ranking_metrics(neg: np.ndarray, pos: np.ndarray) -> dict[str, np.ndarray]:
    """Weighted ROC AUC and average precision from the weight of each distinct score.

    Per group g (descending score), with tp_g / fp_g the positive / negative weight at or
    above it: AUC is sum(neg_g * (tp_g - pos_g / 2)) / (P * N) (Mann–Whitney, ties counted
    half); AP is sum(pos_g * tp_g / (tp_g + fp_g)) / P (scikit-learn's step-wise sum over
    distinct thresholds).
    """
    tps = np.cumsum(pos, axis=1)
    fps = np.cumsum(neg, axis=1)
    positives, negatives = tps[:, -1], fps[:, -1].copy()  # fps is overwritten below
    # Row-wise dot products by einsum: one pass each, no temporary, no threaded BLAS.
    area = np.einsum("kg,kg->k", neg, tps) - np.einsum("kg,kg->k", neg, pos) / 2
    drawn = np.add(fps, tps, out=fps)
    # drawn is 0 only before the first weighted group, where pos is 0 too: any positive
    # floor keeps those terms 0 without a masked division.
    precision = np.maximum(drawn, np.finfo(float).tiny, out=drawn)
    np.divide(tps, precision, out=precision)
    # Like compute_metrics, both are undefined unless both classes carry weight.
    defined = (positives > 0) & (negatives > 0)
    return {
        "roc_auc": _divide(area, positives * negatives, np.nan),
        "average_precision": _divide(
            np.einsum("kg,kg->k", pos, precision), np.where(defined, positives, 0.0), np.nan
        ),
    }


def _divide(num: np.ndarray, den: np.ndarray, fill: float) -> np.ndarray:
    """num / den elementwise, `fill` where den is 0."""
    return np.divide(num, den, out=np.full(np.shape(num), fill), where=den != 0)


def _summarize(
    base: float | None, head: float | None, diffs: np.ndarray, confidence: float
) -> MetricDelta:
    """Point estimates, their difference, and the percentile interval of the differences."""
    if base is None or head is None:
        return MetricDelta(base, head, None, None, None)
    finite = diffs[np.isfinite(diffs)]
    if not len(finite):
        return MetricDelta(base, head, _round(head - base), None, None)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return MetricDelta(base, head, _round(head - base), _round(low), _round(high))


def _round(value: float) -> float:
    """Six decimals like `compute_metrics`; + 0.0 turns -0.0 into 0.0 for the report."""
    return round(float(value), 6) + 0.0


def paired_bootstrap_outputs(
    base: TaskOutputs,
    head: TaskOutputs,
    *,
    names: Sequence[str],
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    chunk_size: int | None = None,
) -> dict[str, MetricDelta]:
    """`paired_bootstrap` for multiclass and regression: both models' outputs on the same
    rows (the same actual values), resampled as `paired_bootstrap` does (resample i depends
    only on `seed` and i); metrics from per-class probabilities or predicted values."""
    _check_outputs(base, head, names, resamples, confidence)
    n = len(head)
    points = {}
    for side in (base, head):
        values = task_metric_arrays(side, np.ones((1, n)), names)
        points[id(side)] = {name: point_value(values[name][0]) for name in names}
    diffs = {name: np.empty(resamples) for name in names}
    for start, weights in _weight_chunks(head, resamples, seed, chunk_size):
        base_values = task_metric_arrays(base, weights, names)
        head_values = task_metric_arrays(head, weights, names)
        for name in names:
            diffs[name][start : start + len(weights)] = head_values[name] - base_values[name]
    return {
        name: _summarize(points[id(base)][name], points[id(head)][name], diffs[name], confidence)
        for name in names
    }


def bootstrap_output_intervals(
    outputs: TaskOutputs,
    *,
    names: Sequence[str],
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, tuple[float | None, float | None]]:
    """`bootstrap_intervals` for multiclass and regression (the model card's intervals)."""
    _check_outputs(outputs, outputs, names, resamples, confidence)
    values = {name: np.empty(resamples) for name in names}
    for start, weights in _weight_chunks(outputs, resamples, seed, None):
        drawn = task_metric_arrays(outputs, weights, names)
        for name in names:
            values[name][start : start + len(weights)] = drawn[name]
    return percentile_intervals(values, confidence)


def _check_outputs(
    base: TaskOutputs, head: TaskOutputs, names: Sequence[str], resamples: int, confidence: float
) -> None:
    if base.task != head.task or base.task not in ("multiclass", "regression"):
        raise ValueError(
            f"outputs of tasks {base.task} and {head.task}: need both multiclass or regression"
        )
    if len(base) != len(head) or len(head) == 0:
        raise ValueError(f"need the same non-zero number of rows, got {len(base)} and {len(head)}")
    if base.classes != head.classes:
        raise ValueError(f"the models' classes differ: {base.classes} and {head.classes}")
    if not np.array_equal(base.actual, head.actual):
        raise ValueError("base and head must be scored on the same rows (same actual values)")
    if not (np.isfinite(base.output).all() and np.isfinite(head.output).all()):
        raise ValueError("outputs must be finite")
    _check_names(names, METRICS[head.task])
    _check_settings(resamples, confidence)


def _weight_chunks(
    outputs: TaskOutputs, resamples: int, seed: int, chunk_size: int | None
) -> Iterator[tuple[int, np.ndarray]]:
    """`weight_chunks` for these outputs (multiclass: per-class arrays widen each row)."""
    width = max(1, len(outputs.classes))  # per-class arrays of the multiclass metrics
    return weight_chunks(len(outputs), resamples, seed, chunk_size=chunk_size, width=width)


def weight_chunks(
    n: int, resamples: int, seed: int, *, chunk_size: int | None = None, width: int = 1
) -> Iterator[tuple[int, np.ndarray]]:
    """(first resample, how often each of `n` rows is drawn in each resample of the chunk),
    shape (chunk, n). Resample i depends only on `seed` and i, so `chunk_size` (default: fits
    the memory budget, for metrics that hold `width` arrays per row) never changes a draw."""
    if chunk_size is None:
        chunk_size = max(1, _MEMORY_BUDGET // (_BYTES_PER_CELL * n * width))
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    children = np.random.SeedSequence(seed).spawn(resamples)
    for start in range(0, resamples, chunk_size):
        draws = _draw_rows(children[start : start + chunk_size], n)
        keys = draws + np.arange(len(draws))[:, None] * n
        counts = np.bincount(keys.ravel(), minlength=len(draws) * n)
        yield start, counts.reshape(len(draws), n).astype(float)


def percentile_intervals(
    values: dict[str, np.ndarray], confidence: float
) -> dict[str, tuple[float | None, float | None]]:
    """Each metric's percentile interval over its finite resampled values (None, None when a
    metric was undefined in every resample)."""
    tail = (1 - confidence) / 2 * 100
    intervals: dict[str, tuple[float | None, float | None]] = {}
    for name, drawn in values.items():
        finite = drawn[np.isfinite(drawn)]
        if not len(finite):
            intervals[name] = (None, None)
            continue
        low, high = np.percentile(finite, [tail, 100 - tail])
        intervals[name] = (_round(low), _round(high))
    return intervals
