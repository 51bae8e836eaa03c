"""Binary-classification metrics at a decision threshold, overall and per slice."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

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
    """Metrics for 0/1 truth and positive-class scores; None where a metric is undefined."""
    y_true = np.asarray(y_true, dtype=int)
    score = np.asarray(score, dtype=float)
    predicted = (score >= threshold).astype(int)
    both_classes = 0 < y_true.sum() < len(y_true)
    out: dict[str, float | None] = {}
    for name in names:
        if name in ("roc_auc", "average_precision") and not both_classes:
            out[name] = None
            continue
        value = _METRIC_FUNCS[name](y_true, score, predicted)
        out[name] = round(float(value), 6)
    return out


_METRIC_FUNCS = {
    "roc_auc": lambda y, s, p: skm.roc_auc_score(y, s),
    "average_precision": lambda y, s, p: skm.average_precision_score(y, s),
    "f1": lambda y, s, p: skm.f1_score(y, p, zero_division=0),
    "precision": lambda y, s, p: skm.precision_score(y, p, zero_division=0),
    "recall": lambda y, s, p: skm.recall_score(y, p, zero_division=0),
    "accuracy": lambda y, s, p: skm.accuracy_score(y, p),
    "log_loss": lambda y, s, p: skm.log_loss(y, s, labels=[0, 1]),
    "brier": lambda y, s, p: skm.brier_score_loss(y, s, pos_label=1),
}


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
        keys = frame[column].astype("string").fillna("<missing>").to_numpy()
        groups: dict[str, Any] = {}
        for value in sorted(set(keys)):
            mask = keys == value
            groups[str(value)] = {
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
