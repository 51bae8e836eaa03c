"""Binary-classification metrics at a decision threshold, overall and per slice."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

# Whether a larger value is better: read by the report and the promotion gate.
HIGHER_IS_BETTER = {
    "roc_auc": True,
    "average_precision": True,
    "f1": True,
    "precision": True,
    "recall": True,
    "accuracy": True,
    "log_loss": False,
    "brier": False,
}


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
    out: dict[str, dict[str, Any]] = {}
    for column in columns:
        codes, uniques = pd.factorize(frame[column], sort=True)  # missing values get -1
        labels = [str(u) for u in uniques] + ["<missing>"]
        groups: dict[str, Any] = {}
        for code in [*sorted(range(len(uniques)), key=labels.__getitem__), -1]:
            mask = codes == code
            if not mask.any():
                continue
            groups[labels[code]] = {
                "rows": int(mask.sum()),
                "positives": int(y_true[mask].sum()),
                "too_small": bool(mask.sum() < min_rows),
                **compute_metrics(y_true[mask], score[mask], threshold=threshold, names=names),
            }
        gaps = {}
        for name in names:
            values = [
                g[name] for g in groups.values() if g[name] is not None and not g["too_small"]
            ]
            gaps[name] = round(max(values) - min(values), 6) if len(values) > 1 else None
        out[column] = {"groups": groups, "max_gap": gaps}
    return out
