"""The Open Inference Protocol V2's metadata: the server's, and each model's inputs and
outputs, generated from its signature so that they say what the model takes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gitml.serve.inputs import FieldRule, InputSchema
from gitml.serve.outputs import Served
from gitml.serve.v2_responses import output_tensors
from gitml.serve.v2_tensors import accepted_datatypes, declared_datatype

PLATFORM = "gitml-sklearn"
EXTENSIONS = ("binary_tensor_data",)


def server_metadata(version: str) -> dict[str, Any]:
    """`GET /v2`."""
    return {"name": "gitml", "version": version, "extensions": list(EXTENSIONS)}


def model_metadata(
    served: Served,
    schema: InputSchema,
    *,
    name: str,
    versions: Sequence[str],
    threshold: float,
) -> dict[str, Any]:
    """`GET /v2/models/{name}[/versions/{version}]`: the inputs and outputs, from the signature.

    Each input's `parameters` say what its values must be (the signature's rules) and which
    datatypes it takes besides the declared one."""
    return {
        "name": name,
        "versions": list(versions),
        "platform": PLATFORM,
        "inputs": [_input_metadata(rule) for rule in schema.fields],
        "outputs": _outputs_metadata(served, threshold),
    }


def _input_metadata(rule: FieldRule) -> dict[str, Any]:
    parameters: dict[str, Any] = {"type": rule.type, "nullable": rule.nullable}
    if rule.categories is not None:
        parameters["categories"] = list(rule.categories)
    if rule.allowed is not None:
        parameters["allowed"] = [_plain(v) for v in rule.allowed]
    if rule.min is not None:
        parameters["min"] = _plain(rule.min)
    if rule.max is not None:
        parameters["max"] = _plain(rule.max)
    parameters["datatypes"] = list(accepted_datatypes(rule))
    return {
        "name": rule.name,
        "datatype": declared_datatype(rule),
        "shape": [-1],
        "parameters": parameters,
    }


def _outputs_metadata(served: Served, threshold: float) -> list[dict[str, Any]]:
    target = str(served.signature["output"].get("target", "the target"))
    described: list[dict[str, Any]] = []
    for name, datatype in output_tensors(served):
        shape = [-1, len(served.classes)] if name == "probabilities" else [-1]
        parameters: dict[str, Any]
        if name == "label" and served.task == "binary":
            parameters = {
                "description": f"{served.positive_class!r} at score >= {threshold:g}, "
                f"else {served.negative_class!r}",
                "classes": served.classes,
                "threshold": threshold,
            }
        elif name == "label":
            parameters = {"description": f"the most probable class of {target}"}
        elif name == "score":
            parameters = {"description": f"probability of {target} == {served.positive_class!r}"}
        elif name == "probabilities":
            parameters = {
                "description": f"probability of each class of {target}, in `classes` order",
                "classes": served.classes,
            }
        elif name == "value":
            parameters = {"description": f"predicted {target}"}
        else:
            parameters = {"description": f"probability of {target} == {name.partition(':')[2]!r}"}
        described.append(
            {"name": name, "datatype": datatype, "shape": shape, "parameters": parameters}
        )
    return described


def _plain(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)
