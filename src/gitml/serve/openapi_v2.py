"""The OpenAPI description of the Open Inference Protocol V2 routes.

Every V2 operation documents its responses here (status, media type, body schema), and the
infer request's schema is generated from the served models' signatures, so schemathesis can
check the server against it and Swagger UI shows what each input takes. The routes declare no
FastAPI parameters (they read the path themselves), so FastAPI adds no 422 of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from gitml.serve.errors import problem
from gitml.serve.inputs import FieldRule, Policy
from gitml.serve.openapi import add_openapi_components
from gitml.serve.v2_metadata import EXTENSIONS, PLATFORM
from gitml.serve.v2_responses import output_tensors
from gitml.serve.v2_tensors import accepted_datatypes, declared_datatype

if TYPE_CHECKING:
    from gitml.serve.context import ServeContext
    from gitml.serve.runtime import ModelRuntime

TAG = "Open Inference Protocol V2"
_REQUEST_ID = "b00a2463e1054bdca5240a8680190dbb"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: str, example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": _ref(schema)}
    if example is not None:
        media["example"] = example
    return {"description": description, "content": {"application/json": media}}


def _error(description: str, field: str, rule: str, reason: str) -> dict[str, Any]:
    example = {
        "error": reason,
        "request_id": _REQUEST_ID,
        "problems": [problem(field, rule, reason)],
    }
    return _json(description, "Error", example)


_NOT_FOUND = _error(
    "No such model (or version) is served here.",
    "model",
    "not_found",
    "model 'churn' is not served here; models: ['churn-classifier']",
)
_PATH_PARAMETERS = {
    "name": {
        "name": "name",
        "in": "path",
        "required": True,
        "description": "The model's name (`GET /v1/model` `name`).",
        "schema": {"type": "string"},
    },
    "version": {
        "name": "version",
        "in": "path",
        "required": True,
        "description": "The model's version (a release tag's version, `unreleased` for a "
        "model from the working tree). Without it, the first version given to "
        "`gitml serve` answers.",
        "schema": {"type": "string"},
    },
}
_OPERATIONS: dict[str, dict[str, Any]] = {
    "server_metadata": {
        "summary": "V2 server metadata: name, version and the protocol extensions taken",
        "responses": {
            "200": _json(
                "The server's name, version and extensions.",
                "V2ServerMetadata",
                {"name": "gitml", "version": "0.1.0", "extensions": list(EXTENSIONS)},
            )
        },
    },
    "live": {
        "summary": "V2 liveness: the process is up",
        "responses": {"200": _json("Live.", "V2Live", {"live": True})},
    },
    "ready": {
        "summary": "V2 readiness: every model given is loaded and scoring",
        "responses": {
            "200": _json("Ready.", "V2Ready", {"ready": True}),
            "503": _json("Not ready: starting or stopping.", "V2Ready", {"ready": False}),
        },
    },
    "model_metadata": {
        "summary": "V2 model metadata: its inputs and outputs, from the signature",
        "description": "One input per signature column, named as the column, shape `[-1]` "
        "(`[n]` or `[n, 1]` are taken). Each input's `parameters` carry the signature's rules "
        "(type, nullable, categories, allowed values, range) and every datatype it takes.",
        "responses": {
            "200": _json("The model's metadata.", "V2ModelMetadata"),
            "404": _NOT_FOUND,
        },
    },
    "model_ready": {
        "summary": "V2 model readiness",
        "responses": {
            "200": _json(
                "The model is scoring.",
                "V2ModelReady",
                {"name": "churn-classifier", "version": "unreleased", "ready": True},
            ),
            "503": _json(
                "The model is not scoring yet (or any more).",
                "V2ModelReady",
                {"name": "churn-classifier", "version": "unreleased", "ready": False},
            ),
            "404": _NOT_FOUND,
        },
    },
    "infer": {
        "summary": "V2 inference: score the rows of the input tensors",
        "description": "One input per column of the model (`GET` the model for their names "
        "and datatypes), each of shape `[n]` or `[n, 1]`, with JSON `data` (flat or nested, "
        "row-major) or, with the binary tensor data extension, `parameters.binary_data_size` "
        "and the raw bytes after a JSON header of `Inference-Header-Content-Length` bytes. "
        "`outputs` selects outputs by name (default: all); `parameters.binary_data` (per "
        "output) or `parameters.binary_data_output` (per request) asks for binary output data. "
        "Every value is checked as `POST /v1/predict` checks it, and refused with the same "
        "problems (`record` is the row). `Content-Encoding: gzip` is taken; the size limit "
        "is the decoded size.",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _ref("V2InferenceRequest")},
                "application/octet-stream": {
                    "schema": {"type": "string", "format": "binary"},
                    "description": "The binary tensor data extension: a JSON "
                    "`V2InferenceRequest` of `Inference-Header-Content-Length` bytes, then each "
                    "binary input's bytes in order (numbers little-endian; BYTES elements as a "
                    "4-byte little-endian length and the UTF-8 text).",
                },
            },
        },
        "responses": {
            "200": {
                "description": "The outputs asked for. With binary outputs, the body is "
                "`application/octet-stream`: the JSON response of "
                "`Inference-Header-Content-Length` bytes, then each binary output's bytes.",
                "headers": {
                    "Inference-Header-Content-Length": {
                        "description": "With binary outputs: the length of the JSON header.",
                        "schema": {"type": "integer"},
                    }
                },
                "content": {
                    "application/json": {"schema": _ref("V2InferenceResponse")},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            "400": _error(
                "Bad input: malformed JSON or binary data, a missing, unknown or mistyped "
                "input, a shape that does not fit its data, or values that break the model's "
                "signature (the same problems as `/v1/predict`).",
                "contract",
                "datatype",
                "input 'contract' has datatype FP64, but the model's column 'contract' is a "
                "category (text): send BYTES",
            ),
            "404": _NOT_FOUND,
            "413": _error(
                "Too many rows, or the body (decoded) is too large.",
                "records",
                "max_items",
                "at most 1000 records per request (got 1200)",
            ),
            "415": _error(
                "A Content-Type other than JSON or binary tensor data, or a Content-Encoding "
                "other than gzip.",
                "content-type",
                "media_type",
                "Content-Type 'text/csv' is not taken; send application/json, or "
                "application/octet-stream with Inference-Header-Content-Length",
            ),
            "500": _error(
                "A fault of the server's own (never an answer to bad input).",
                "server",
                "internal",
                "internal error (RuntimeError); the server log has the traceback",
            ),
        },
    },
}


def describe_operation(name: str, *, path: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """The route options (`summary`, `tags`, the OpenAPI operation) of V2 operation `name`;
    `path`: the path parameters it takes, each with the values served (its `enum`)."""
    spec = dict(_OPERATIONS[name])
    extra: dict[str, Any] = {"responses": spec.pop("responses")}
    if "requestBody" in spec:
        extra["requestBody"] = spec.pop("requestBody")
    if path:
        extra["parameters"] = [
            _PATH_PARAMETERS[key] | {"schema": {"type": "string", "enum": values}}
            for key, values in path.items()
        ]
    return {"tags": [TAG], "openapi_extra": extra, **spec}


def install_v2_openapi(app: FastAPI, ctx: ServeContext) -> None:
    """Add the V2 schemas, the infer request's generated from the served signatures."""
    runtimes = ctx.deployment.runtimes
    settings = ctx.settings
    tensors: list[dict[str, Any]] = []
    for runtime in runtimes:
        for rule in runtime.schema.fields:
            schema = _tensor_schema(rule, settings.max_records, settings.unknown_category)
            if schema not in tensors:
                tensors.append(schema)
    request = {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string", "description": "echoed in the response"},
            "parameters": {
                "type": "object",
                "properties": {
                    "binary_data_output": {
                        "type": "boolean",
                        "description": "every output's data as binary (unless it says not)",
                    }
                },
            },
            "inputs": {"type": "array", "minItems": 1, "items": {"anyOf": tensors}},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "enum": _output_names(runtimes)},
                        "parameters": {
                            "type": "object",
                            "properties": {"binary_data": {"type": "boolean"}},
                        },
                    },
                },
            },
        },
        "example": _request_example(runtimes[0]),
    }
    add_openapi_components(
        app,
        {
            "V2ServerMetadata": _SERVER_SCHEMA,
            "V2Live": _flag_schema("live"),
            "V2Ready": _flag_schema("ready"),
            "V2ModelMetadata": _MODEL_SCHEMA,
            "V2ModelReady": _MODEL_READY_SCHEMA,
            "V2InferenceRequest": request,
            "V2InferenceResponse": _RESPONSE_SCHEMA | {"example": _response_example(runtimes[0])},
        },
    )


def _response_example(runtime: ModelRuntime) -> dict[str, Any]:
    """What the request example's answer looks like (the numbers are made up)."""
    served = runtime.served
    outputs = []
    for name, datatype in output_tensors(served):
        data: list[Any]
        shape = [1]
        if name == "label":
            data = [served.classes[0]]
        elif name == "probabilities":
            data = [round(1 / len(served.classes), 3)] * len(served.classes)
            shape = [1, len(served.classes)]
        elif name == "value":
            data = [1.0]
        else:
            data = [0.25]
        outputs.append({"name": name, "datatype": datatype, "shape": shape, "data": data})
    return {
        "model_name": runtime.key.name,
        "model_version": runtime.key.version,
        "id": "example-1",
        "outputs": outputs,
    }


def _output_names(runtimes: list[ModelRuntime]) -> list[str]:
    names: dict[str, None] = {}
    for runtime in runtimes:
        names.update(dict.fromkeys(name for name, _ in output_tensors(runtime.served)))
    return list(names)


def _tensor_schema(rule: FieldRule, max_records: int, unknown_category: Policy) -> dict[str, Any]:
    return {
        "type": "object",
        "title": rule.name,
        "required": ["name", "datatype", "shape", "data"],
        "properties": {
            "name": {"const": rule.name},
            "datatype": {"enum": list(accepted_datatypes(rule))},
            "shape": {
                "type": "array",
                "minItems": 1,
                "maxItems": 2,
                "items": {"type": "integer", "minimum": 0, "maximum": max_records},
                "description": "[n] or [n, 1]",
            },
            "data": {
                "type": "array",
                "maxItems": max_records,
                "items": rule.value_schema(unknown_category),
            },
        },
    }


def _request_example(runtime: ModelRuntime) -> dict[str, Any]:
    """A one-row request the model accepts: each column's first category or allowed value,
    else its minimum (0 without one)."""
    inputs = []
    for rule in runtime.schema.fields:
        value: Any
        if rule.categories:
            value = rule.categories[0]
        elif rule.allowed:
            value = _plain(rule.allowed[0])
        else:
            value = _plain(rule.min if rule.min is not None else 0.0)
            if rule.type == "float":
                value = float(value)
        inputs.append(
            {"name": rule.name, "datatype": declared_datatype(rule), "shape": [1], "data": [value]}
        )
    return {"id": "example-1", "inputs": inputs}


def _plain(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def _flag_schema(key: str) -> dict[str, Any]:
    return {"type": "object", "required": [key], "properties": {key: {"type": "boolean"}}}


_SERVER_SCHEMA = {
    "type": "object",
    "required": ["name", "version", "extensions"],
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "extensions": {"type": "array", "items": {"type": "string"}},
    },
}
_TENSOR_METADATA = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "parameters": {"type": "object"},
    },
}
_MODEL_SCHEMA = {
    "type": "object",
    "required": ["name", "versions", "platform", "inputs", "outputs"],
    "properties": {
        "name": {"type": "string"},
        "versions": {"type": "array", "items": {"type": "string"}},
        "platform": {"type": "string", "const": PLATFORM},
        "inputs": {"type": "array", "items": _TENSOR_METADATA},
        "outputs": {"type": "array", "items": _TENSOR_METADATA},
    },
}
_MODEL_READY_SCHEMA = {
    "type": "object",
    "required": ["name", "version", "ready"],
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "ready": {"type": "boolean"},
    },
}
_RESPONSE_SCHEMA = {
    "type": "object",
    "required": ["model_name", "model_version", "id", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string", "description": "the request's id, else its X-Request-ID"},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "datatype", "shape"],
                "properties": {
                    "name": {"type": "string"},
                    "datatype": {"type": "string", "enum": ["BYTES", "FP64"]},
                    "shape": {"type": "array", "items": {"type": "integer"}},
                    "data": {"type": "array", "items": {"type": ["string", "number"]}},
                    "parameters": {
                        "type": "object",
                        "properties": {"binary_data_size": {"type": "integer"}},
                    },
                },
            },
        },
    },
}
