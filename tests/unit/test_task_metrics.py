"""Multiclass and regression metrics, slices, plots and the paired bootstrap, by hand and
against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from gitml.evaluate.evaluation import multiclass_outputs
from gitml.evaluate.metrics import (
    TaskOutputs,
    compute_task_metrics,
    compute_task_slices,
    mape_undefined,
    per_class_metrics,
    task_metric_arrays,
)
from gitml.evaluate.plots import MAX_SCATTER, predicted_vs_actual_points, roc_ovr_points
from gitml.review.bootstrap import bootstrap_output_intervals, paired_bootstrap_outputs
from gitml.tasks import METRICS

CLASSES = ["bird", "cat", "dog"]


def _regression(actual, predicted) -> TaskOutputs:
    actual = np.asarray(actual, dtype=float)
    return TaskOutputs(
        "regression", actual, np.asarray(predicted, dtype=float), (), mape_undefined(actual)
    )


def _multiclass(seed: int, n: int = 300, *, skill: float = 2.0) -> tuple[np.ndarray, TaskOutputs]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + skill * np.eye(3)[truth]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array(CLASSES, dtype=object)[truth]
    return labels, multiclass_outputs(labels, proba, CLASSES)


def test_regression_metrics_by_hand() -> None:
    # errors 1, 0, 0, -2: MSE 5/4; the actual values spread by 5 around their mean 2.5
    values = compute_task_metrics(_regression([1, 2, 3, 4], [2, 2, 3, 2]), METRICS["regression"])
    assert values == {"rmse": round(math.sqrt(1.25), 6), "mae": 0.75, "r2": 0.0, "mape": 0.375}


def test_regression_metrics_equal_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    actual = rng.normal(50, 10, 400)
    predicted = actual + rng.normal(0, 4, 400)
    values = compute_task_metrics(_regression(actual, predicted), METRICS["regression"])
    assert values["rmse"] == pytest.approx(skm.root_mean_squared_error(actual, predicted), abs=1e-6)
    assert values["mae"] == pytest.approx(skm.mean_absolute_error(actual, predicted), abs=1e-6)
    assert values["r2"] == pytest.approx(skm.r2_score(actual, predicted), abs=1e-6)
    expected_mape = skm.mean_absolute_percentage_error(actual, predicted)
    assert values["mape"] == pytest.approx(expected_mape, abs=1e-6)


def test_mape_is_null_with_a_reason_when_an_actual_value_is_about_zero() -> None:
    outputs = _regression([0.0, 10.0, 12.0, 9.0], [0.5, 10.0, 11.0, 9.5])
    assert "1 of 4 actual values are ~0" in (outputs.mape_undefined or "")
    values = compute_task_metrics(outputs, METRICS["regression"])
    assert values["mape"] is None
    assert values["rmse"] == pytest.approx(math.sqrt((0.25 + 1 + 0.25) / 4), abs=1e-6)
    # a small actual value relative to the others counts as ~0 too (<= 0.1 % of the median)
    assert mape_undefined(np.array([0.005, 10.0, 12.0])) is not None
    assert mape_undefined(np.array([-5.0, 10.0, 12.0])) is None


def test_multiclass_metrics_equal_scikit_learn() -> None:
    labels, outputs = _multiclass(1)
    predicted = np.array(CLASSES)[outputs.output.argmax(axis=1)]
    values = compute_task_metrics(outputs, METRICS["multiclass"])
    expected = {
        "accuracy": skm.accuracy_score(labels, predicted),
        "balanced_accuracy": skm.balanced_accuracy_score(labels, predicted),
        "f1_macro": skm.f1_score(labels, predicted, average="macro"),
        "f1_weighted": skm.f1_score(labels, predicted, average="weighted"),
        "log_loss": skm.log_loss(labels, outputs.output, labels=CLASSES),
        "roc_auc_ovr": skm.roc_auc_score(labels, outputs.output, multi_class="ovr"),
    }
    assert values == pytest.approx(expected, abs=1e-6)
    table = per_class_metrics(outputs)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        labels, predicted, labels=CLASSES
    )
    assert list(table) == CLASSES
    for i, label in enumerate(CLASSES):
        assert table[label] == pytest.approx(
            {"precision": precision[i], "recall": recall[i], "f1": f1[i], "support": support[i]},
            abs=1e-6,
        )


def test_integer_weights_equal_scikit_learn_on_repeated_rows() -> None:
    labels, outputs = _multiclass(2, n=120)
    counts = np.random.default_rng(0).integers(0, 4, len(labels))
    counts[:3] = 1  # every class drawn
    drawn = task_metric_arrays(outputs, counts[None, :].astype(float), ["f1_macro", "log_loss"])
    rows = np.repeat(np.arange(len(labels)), counts)
    predicted = np.array(CLASSES)[outputs.output.argmax(axis=1)]
    assert drawn["f1_macro"][0] == pytest.approx(
        skm.f1_score(labels[rows], predicted[rows], average="macro"), abs=1e-9
    )
    assert drawn["log_loss"][0] == pytest.approx(
        skm.log_loss(labels[rows], outputs.output[rows], labels=CLASSES), abs=1e-9
    )


def test_ovr_auc_is_undefined_without_every_class() -> None:
    _, outputs = _multiclass(4, n=60)
    no_dogs = outputs.subset(outputs.actual != 2)
    values = compute_task_metrics(no_dogs, ["roc_auc_ovr", "accuracy"])
    assert values["roc_auc_ovr"] is None and values["accuracy"] is not None


def test_slices_give_each_group_the_task_metrics_and_mark_small_groups() -> None:
    frame = pd.DataFrame({"region": ["north"] * 40 + ["south"] * 10})
    actual = np.arange(50, dtype=float) + 1
    outputs = _regression(actual, actual + np.where(np.arange(50) < 40, 1.0, 3.0))
    slices = compute_task_slices(
        frame, outputs, columns=["region"], names=["rmse", "mae"], min_rows=30
    )
    groups = slices["region"]["groups"]
    assert groups["north"] == {"rows": 40, "too_small": False, "rmse": 1.0, "mae": 1.0}
    assert groups["south"]["too_small"] is True and groups["south"]["rmse"] == 3.0
    assert slices["region"]["max_gap"] == {"rmse": None, "mae": None}  # one group judged


def test_plots_are_bounded_and_per_class() -> None:
    _, outputs = _multiclass(5)
    rows = roc_ovr_points(outputs.actual, outputs.output, CLASSES)
    assert {r["class"] for r in rows} == set(CLASSES)
    assert set(rows[0]) == {"class", "fpr", "tpr", "threshold"}
    actual = np.arange(5000, dtype=float)
    points = predicted_vs_actual_points(actual, actual * 1.1)
    assert len(points) == MAX_SCATTER
    assert points == predicted_vs_actual_points(actual, actual * 1.1)  # deterministic
    assert points[0]["actual"] == 0.0 and points[-1]["actual"] == 4999.0


def test_bootstrap_points_are_the_evaluated_metrics() -> None:
    _, base = _multiclass(6, skill=1.0)
    _, head = _multiclass(6, skill=1.0)
    deltas = paired_bootstrap_outputs(base, head, names=METRICS["multiclass"], resamples=200)
    points = compute_task_metrics(head, METRICS["multiclass"])
    for name, delta in deltas.items():
        assert delta.head == points[name]
        assert (delta.delta, delta.low, delta.high) == (0.0, 0.0, 0.0)  # same model


def test_a_regression_head_with_smaller_errors_has_an_rmse_interval_below_zero() -> None:
    rng = np.random.default_rng(7)
    actual = rng.normal(100, 20, 400)
    base = _regression(actual, actual + rng.normal(0, 10, 400))
    head = _regression(actual, actual + rng.normal(0, 5, 400))
    deltas = paired_bootstrap_outputs(base, head, names=["rmse", "mae", "r2"], resamples=300)
    rmse = deltas["rmse"]
    assert rmse.delta is not None and rmse.delta < -3
    assert rmse.low is not None and rmse.high is not None and rmse.low < rmse.high < 0
    assert deltas["r2"].low is not None and deltas["r2"].low > 0  # R² rises as RMSE falls


def test_chunking_and_seed() -> None:
    _, base = _multiclass(8, skill=1.0)
    _, head = _multiclass(9, skill=2.0)
    head = TaskOutputs("multiclass", base.actual, head.output, head.classes)
    one = paired_bootstrap_outputs(base, head, names=["f1_macro"], resamples=150, chunk_size=7)
    two = paired_bootstrap_outputs(base, head, names=["f1_macro"], resamples=150)
    assert one == two
    intervals = bootstrap_output_intervals(head, names=["f1_macro", "accuracy"], resamples=150)
    low, high = intervals["f1_macro"]
    assert low is not None and high is not None and low < two["f1_macro"].head < high


def test_bootstrap_refuses_another_task_metric_and_unpaired_rows() -> None:
    _, outputs = _multiclass(10, n=50)
    with pytest.raises(ValueError, match="unknown metrics \\['roc_auc'\\]"):
        paired_bootstrap_outputs(outputs, outputs, names=["roc_auc"], resamples=100)
    other = TaskOutputs("multiclass", outputs.actual[::-1].copy(), outputs.output, tuple(CLASSES))
    with pytest.raises(ValueError, match="same rows"):
        paired_bootstrap_outputs(outputs, other, names=["accuracy"], resamples=100)
