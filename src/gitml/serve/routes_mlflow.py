"""MLflow's scoring protocol: `POST /invocations`, `GET /ping`, `/health` and `/version`.

MLflow's own clients (`ScoringServerClient`, `mlflow models predict`-style requests) and
`/ping`-style health checks work unmodified. `/invocations` scores with the deployment's
default model (the first one given), through the same checks and micro-batcher as
`/v1/predict` (`mlflow_inputs` turns the body into records).

Where gitml answers differently from MLflow's scoring server, on purpose:
- `predictions` is a list of records like `/v1/predict`'s (`{"score", "label"}` for a binary
  model, `{"label", "scores"}` multiclass, `{"value"}` regression), not MLflow's bare list of
  labels: `PredictionsResponse.get_predictions()` turns it into a DataFrame with those columns;
- errors are MLflow's `{"error_code", "message"}` with gitml's `request_id` and field-level
  `problems` beside them, always JSON (MLflow's 415 is plain text); records that break the
  signature are 400 `INVALID_PARAMETER_VALUE`, as MLflow answers a schema failure, and every
  other bad body 400 `BAD_REQUEST`, 413 or 415;
- `/ping` and `/health` answer 503 while the models are not scoring (MLflow: 404 when no model
  is loaded, which its server never serves), like `/readyz`;
- `/version` answers gitml's version and the served model's identity as JSON, not MLflow's
  version as text: no MLflow is running, and the model version is what a caller checks.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request, Response

from gitml import __version__
from gitml.config.schema import ServeParams
from gitml.errors import InputError
from gitml.serve.context import ScoringFailed, ServeContext, scoring_failed_problem
from gitml.serve.errors import MAX_PROBLEMS_SHOWN, PROBLEM_SCHEMA, Refusal, request_id_of
from gitml.serve.inputs import InputSchema
from gitml.serve.mlflow_inputs import (
    CSV_MEDIA_TYPE,
    JSON_MEDIA_TYPE,
    media_type_of,
    parse_invocation,
)
from gitml.serve.outputs import record_schema, response_records
from gitml.serve.request_body import read_body
from gitml.serve.routes_v1 import readiness_problem
from gitml.serve.runtime import ModelRuntime

PATHS = ("/invocations", "/ping", "/health", "/version")

# MLflow's error codes (mlflow.protos.databricks_pb2.ErrorCode names)
BAD_REQUEST = "BAD_REQUEST"
INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"  # MLflow's code for a schema failure
REQUEST_LIMIT_EXCEEDED = "REQUEST_LIMIT_EXCEEDED"
INTERNAL_ERROR = "INTERNAL_ERROR"


TAG = "MLflow scoring protocol"  # the group of these routes in /docs


def install_mlflow(app: FastAPI, ctx: ServeContext) -> None:
    settings = ctx.settings
    deployment = ctx.deployment
    docs = _openapi(deployment.default, settings)

    def refuse(
        status: int,
        message: str,
        problems: list[dict[str, Any]],
        request_id: str,
        headers: dict[str, str] | None = None,
        *,
        code: str = BAD_REQUEST,
    ) -> Response:
        ctx.count_refusal(problems)
        return error_response(status, code, message, problems, request_id, headers=headers)

    @app.post(
        "/invocations",
        summary="Score a DataFrame (MLflow's scoring protocol)",
        tags=[TAG],
        openapi_extra={"requestBody": docs["request"]},
        responses=docs["invocations"],
    )
    async def invocations(request: Request) -> Response:
        request_id = request_id_of(request)
        runtime = deployment.default  # per request: a reload may replace it
        try:
            media_type = media_type_of(request.headers.get("content-type"))
            body = await read_body(request, settings.max_body_bytes)
            records = parse_invocation(body, media_type, max_records=settings.max_records)
            columns = ctx.check(runtime, records)
            scores = await ctx.infer(runtime, columns, request_id)
        except Refusal as refusal:
            code = REQUEST_LIMIT_EXCEEDED if refusal.status == 413 else BAD_REQUEST
            return refuse(
                refusal.status,
                _message(refusal.problem),
                [refusal.problem],
                request_id,
                refusal.headers,
                code=code,
            )
        except InputError as err:
            return refuse(400, err.message, err.problems, request_id, code=INVALID_PARAMETER_VALUE)
        except ScoringFailed as err:
            problems = [scoring_failed_problem()]
            return error_response(500, INTERNAL_ERROR, str(err), problems, request_id)
        predictions = response_records(runtime.served, scores, runtime.threshold)
        return Response(
            orjson.dumps({"predictions": predictions}),
            media_type=JSON_MEDIA_TYPE,
            headers={"x-request-id": request_id},
        )

    async def ping() -> Response:
        reason = readiness_problem(ctx)
        body = {"status": "ready"} if reason is None else {"status": "not ready", "reason": reason}
        status = 200 if reason is None else 503
        return Response(orjson.dumps(body), status_code=status, media_type=JSON_MEDIA_TYPE)

    for path in ("/ping", "/health"):
        app.get(
            path,
            summary="Ready: every model is loaded and scoring (MLflow's health check)",
            tags=[TAG],
            responses=docs["ping"],
        )(ping)

    @app.get(
        "/version",
        summary="gitml's version and the model /invocations scores with",
        tags=[TAG],
        responses=docs["version"],
    )
    async def version() -> Response:
        served = deployment.default.served
        model = {"name": served.name, "version": served.version, "commit": served.commit}
        return Response(
            orjson.dumps({"gitml": __version__, "model": model}), media_type=JSON_MEDIA_TYPE
        )


def error_response(
    status: int,
    code: str,
    message: str,
    problems: list[dict[str, Any]],
    request_id: str,
    *,
    headers: dict[str, str] | None = None,
) -> Response:
    """MLflow's error body (`error_code`, `message`) with gitml's request id and problems."""
    shown = problems[:MAX_PROBLEMS_SHOWN]
    body: dict[str, Any] = {
        "error_code": code,
        "message": message,
        "request_id": request_id,
        "problems": shown,
    }
    if len(problems) > len(shown):
        body["problems_not_shown"] = len(problems) - len(shown)
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type=JSON_MEDIA_TYPE,
        headers={**(headers or {}), "x-request-id": request_id},
    )


def _message(found: dict[str, Any]) -> str:
    """A refusal's message, naming the field unless the reason starts with it."""
    field, reason = found["field"], found["reason"]
    if field in ("body", "content-type") or reason.startswith(repr(field)):
        return reason
    return f"field {field!r}: {reason}"


# -- the OpenAPI entries ---------------------------------------------------------------------


def _openapi(runtime: ModelRuntime, settings: ServeParams) -> dict[str, Any]:
    """The request body and responses of each route, from the default model's signature."""
    schema, max_records = runtime.schema, settings.max_records
    request = schema.json_schema(
        max_records=max_records,
        unknown_category=settings.unknown_category,
        extra_fields=settings.extra_fields,
    )
    records = request["properties"]["records"]
    record = records["items"]
    by_column = {
        "type": "object",
        "description": "column -> one value per record",
        "properties": {
            name: {"type": "array", "maxItems": max_records, "items": spec}
            for name, spec in record["properties"].items()
        },
        "required": record["required"],
        "additionalProperties": record["additionalProperties"],
    }
    split = {
        "type": "object",
        "description": "pandas' `to_dict(orient='split')`: `data` rows in `columns` order",
        "required": ["columns", "data"],
        "additionalProperties": False,
        "properties": {
            "columns": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            "data": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_records,
                "items": {"type": "array"},
            },
            "index": {"type": "array", "description": "row labels (ignored)"},
        },
    }
    forms = {
        "dataframe_split": split,
        "dataframe_records": records,
        "instances": {"oneOf": [records, by_column]},
        "inputs": {"oneOf": [records, by_column]},
    }
    params = {
        "type": ["object", "null"],
        "maxProperties": 0,
        "description": "the model takes no parameters: omit, null or {}",
    }
    body = {
        "oneOf": [
            {
                "type": "object",
                "required": [name],
                "additionalProperties": False,
                "properties": {name: form, "params": params},
            }
            for name, form in forms.items()
        ]
    }
    row = _example_row(schema)
    example = {"dataframe_split": {"columns": schema.names, "data": [row]}}
    header = ",".join(schema.names)
    line = ",".join(f'"{v}"' if isinstance(v, str) else str(v) for v in row)
    scored = {
        "type": "object",
        "required": ["predictions"],
        "properties": {
            "predictions": {"type": "array", "items": record_schema(runtime.served)},
        },
    }
    return {
        "request": {
            "required": True,
            "description": "Exactly one of `dataframe_split`, `dataframe_records`, `instances` "
            "or `inputs` (JSON; a NaN number is a missing value, as pandas writes one), or "
            "CSV with a header row (empty cells are missing). `Content-Encoding: gzip` is "
            "accepted; the size limit is the decoded size.",
            "content": {
                JSON_MEDIA_TYPE: {"schema": body, "example": example},
                CSV_MEDIA_TYPE: {
                    "schema": {"type": "string"},
                    "example": f"{header}\n{line}\n",
                },
            },
        },
        "invocations": {
            "200": _json("One prediction per record, in order.", scored),
            "400": _error(
                "A body that is not one of the protocol's forms (BAD_REQUEST), or records "
                "that break the model's signature (INVALID_PARAMETER_VALUE).",
                INVALID_PARAMETER_VALUE,
                "record 0: field 'tenure': must be >= 0",
                {"record": 0, "field": "tenure", "rule": "min", "reason": "must be >= 0"},
            ),
            "413": _error(
                "Too many records, or the body (decoded) is too large.",
                REQUEST_LIMIT_EXCEEDED,
                f"at most {max_records} records per request (got {max_records + 1})",
                {"record": None, "field": "records", "rule": "max_items", "reason": "..."},
            ),
            "415": _error(
                "A Content-Type other than application/json or text/csv (charset utf-8), or "
                "a Content-Encoding other than gzip.",
                BAD_REQUEST,
                "Content-Type 'text/plain': this server takes application/json and text/csv",
                {"record": None, "field": "content-type", "rule": "media_type", "reason": "..."},
            ),
            "500": _error(
                "A fault of the server's own (never an answer to bad input).",
                INTERNAL_ERROR,
                "the model could not score these records; the server log has the details",
                {"record": None, "field": "server", "rule": "scoring_failed", "reason": "..."},
            ),
        },
        "ping": {
            "200": _json("Ready.", _READINESS, example={"status": "ready"}),
            "503": _json(
                "Not ready: starting, stopping, or the prediction log failed.",
                _READINESS,
                example={"status": "not ready", "reason": "starting or stopping"},
            ),
        },
        "version": {
            "200": _json(
                "gitml's version, and the name, version and commit of the model "
                "/invocations scores with.",
                _VERSION,
            )
        },
    }


def _example_row(schema: InputSchema) -> list[Any]:
    """A valid row of the signature: the first category, allowed value or bound of each."""
    row: list[Any] = []
    for rule in schema.fields:
        if rule.categories:
            row.append(rule.categories[0])
            continue
        bounds = [v for v in (rule.min, rule.max) if v is not None]
        value = rule.allowed[0] if rule.allowed else (bounds[0] if bounds else 0.0)
        row.append(int(value) if rule.type == "int" else float(value))
    return row


def _json(description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {JSON_MEDIA_TYPE: {"schema": schema, **extra}}}


def _error(description: str, code: str, message: str, problem: dict[str, Any]) -> dict[str, Any]:
    example = {
        "error_code": code,
        "message": message,
        "request_id": "b00a2463e1054bdca5240a8680190dbb",
        "problems": [problem],
    }
    return _json(description, ERROR_SCHEMA, example=example)


ERROR_SCHEMA = {
    "type": "object",
    "required": ["error_code", "message", "request_id", "problems"],
    "properties": {
        "error_code": {
            "type": "string",
            "enum": [BAD_REQUEST, INVALID_PARAMETER_VALUE, REQUEST_LIMIT_EXCEEDED, INTERNAL_ERROR],
        },
        "message": {"type": "string"},
        "request_id": {"type": "string"},
        "problems": {"type": "array", "items": PROBLEM_SCHEMA},
        "problems_not_shown": {"type": "integer"},
    },
}
_READINESS = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"type": "string", "enum": ["ready", "not ready"]},
        "reason": {"type": "string"},
    },
}
_NAME_OR_NULL = {"type": ["string", "null"]}
_VERSION = {
    "type": "object",
    "required": ["gitml", "model"],
    "properties": {
        "gitml": {"type": "string", "description": "gitml's version"},
        "model": {
            "type": "object",
            "required": ["name", "version", "commit"],
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "commit": _NAME_OR_NULL,
            },
        },
    },
}
