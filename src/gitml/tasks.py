"""The three tasks gitml speaks, and what each one means for every capability.

`data.task` is one parameter (binary, multiclass or regression); the tables here are the one
place that says which estimators, metrics, plots and outputs go with it. Train, evaluate,
review, the gate, the card, serving and `gitml init` all read them, so no capability keeps
its own list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Task = Literal["binary", "multiclass", "regression"]
TASKS: tuple[Task, ...] = ("binary", "multiclass", "regression")

# Estimators a task may use (`model.name`): the allow-list. The first one is the default, a
# simple linear baseline on purpose; stronger presets live in conf/experiment/.
ESTIMATORS: dict[Task, tuple[str, ...]] = {
    "binary": ("logistic_regression", "random_forest", "hist_gradient_boosting"),
    "multiclass": ("logistic_regression", "random_forest", "hist_gradient_boosting"),
    "regression": ("ridge", "random_forest", "hist_gradient_boosting"),
}

# Metrics each task computes in `reports/metrics.json` ("metrics": {...}), in display order.
METRICS: dict[Task, tuple[str, ...]] = {
    "binary": (
        "roc_auc",
        "average_precision",
        "f1",
        "precision",
        "recall",
        "accuracy",
        "log_loss",
        "brier",
    ),
    "multiclass": (
        "accuracy",
        "balanced_accuracy",
        "f1_macro",
        "f1_weighted",
        "log_loss",
        "roc_auc_ovr",
    ),
    "regression": ("rmse", "mae", "r2", "mape"),
}
ALL_METRICS: tuple[str, ...] = tuple(dict.fromkeys(m for t in TASKS for m in METRICS[t]))

# Metrics where a smaller value is better: the review, bootstrap and gate sign Δ with this.
LOWER_IS_BETTER: frozenset[str] = frozenset({"log_loss", "brier", "rmse", "mae", "mape"})

# The metric a task leads with: the report's headline, the default floor and slice metric.
PRIMARY_METRIC: dict[Task, str] = {
    "binary": "roc_auc",
    "multiclass": "f1_macro",
    "regression": "rmse",
}

# The few metrics `gitml models` and release tag messages show, per task.
HEADLINE: dict[Task, tuple[str, ...]] = {
    "binary": ("roc_auc", "average_precision", "f1", "recall"),
    "multiclass": ("f1_macro", "accuracy", "balanced_accuracy", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}

# Plot data files `evaluate` writes under reports/plots/ (the confusion matrix of the
# classification tasks is drawn from reports/predictions.csv's actual/predicted columns).
PLOTS: dict[Task, tuple[str, ...]] = {
    "binary": ("roc.json", "precision_recall.json", "calibration.json"),
    "multiclass": ("roc_ovr.json",),
    "regression": ("predicted_vs_actual.json", "residuals.json"),
}


def task_of_metrics(metrics: dict[str, object]) -> Task:
    """The task a `metrics.json` "metrics" mapping was computed for (older files: binary)."""
    for task in ("regression", "multiclass"):
        if any(name in metrics for name in METRICS[task] if name not in METRICS["binary"]):
            return task
    return "binary"


def is_classification(task: Task) -> bool:
    return task != "regression"


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def score_column(label: str) -> str:
    """The column of a per-class probability in reports/predictions.csv and batch output
    (multiclass): `score:<class>`."""
    return f"score:{label}"


def output_names(task: Task, classes: Sequence[str]) -> list[str]:
    """What a model answers, as the prediction log, batch scoring and monitoring name it:
    score and label (binary); label and score:<class> per class (multiclass); value."""
    if task == "regression":
        return ["value"]
    if task == "multiclass":
        return ["label", *(score_column(str(c)) for c in classes)]
    return ["score", "label"]
