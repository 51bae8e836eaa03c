"""Assemble evaluation outputs (metrics, slice metrics, predictions, curves) from what the model
says about the test rows, for each task (`gitml.tasks`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gitml.config.schema import Params
from gitml.errors import DataError
from gitml.evaluate.metrics import (
    TaskOutputs,
    compute_metrics,
    compute_slices,
    compute_task_metrics,
    compute_task_slices,
    mape_undefined,
    per_class_metrics,
    predicted_index,
)
from gitml.evaluate.plots import (
    calibration_points,
    precision_recall_points,
    predicted_vs_actual_points,
    residual_points,
    roc_ovr_points,
    roc_points,
)
from gitml.tasks import score_column


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, Any]
    slices: dict[str, Any]
    predictions: pd.DataFrame
    plots: dict[str, list[dict[str, Any]]]


def evaluate_scores(test: pd.DataFrame, score: np.ndarray, params: Params) -> Evaluation:
    """Metrics overall and per slice, per-row predictions and curve data for the test set."""
    data, cfg = params.data, params.evaluate
    labels = test[data.target].astype(str)
    y_true = (labels == data.positive_class).to_numpy(dtype=int)
    negative = next(
        c for c in data.columns[data.target].categories or [] if c != data.positive_class
    )
    predicted = np.where(score >= cfg.threshold, data.positive, negative)
    predictions = pd.DataFrame(
        {
            "row_id": test.index.to_numpy(),
            "actual": labels.to_numpy(),
            "predicted": predicted,
            "score": np.round(score, 10),
        }
    )
    predictions = _committable(predictions, cfg.max_prediction_rows)
    metrics = {
        "model_name": params.project.model_name,
        "estimator": params.model.name,
        "threshold": cfg.threshold,
        "test_set": {
            "rows": len(test),
            "positives": int(y_true.sum()),
            "fingerprint": fingerprint_rows(test.index.to_numpy(), labels.to_numpy()),
            "predictions_saved": len(predictions),
        },
        "metrics": compute_metrics(y_true, score, threshold=cfg.threshold, names=cfg.metrics),
    }
    slices = {
        "threshold": cfg.threshold,
        "min_slice_rows": cfg.min_slice_rows,
        "slices": compute_slices(
            test,
            y_true,
            score,
            columns=cfg.slices,
            threshold=cfg.threshold,
            names=cfg.metrics,
            min_rows=cfg.min_slice_rows,
        ),
    }
    plots = {
        "roc": roc_points(y_true, score),
        "precision_recall": precision_recall_points(y_true, score),
        "calibration": calibration_points(y_true, score, bins=cfg.calibration_bins),
    }
    return Evaluation(metrics=metrics, slices=slices, predictions=predictions, plots=plots)


def evaluate_output(
    test: pd.DataFrame, output: np.ndarray, params: Params, *, classes: list[str] | None = None
) -> Evaluation:
    """`evaluate_scores` for multiclass and regression: `output` is `predict_frame`'s
    (multiclass: probabilities in the order of `classes`, the model's `classes_`;
    regression: predicted values)."""
    data, cfg = params.data, params.evaluate
    if data.task == "binary":
        raise ValueError("a binary model's positive-class scores go to evaluate_scores")
    if data.task == "multiclass":
        labels = test[data.target].astype(str).to_numpy()
        outputs = multiclass_outputs(labels, output, [str(c) for c in classes or []])
        predicted = np.asarray(outputs.classes, dtype=object)[predicted_index(output)]
        columns = {score_column(c): np.round(output[:, i], 10) for i, c in enumerate(classes or [])}
        predictions = pd.DataFrame(
            {"row_id": test.index.to_numpy(), "actual": labels, "predicted": predicted, **columns}
        )
        counts = {c: int((labels == c).sum()) for c in outputs.classes}
        test_set: dict[str, Any] = {"rows": len(test), "class_counts": counts}
        plots = {"roc_ovr": roc_ovr_points(outputs.actual, output, outputs.classes)}
    else:
        actual = test[data.target].to_numpy(dtype=float)
        labels = test[data.target].astype(str).to_numpy()
        value = np.asarray(output, dtype=float)
        outputs = TaskOutputs("regression", actual, value, mape_undefined=mape_undefined(actual))
        predictions = pd.DataFrame(
            {
                "row_id": test.index.to_numpy(),
                "actual": test[data.target].to_numpy(),  # as declared: an int stays an int
                "predicted": np.round(value, 10),
            }
        )
        test_set = {"rows": len(test)}
        plots = {
            "predicted_vs_actual": predicted_vs_actual_points(actual, value),
            "residuals": residual_points(actual, value),
        }
    predictions = _committable(predictions, cfg.max_prediction_rows)
    test_set.update(
        fingerprint=fingerprint_rows(test.index.to_numpy(), labels),
        predictions_saved=len(predictions),
    )
    if data.task == "multiclass":  # the contract's key order: rows, fingerprint, ..., counts
        test_set["class_counts"] = test_set.pop("class_counts")
    metrics: dict[str, Any] = {
        "model_name": params.project.model_name,
        "estimator": params.model.name,
        "task": data.task,
        "test_set": test_set,
        "metrics": compute_task_metrics(outputs, cfg.metrics),
    }
    if data.task == "multiclass":
        metrics["per_class"] = per_class_metrics(outputs)
    if "mape" in cfg.metrics and outputs.mape_undefined is not None:
        metrics["undefined"] = {"mape": outputs.mape_undefined}
    slices = {
        "min_slice_rows": cfg.min_slice_rows,
        "slices": compute_task_slices(
            test, outputs, columns=cfg.slices, names=cfg.metrics, min_rows=cfg.min_slice_rows
        ),
    }
    return Evaluation(metrics=metrics, slices=slices, predictions=predictions, plots=plots)


def multiclass_outputs(labels: np.ndarray, proba: np.ndarray, classes: list[str]) -> TaskOutputs:
    """Multiclass outputs from class labels and probabilities (columns in `classes` order)."""
    index = {c: i for i, c in enumerate(classes)}
    actual = np.array([index.get(str(v), -1) for v in labels], dtype=np.intp)
    return TaskOutputs("multiclass", actual, np.asarray(proba, dtype=float), tuple(classes))


def outputs_from_predictions(
    frame: pd.DataFrame, task: str, *, source: str = "reports/predictions.csv"
) -> TaskOutputs:
    """A multiclass or regression model's outputs, read back from its predictions.csv rows
    (multiclass: the `score:<class>` columns, in file order; regression: `predicted`)."""
    if task == "multiclass":
        columns = [c for c in frame.columns if str(c).startswith(score_column(""))]
        if not columns:
            raise DataError(f"{source} has no score:<class> columns (a multiclass model's)")
        classes = [c[len(score_column("")) :] for c in columns]
        proba = frame[columns].to_numpy(dtype=float)
        return multiclass_outputs(frame["actual"].astype(str).to_numpy(), proba, classes)
    if task == "regression":
        if "predicted" not in frame:
            raise DataError(f"{source} has no 'predicted' column (a regression model's values)")
        try:
            actual = frame["actual"].to_numpy(dtype=float)
            value = frame["predicted"].to_numpy(dtype=float)
        except ValueError as err:
            raise DataError(f"{source}: actual/predicted are not numbers ({err})") from err
        return TaskOutputs("regression", actual, value, mape_undefined=mape_undefined(actual))
    raise ValueError(f"outputs_from_predictions covers multiclass and regression, not {task}")


def fingerprint_rows(row_ids: np.ndarray, labels: np.ndarray) -> str:
    """A short hash of which rows (and labels) make up a test set: equal means comparable."""
    digest = hashlib.sha256()
    digest.update(np.asarray(row_ids, dtype=np.int64).tobytes())
    digest.update("\x1f".join(map(str, labels)).encode("utf-8"))
    return digest.hexdigest()[:16]


def _committable(predictions: pd.DataFrame, limit: int) -> pd.DataFrame:
    """At most `limit` rows, chosen by a hash of the row id: the same rows in every revision
    that shares the test set, so paired comparisons stay possible; metrics use all rows."""
    if len(predictions) <= limit:
        return predictions
    ids = predictions["row_id"].to_numpy().astype(np.uint64)
    with np.errstate(over="ignore"):
        keys = ids * np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: a fixed permutation
    keep = np.sort(np.argsort(keys, kind="stable")[:limit])
    return predictions.iloc[keep].reset_index(drop=True)
