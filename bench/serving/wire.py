"""The request bodies each protocol takes, and the scores read back from its answers.

Every answer is read into gitml's per-row outputs (`models.raw_outputs`): the positive class's
probability (binary), each class's in signature order (multiclass), the value (regression),
so that every server's answer is compared to the same raw pipeline outputs.

- v1: `{"records": [{column: value}]}` (gitml's own);
- v2: `{"inputs": [{"name", "shape": [n], "datatype", "data"}]}`, one input per column
  (BYTES, INT64, FP64);
- v2-pandas: the same with `"parameters": {"content_type": "pd"}` and the output asked for by
  name (MLServer's scikit-learn runtime answers `predict` otherwise);
- invocations: `{"dataframe_split": {"columns": [...], "data": [[...]]}}` (MLflow's protocol).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from serving.models import Model

V2_DATATYPES = {"int": "INT64", "float": "FP64", "category": "BYTES"}


@dataclass(frozen=True)
class Route:
    """One way to ask a server for predictions."""

    protocol: str
    path: str
    encode: Callable[[Model, list[dict[str, Any]]], bytes]
    decode: Callable[[Model, Any], list[list[float]]]


class AnswerError(Exception):
    """An answer the benchmark cannot read scores from (a protocol changed under it)."""


# --- requests ------------------------------------------------------------------------------------


def v1_body(model: Model, records: list[dict[str, Any]]) -> bytes:
    return json.dumps({"records": records}).encode()


def v2_inputs(model: Model, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": column["name"],
            "shape": [len(records)],
            "datatype": V2_DATATYPES[column["type"]],
            "data": [r[column["name"]] for r in records],
        }
        for column in model.columns
    ]


def v2_body(model: Model, records: list[dict[str, Any]]) -> bytes:
    return json.dumps({"inputs": v2_inputs(model, records)}).encode()


def v2_pandas_body(model: Model, records: list[dict[str, Any]]) -> bytes:
    """MLServer's scikit-learn runtime: the inputs as one DataFrame (pandas content type),
    and the method to call asked for by name (it answers `predict` otherwise)."""
    method = "predict" if model.task == "regression" else "predict_proba"
    body = {
        "parameters": {"content_type": "pd"},
        "inputs": v2_inputs(model, records),
        "outputs": [{"name": method}],
    }
    return json.dumps(body).encode()


def invocations_body(model: Model, records: list[dict[str, Any]]) -> bytes:
    data = [[r[c] for c in model.features] for r in records]
    return json.dumps({"dataframe_split": {"columns": model.features, "data": data}}).encode()


# --- answers -------------------------------------------------------------------------------------


def _record_outputs(model: Model, record: dict[str, Any]) -> list[float]:
    """One /v1 record: {"score", "label"}, {"label", "scores"} or {"value"}."""
    if model.task == "regression":
        return [float(record["value"])]
    if model.task == "multiclass":
        return [float(record["scores"][c]) for c in model.classes]
    return [float(record["score"])]


def read_v1(model: Model, payload: Any) -> list[list[float]]:
    return [_record_outputs(model, r) for r in payload["predictions"]]


def _pipeline_row(model: Model, row: list[float]) -> list[float]:
    """A predict_proba row (classes_ order) as gitml's outputs."""
    if model.task == "regression":
        return [float(row[0])]
    if model.task == "binary":
        return [float(row[model.pipeline_classes.index(str(model.positive_class))])]
    return [float(row[model.pipeline_classes.index(c)]) for c in model.classes]


def _rows(output: dict[str, Any]) -> list[list[float]]:
    """A V2 output tensor's data (flat, row-major) as rows."""
    shape, data = output["shape"], output["data"]
    width = 1 if len(shape) < 2 else int(shape[1])
    return [list(data[i : i + width]) for i in range(0, len(data), width)]


def read_v2(model: Model, payload: Any) -> list[list[float]]:
    """gitml's V2 answer: `score` (binary), `value` (regression), per-class probabilities as
    one `probabilities` tensor (rows x classes) or one `score:<class>` tensor each."""
    outputs = {o["name"]: o for o in payload["outputs"]}
    if model.task == "multiclass":
        if "probabilities" in outputs:
            return [[float(x) for x in row] for row in _rows(outputs["probabilities"])]
        names = [f"score:{c}" for c in model.classes]
        if all(n in outputs for n in names):
            return [
                [float(x) for x in row]
                for row in zip(*(outputs[n]["data"] for n in names), strict=True)
            ]
    else:
        for name in ("value",) if model.task == "regression" else ("score", "probability"):
            if name in outputs:
                return [[float(x)] for x in outputs[name]["data"]]
    raise AnswerError(f"no {model.task} scores among the V2 outputs {sorted(outputs)}")


def read_v2_pandas(model: Model, payload: Any) -> list[list[float]]:
    """MLServer: the one output asked for, predict_proba's rows or predict's values."""
    (output,) = payload["outputs"]
    return [_pipeline_row(model, row) for row in _rows(output)]


def read_invocations(model: Model, payload: Any) -> list[list[float]]:
    """`{"predictions": ...}`: gitml's records, or a bare value (or probability row) per row
    as MLflow's pyfunc answers."""
    predictions = payload["predictions"]
    if isinstance(predictions, dict):  # column-wise
        columns = zip(*predictions.values(), strict=True)
        predictions = [dict(zip(predictions, row, strict=True)) for row in columns]
    if predictions and isinstance(predictions[0], dict):
        return [_record_outputs(model, r) for r in predictions]
    if predictions and isinstance(predictions[0], list):
        return [_pipeline_row(model, row) for row in predictions]
    return [[float(x)] for x in predictions]


def gitml_routes(model: Model) -> dict[str, Route]:
    """gitml's three protocols for `model` (the bare name routes to the first version)."""
    return {
        "v1": Route("v1", "/v1/predict", v1_body, read_v1),
        "v2": Route("v2", f"/v2/models/{model.name}/infer", v2_body, read_v2),
        "invocations": Route("invocations", "/invocations", invocations_body, read_invocations),
    }


def mlserver_route(model: Model) -> Route:
    return Route("v2-pandas", f"/v2/models/{model.name}/infer", v2_pandas_body, read_v2_pandas)


def mlflow_route() -> Route:
    return Route("invocations", "/invocations", invocations_body, read_invocations)
