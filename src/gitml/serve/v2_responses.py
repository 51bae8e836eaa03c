"""The Open Inference Protocol V2's response: a model's outputs as the tensors asked for, in
JSON or as binary tensor data. Pure: outputs in, bytes out.

Outputs by task: binary `score` (FP64, the positive class's probability) and `label`
(BYTES); multiclass `label`, `probabilities` (FP64, rows x classes in the signature's order)
and `score:<class>` for each class (the prediction log's column names); regression `value`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from gitml.serve.outputs import Served, labels_of
from gitml.serve.v2_binary import encode_bytes
from gitml.serve.v2_tensors import InferRequest, RequestedOutput
from gitml.tasks import score_column


def output_tensors(served: Served) -> list[tuple[str, str]]:
    """The model's outputs by task, as (name, datatype): binary `score` and `label`;
    multiclass `label`, `probabilities` (n x classes) and `score:<class>` for each class;
    regression `value`."""
    if served.task == "regression":
        return [("value", "FP64")]
    if served.task == "multiclass":
        per_class = [(score_column(c), "FP64") for c in served.classes]
        return [("label", "BYTES"), ("probabilities", "FP64"), *per_class]
    return [("score", "FP64"), ("label", "BYTES")]


def _output_arrays(
    served: Served, outputs: np.ndarray, threshold: float, names: Sequence[str]
) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for name in names:
        if name == "label":
            arrays[name] = labels_of(served, outputs, threshold)
        elif name in ("score", "value", "probabilities"):
            arrays[name] = outputs
        else:  # score:<class>
            arrays[name] = outputs[:, served.classes.index(name.partition(":")[2])]
    return arrays


def encode_response(
    served: Served,
    outputs: np.ndarray,
    threshold: float,
    request: InferRequest,
    *,
    model_name: str,
    model_version: str,
    response_id: str,
) -> tuple[bytes, int | None]:
    """The response body, and the length of its JSON header when binary data follows it
    (None: the body is all JSON)."""
    datatypes = dict(output_tensors(served))
    wanted = request.outputs or tuple(
        RequestedOutput(name, request.binary_output) for name in datatypes
    )
    arrays = _output_arrays(served, outputs, threshold, [w.name for w in wanted])
    described: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for want in wanted:
        array = arrays[want.name]
        datatype = datatypes[want.name]
        tensor: dict[str, Any] = {
            "name": want.name,
            "datatype": datatype,
            "shape": list(array.shape),
        }
        if want.binary:
            raw = encode_bytes(array.tolist()) if datatype == "BYTES" else _le_bytes(array)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            tensor["data"] = array.ravel().tolist()
        described.append(tensor)
    header = orjson.dumps(
        {
            "model_name": model_name,
            "model_version": model_version,
            "id": response_id,
            "outputs": described,
        }
    )
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


def _le_bytes(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array, dtype="<f8").tobytes()
