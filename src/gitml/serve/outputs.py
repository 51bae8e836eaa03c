"""What a served model says about each record, by task: the HTTP answer, batch and log columns.

`ServedModel.predict` gives one array per call ("outputs"): binary, the probability of the
positive class (rows,); multiclass, the probability of each class (rows x classes, in the
signature's order); regression, the predicted value (rows,). This module turns it into

| task       | HTTP record                         | batch / prediction log columns  |
| ---------- | ----------------------------------- | ------------------------------- |
| binary     | `{"score", "label"}`                | `score`, `label`                |
| multiclass | `{"label", "scores": {class: p}}`   | `label`, `score:<class>` each   |
| regression | `{"value"}`                         | `value`                         |

A binary label is the positive class at `score >= threshold`; a multiclass label is the most
probable class (the first in signature order on a tie), as evaluate labels them.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from gitml.errors import InputError
from gitml.tasks import Task, output_names, score_column


class Served(Protocol):
    """What this module reads of a `gitml.serve.bundle.ServedModel` (which imports this one)."""

    @property
    def task(self) -> Task: ...
    @property
    def classes(self) -> list[str]: ...
    @property
    def positive_class(self) -> str: ...
    @property
    def negative_class(self) -> str: ...
    @property
    def signature(self) -> dict[str, Any]: ...


FINITE_PREDICTION_RULE = "finite_prediction"


def labels_of(served: Served, outputs: np.ndarray, threshold: float) -> np.ndarray:
    """The predicted class per record (classification): at the threshold, or the likeliest."""
    if served.task == "multiclass":
        return np.asarray(served.classes, dtype=object)[np.argmax(outputs, axis=1)]
    return np.where(outputs >= threshold, served.positive_class, served.negative_class)


def response_records(served: Served, outputs: np.ndarray, threshold: float) -> list[dict[str, Any]]:
    """One JSON object per record, in order: what `POST /v1/predict` answers."""
    if served.task == "regression":
        return [{"value": v} for v in outputs.tolist()]
    labels = labels_of(served, outputs, threshold).tolist()
    if served.task == "multiclass":
        classes = served.classes
        return [
            {"label": label, "scores": dict(zip(classes, row, strict=True))}
            for label, row in zip(labels, outputs.tolist(), strict=True)
        ]
    return [{"score": s, "label": lab} for s, lab in zip(outputs.tolist(), labels, strict=True)]


def output_fields(served: Served) -> list[tuple[str, pa.DataType]]:
    """The output columns of batch scoring and of the prediction log, in order."""
    names = output_names(served.task, served.classes)
    return [(name, pa.string() if name == "label" else pa.float64()) for name in names]


def output_columns(served: Served, outputs: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
    """The output columns (`output_fields`) of `outputs`, as numpy arrays: the prediction log
    turns them into Arrow on its writer thread, off the event loop."""
    if served.task == "regression":
        return {"value": outputs}
    labels = labels_of(served, outputs, threshold).astype(str)
    if served.task == "multiclass":
        columns = {"label": labels}
        for k, name in enumerate(served.classes):
            columns[score_column(name)] = outputs[:, k]
        return columns
    return {"score": outputs, "label": labels}


def empty_outputs(served: Served) -> np.ndarray:
    """Outputs for no rows, in the task's shape."""
    if served.task == "multiclass":
        return np.empty((0, len(served.classes)))
    return np.empty(0)


def check_values(outputs: np.ndarray, *, target: str) -> np.ndarray:
    """`outputs` (regression values, or multiclass probability rows), or InputError naming
    each record the model gave a value that is not a finite number: inputs so far outside
    the training range that the model's arithmetic overflows (a linear model's sum reaching
    infinity, a softmax of infinities). The client's input, refused like any other (422),
    never a server fault."""
    finite = np.isfinite(outputs)
    if finite.all():
        return outputs
    if outputs.ndim > 1:
        finite = finite.all(axis=1)
    bad = np.flatnonzero(~finite)
    what = "predicted" if outputs.ndim == 1 else "class probabilities of the predicted"
    reason = (
        f"the {what} {target} is not a finite number: the inputs are too far outside the "
        "range the model was trained on"
    )
    problems = [
        {"record": int(r), "field": target, "rule": FINITE_PREDICTION_RULE, "reason": reason}
        for r in bad
    ]
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    raise InputError(f"record {int(bad[0])}: {reason}{more}", problems=problems)


def describe_output(served: Served, threshold: float) -> dict[str, str]:
    """What each field of a predicted record means (`GET /v1/model` "output")."""
    out = served.signature["output"]
    target = str(out.get("target", "the target"))
    if served.task == "regression":
        return {"value": f"predicted {target}"}
    if served.task == "multiclass":
        return {
            "label": f"the most probable class of {target}",
            "scores": f"probability of each class of {target}: {{class: probability}}",
        }
    return {
        "score": str(out.get("score", "probability of the positive class")),
        "label": f"{served.positive_class!r} at score >= {threshold:g}, "
        f"else {served.negative_class!r}",
    }


def record_schema(served: Served) -> dict[str, Any]:
    """The JSON schema of one predicted record (OpenAPI `PredictResponse` items)."""
    if served.task == "regression":
        return {
            "type": "object",
            "required": ["value"],
            "properties": {"value": {"type": "number", "description": describe_value(served)}},
        }
    if served.task == "multiclass":
        classes = served.classes
        return {
            "type": "object",
            "required": ["label", "scores"],
            "properties": {
                "label": {
                    "type": "string",
                    "enum": classes,
                    "description": "the most probable class",
                },
                "scores": {
                    "type": "object",
                    "description": "probability of each class",
                    "required": classes,
                    "properties": {c: {"type": "number"} for c in classes},
                },
            },
        }
    return {
        "type": "object",
        "properties": {
            "score": {"type": "number", "description": "probability of the positive class"},
            "label": {"type": "string", "description": "the class at the threshold"},
        },
    }


def describe_value(served: Served) -> str:
    return f"predicted {served.signature['output'].get('target', 'value')}"
