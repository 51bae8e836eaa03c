"""Test-set metrics of every task (`gitml.tasks.METRICS`), overall and per slice.

Binary: metrics at a decision threshold from positive-class scores. Multiclass and
regression: weighted metrics (`task_metric_arrays`), one row of weights per resample, so the
point estimates here and the review's paired bootstrap share one implementation (unit
weights give the point estimate). Whether a larger value is better: `gitml.tasks`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gitml.tasks import Task

if TYPE_CHECKING:  # pandas is imported where slices are cut: the bootstrap never needs it
    import pandas as pd

# MAPE is left undefined (null, with this reason) when an actual value lies this close to
# zero, relative to the median |actual|: that row's percentage error would be at least 1,000
# times its typical size and would decide the mean on its own.
MAPE_NEAR_ZERO = 1e-3


def compute_metrics(
    y_true: np.ndarray, score: np.ndarray, *, threshold: float, names: Sequence[str]
) -> dict[str, float | None]:
    """Metrics for 0/1 truth and positive-class scores; None where a metric is undefined.

    Threshold metrics come from one confusion count, log loss and Brier score from their
    formulas (the same definitions as scikit-learn's, zero_division=0, checked in the tests):
    scikit-learn's per-call input validation dominated on slices of large test sets.
    ROC AUC and average precision come from scikit-learn.
    """
    y_true = np.asarray(y_true, dtype=int)
    score = np.asarray(score, dtype=float)
    predicted = score >= threshold
    positive = y_true == 1
    tp = int(np.count_nonzero(predicted & positive))
    fp = int(np.count_nonzero(predicted & ~positive))
    fn = int(np.count_nonzero(~predicted & positive))
    counts = {"tp": tp, "fp": fp, "fn": fn, "n": len(y_true)}
    both_classes = 0 < tp + fn < len(y_true)
    out: dict[str, float | None] = {}
    for name in names:
        if name in ("roc_auc", "average_precision") and not both_classes:
            out[name] = None
            continue
        out[name] = round(float(_METRIC_FUNCS[name](y_true, score, counts)), 6)
    return out


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


_METRIC_FUNCS = {
    "roc_auc": lambda y, s, c: _sklearn("roc_auc_score")(y, s),
    "average_precision": lambda y, s, c: _sklearn("average_precision_score")(y, s),
    "f1": lambda y, s, c: _ratio(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"]),
    "precision": lambda y, s, c: _ratio(c["tp"], c["tp"] + c["fp"]),
    "recall": lambda y, s, c: _ratio(c["tp"], c["tp"] + c["fn"]),
    "accuracy": lambda y, s, c: _ratio(c["n"] - c["fp"] - c["fn"], c["n"]),
    "log_loss": lambda y, s, c: _log_loss(y, s),
    "brier": lambda y, s, c: float(np.mean((s - y) ** 2)),
}


def _sklearn(name: str):
    # imported on first use: sklearn.metrics costs seconds to import, and review reads these
    # names and directions without computing a ranking metric
    from sklearn import metrics

    return getattr(metrics, name)


def _log_loss(y: np.ndarray, score: np.ndarray) -> float:
    """Binary cross-entropy with scikit-learn's clipping (machine epsilon of float64)."""
    eps = np.finfo(np.float64).eps
    p = np.clip(score, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def compute_slices(
    frame: pd.DataFrame,
    y_true: np.ndarray,
    score: np.ndarray,
    *,
    columns: Sequence[str],
    threshold: float,
    names: Sequence[str],
    min_rows: int,
) -> dict[str, dict[str, Any]]:
    """Per slice column and value: rows, positives, metrics, and whether the group is too small.

    Each column also gets `max_gap`: the largest difference of each metric between its groups.
    """
    y_true = np.asarray(y_true, dtype=int)
    score = np.asarray(score, dtype=float)

    def measure(mask: np.ndarray) -> tuple[dict[str, Any], dict[str, float | None]]:
        values = compute_metrics(y_true[mask], score[mask], threshold=threshold, names=names)
        return {"positives": int(y_true[mask].sum())}, values

    return _slice_table(frame, columns=columns, names=names, min_rows=min_rows, measure=measure)


def _slice_table(
    frame: pd.DataFrame,
    *,
    columns: Sequence[str],
    names: Sequence[str],
    min_rows: int,
    measure: Callable[[np.ndarray], tuple[dict[str, Any], dict[str, float | None]]],
) -> dict[str, dict[str, Any]]:
    import pandas as pd

    out: dict[str, dict[str, Any]] = {}
    for column in columns:
        codes, uniques = pd.factorize(frame[column], sort=True)  # missing values get -1
        labels = [str(u) for u in uniques] + ["<missing>"]
        groups: dict[str, Any] = {}
        for code in [*sorted(range(len(uniques)), key=labels.__getitem__), -1]:
            mask = codes == code
            if not mask.any():
                continue
            extra, values = measure(mask)
            groups[labels[code]] = {
                "rows": int(mask.sum()),
                **extra,
                "too_small": bool(mask.sum() < min_rows),
                **values,
            }
        gaps: dict[str, float | None] = {}
        for name in names:
            seen = [
                float(g[name])
                for g in groups.values()
                if g[name] is not None and not g["too_small"]
            ]
            gaps[name] = round(max(seen) - min(seen), 6) if len(seen) > 1 else None
        out[column] = {"groups": groups, "max_gap": gaps}
    return out


@dataclass(frozen=True)
class TaskOutputs:
    """One model's outputs on the test rows, for a multiclass or regression task.

    multiclass: `actual` holds each row's class index into `classes` (-1: not a class of the
    model) and `output` the probabilities (rows, classes); regression: `actual` and `output`
    are the true and predicted values (rows,).
    """

    task: Task
    actual: np.ndarray
    output: np.ndarray
    classes: tuple[str, ...] = ()
    mape_undefined: str | None = None  # regression: why MAPE is null (`mape_undefined`)

    def __len__(self) -> int:
        return len(self.actual)

    def subset(self, mask: np.ndarray) -> TaskOutputs:
        return TaskOutputs(
            self.task, self.actual[mask], self.output[mask], self.classes, self.mape_undefined
        )


def mape_undefined(actual: np.ndarray) -> str | None:
    """Why MAPE cannot be reported for these actual values, or None when it can.

    Undefined when any |actual| is at most MAPE_NEAR_ZERO x the median |actual| (every zero
    included), or when the median |actual| is itself zero.
    """
    magnitude = np.abs(np.asarray(actual, dtype=float))
    if not len(magnitude):
        return "undefined: no rows"
    scale = float(np.median(magnitude))
    near = int(np.count_nonzero(magnitude <= MAPE_NEAR_ZERO * scale))
    if scale == 0 or near:
        return (
            f"undefined: {near:,} of {len(magnitude):,} actual values are ~0 (|actual| <= "
            f"{MAPE_NEAR_ZERO:g} x the median |actual| {scale:.6g}); their percentage errors "
            "would dominate the mean"
        )
    return None


def task_metric_arrays(
    outputs: TaskOutputs, weights: np.ndarray, names: Sequence[str]
) -> dict[str, np.ndarray]:
    """Each metric under each row of `weights` (shape (k, rows), e.g. bootstrap counts);
    NaN where a metric is undefined. Unit weights give the point estimate."""
    weights = np.asarray(weights, dtype=float)
    if outputs.task == "multiclass":
        return _multiclass_arrays(outputs, weights, names)
    if outputs.task == "regression":
        return _regression_arrays(outputs, weights, names)
    raise ValueError(f"task_metric_arrays covers multiclass and regression, not {outputs.task}")


def compute_task_metrics(outputs: TaskOutputs, names: Sequence[str]) -> dict[str, float | None]:
    """Point estimates (rounded to 6 decimals like `compute_metrics`); None where undefined."""
    values = task_metric_arrays(outputs, np.ones((1, len(outputs))), names)
    return {name: _point(values[name][0]) for name in names}


def per_class_metrics(outputs: TaskOutputs) -> dict[str, dict[str, float | int]]:
    """Multiclass: precision, recall, F1 and support (true rows) of each class."""
    matrix = _confusion(outputs, np.ones((1, len(outputs))))[0]
    table = {}
    for i, label in enumerate(outputs.classes):
        tp, actual, predicted = matrix[i, i], matrix[i].sum(), matrix[:, i].sum()
        table[label] = {
            "precision": round(_ratio(tp, predicted), 6),
            "recall": round(_ratio(tp, actual), 6),
            "f1": round(_ratio(2 * tp, actual + predicted), 6),
            "support": int(actual),
        }
    return table


def predicted_index(proba: np.ndarray) -> np.ndarray:
    """The predicted class of each row: the most probable (the first on a tie, as sklearn)."""
    return np.argmax(proba, axis=1)


def _point(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 6) + 0.0


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.full(np.shape(num), np.nan), where=den != 0)


def _grouped(weights: np.ndarray, codes: np.ndarray, n_codes: int) -> np.ndarray:
    """Sum of each row of `weights` over the columns of each code: shape (k, n_codes)."""
    out = np.zeros((len(weights), n_codes))
    keep = codes >= 0
    codes, weights = codes[keep], weights[:, keep]
    if not len(codes):
        return out
    order = np.argsort(codes, kind="stable")
    present, starts = np.unique(codes[order], return_index=True)
    out[:, present] = np.add.reduceat(weights[:, order], starts, axis=1)
    return out


def _confusion(outputs: TaskOutputs, weights: np.ndarray) -> np.ndarray:
    """Weighted confusion matrices, shape (k, actual class, predicted class)."""
    n = len(outputs.classes)
    actual = outputs.actual.astype(np.intp)
    pairs = np.where(actual >= 0, actual * n + predicted_index(outputs.output), -1)
    return _grouped(weights, pairs, n * n).reshape(len(weights), n, n)


def _multiclass_arrays(
    outputs: TaskOutputs, weights: np.ndarray, names: Sequence[str]
) -> dict[str, np.ndarray]:
    """Like scikit-learn (zero_division=0): macro F1 and balanced accuracy average the classes
    that occur (F1: in truth or prediction; balanced accuracy: in truth); ROC AUC is the
    macro one-vs-rest mean, undefined unless every class occurs and does not fill the rows."""
    total = weights.sum(axis=1)
    matrix = _confusion(outputs, weights)
    tp = np.einsum("kcc->kc", matrix)
    actual, predicted = matrix.sum(axis=2), matrix.sum(axis=1)
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name == "accuracy":
            out[name] = _divide(tp.sum(axis=1), total)
        elif name == "balanced_accuracy":
            recall = _divide(tp, actual)
            out[name] = _nanmean(recall)
        elif name in ("f1_macro", "f1_weighted"):
            den = actual + predicted
            f1 = np.divide(2 * tp, den, out=np.zeros_like(tp), where=den != 0)
            if name == "f1_macro":
                out[name] = _nanmean(np.where(den > 0, f1, np.nan))
            else:
                out[name] = _divide(np.einsum("kc,kc->k", f1, actual), actual.sum(axis=1))
        elif name == "log_loss":
            out[name] = _divide(np.einsum("kn,n->k", weights, _row_loss(outputs)), total)
        elif name == "roc_auc_ovr":
            codes = outputs.actual.astype(np.intp)
            aucs = np.stack(
                [
                    _weighted_auc((codes == c).astype(float), outputs.output[:, c], weights)
                    for c in range(len(outputs.classes))
                ],
                axis=1,
            )
            out[name] = aucs.mean(axis=1)  # NaN when any class's AUC is undefined
        else:
            raise ValueError(f"{name!r} is not a multiclass metric")
    return out


def _nanmean(values: np.ndarray) -> np.ndarray:
    counted = np.count_nonzero(~np.isnan(values), axis=1)
    return _divide(np.nansum(values, axis=1), counted.astype(float))


def _row_loss(outputs: TaskOutputs) -> np.ndarray:
    """Each row's cross-entropy, -log p(true class), clipped like the binary log loss."""
    eps = np.finfo(np.float64).eps
    proba = outputs.output / outputs.output.sum(axis=1, keepdims=True)
    actual = outputs.actual.astype(np.intp)
    p = np.where(actual >= 0, proba[np.arange(len(actual)), np.maximum(actual, 0)], 0.0)
    return -np.log(np.clip(p, eps, 1 - eps))


def _weighted_auc(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of 0/1 `y` under each row of weights (Mann-Whitney, ties counted half)."""
    order = np.argsort(-score, kind="stable")
    ranked = score[order]
    starts = np.flatnonzero(np.append(True, ranked[1:] != ranked[:-1]))
    w = weights[:, order]
    pos = np.add.reduceat(w * y[order], starts, axis=1)
    neg = np.add.reduceat(w, starts, axis=1) - pos
    tps = np.cumsum(pos, axis=1)
    area = np.einsum("kg,kg->k", neg, tps) - np.einsum("kg,kg->k", neg, pos) / 2
    return _divide(area, tps[:, -1] * neg.sum(axis=1))


def _regression_arrays(
    outputs: TaskOutputs, weights: np.ndarray, names: Sequence[str]
) -> dict[str, np.ndarray]:
    """RMSE, MAE, R² (NaN when the actual values are constant) and MAPE (as a fraction, like
    scikit-learn; NaN when `mape_undefined` says why)."""
    y = np.asarray(outputs.actual, dtype=float)
    error = np.asarray(outputs.output, dtype=float) - y
    total = weights.sum(axis=1)
    squared = np.einsum("kn,n->k", weights, error**2)
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name == "rmse":
            out[name] = np.sqrt(_divide(squared, total))
        elif name == "mae":
            out[name] = _divide(np.einsum("kn,n->k", weights, np.abs(error)), total)
        elif name == "r2":
            mean = _divide(np.einsum("kn,n->k", weights, y), total)
            spread = np.einsum("kn,kn->k", weights, (y[None, :] - mean[:, None]) ** 2)
            out[name] = 1 - _divide(squared, np.where(spread > 1e-12 * total, spread, 0.0))
        elif name == "mape":
            if outputs.mape_undefined is not None:
                out[name] = np.full(len(weights), np.nan)
                continue
            eps = np.finfo(np.float64).eps
            relative = np.abs(error) / np.maximum(np.abs(y), eps)
            out[name] = _divide(np.einsum("kn,n->k", weights, relative), total)
        else:
            raise ValueError(f"{name!r} is not a regression metric")
    return out


def compute_task_slices(
    frame: pd.DataFrame,
    outputs: TaskOutputs,
    *,
    columns: Sequence[str],
    names: Sequence[str],
    min_rows: int,
) -> dict[str, dict[str, Any]]:
    """`compute_slices` for multiclass and regression: rows, too_small and the task's metrics
    per group (multiclass: its macro metrics on the group's rows), and `max_gap` per column."""

    def measure(mask: np.ndarray) -> tuple[dict[str, Any], dict[str, float | None]]:
        return {}, compute_task_metrics(outputs.subset(mask), names)

    return _slice_table(frame, columns=columns, names=names, min_rows=min_rows, measure=measure)
