"""The model signature: the input/output contract that validation, serving and monitoring check."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.pipeline import Pipeline

from gitml.config.schema import DataParams

SIGNATURE_VERSION = 1


def build_signature(
    pipeline: Pipeline, data: DataParams, train: pd.DataFrame, *, model_name: str
) -> dict[str, Any]:
    """Describe inputs (type, categories, ranges, nullability, observed range) and the output."""
    inputs = []
    for name in data.features:
        spec = data.columns[name]
        entry: dict[str, Any] = {"name": name, "type": spec.type, "nullable": spec.nullable}
        if spec.categories is not None:
            entry["categories"] = list(spec.categories)
        if spec.allowed is not None:
            entry["allowed"] = [_plain(v) for v in spec.allowed]
        if spec.min is not None:
            entry["min"] = _plain(spec.min)
        if spec.max is not None:
            entry["max"] = _plain(spec.max)
        if spec.numeric:
            column = pd.to_numeric(train[name], errors="coerce")
            entry["observed"] = {"min": _plain(column.min()), "max": _plain(column.max())}
        inputs.append(entry)
    return {
        "signature_version": SIGNATURE_VERSION,
        "model_name": model_name,
        "inputs": inputs,
        "output": describe_output(pipeline, data),
    }


def describe_output(pipeline: Pipeline, data: DataParams) -> dict[str, Any]:
    """The signature's `output`: what the model says about a record, for `data.task`.

    Binary: the classes, the positive class and its probability (the score). Multiclass: the
    classes in the order of the model's probability columns. Regression: the predicted value.
    A signature without `task` (written before there were three) is binary.
    """
    target, task = data.target, data.task
    if task == "regression":
        return {"task": task, "target": target, "value": f"predicted {target}"}
    classes = [str(c) for c in pipeline.classes_]
    if task == "multiclass":
        return {
            "task": task,
            "target": target,
            "classes": classes,
            "scores": f"probability of each class of {target}",
        }
    return {
        "task": task,
        "target": target,
        "classes": classes,
        "positive_class": data.positive_class,
        "score": f"probability of {target} == {data.positive_class!r}",
    }


def _plain(value: Any) -> int | float | None:
    if value is None or pd.isna(value):
        return None
    number = float(value)
    return int(number) if number.is_integer() else number
