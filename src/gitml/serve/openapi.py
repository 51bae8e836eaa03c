"""The OpenAPI document of the HTTP API, and `/docs` (Swagger UI served from the package).

Every operation's responses are written here, with their media types and body schemas, and
replace what FastAPI would infer (it cannot see the bodies the routes build themselves). A
test compares them with real responses, and schemathesis checks the server against them.
"""

from __future__ import annotations

import copy
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from starlette.responses import FileResponse

from gitml.config.schema import ServeParams
from gitml.serve.errors import ERROR_SCHEMA, problem
from gitml.serve.inputs import InputSchema
from gitml.tasks import TASKS

METRICS_MEDIA_TYPE = "text/plain; version=0.0.4"
EXPLAIN_PARAMETER: dict[str, Any] = {
    "name": "explain",
    "in": "query",
    "required": False,
    "schema": {"type": "boolean", "default": False},
    "description": "`true`: each prediction also carries `explanation`, one contribution per "
    "input column that sums to `value - baseline` (see the `explanation` schema of "
    "`PredictResponse`). `false` or absent: no explanation. Any other value: 422 naming "
    "`explain`.",
}
PREDICT_OPENAPI: dict[str, Any] = {
    "parameters": [EXPLAIN_PARAMETER],
    "requestBody": {
        "required": True,
        "description": "`Content-Encoding: gzip` is accepted; the size limit is the decoded size.",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}
        },
    },
}


def _json(description: str, ref: str, **extra: Any) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{ref}"}
    return {
        "description": description,
        "content": {"application/json": {"schema": schema, **extra}},
    }


def _error(description: str, field: str, rule: str, reason: str) -> dict[str, Any]:
    example = {
        "error": reason,
        "request_id": "b00a2463e1054bdca5240a8680190dbb",
        "problems": [problem(field, rule, reason)],
    }
    return _json(description, "Error", example=example)


_INVALID_EXAMPLE = {
    "error": "record 1: field 'tenure': must be >= 0 (and 1 more)",
    "request_id": "75e1f659b9bb460db18b83f463f75681",
    "problems": [
        {"record": 1, "field": "tenure", "rule": "min", "reason": "must be >= 0", "value": -4},
        {
            "record": 1,
            "field": "contract",
            "rule": "category",
            "reason": "must be one of 'Month-to-month', 'One year', 'Two year'",
            "value": "Weekly",
        },
    ],
}
_RESPONSES: dict[tuple[str, str], dict[str, Any]] = {
    ("/v1/predict", "post"): {
        "200": _json("One prediction per record, in order.", "PredictResponse"),
        "400": _error(
            "Malformed JSON, an empty body, invalid Unicode or a corrupt gzip body.",
            "body",
            "json",
            "malformed JSON (unexpected end of data)",
        ),
        "413": _error(
            "Too many records, or the body (decoded) is too large.",
            "records",
            "max_items",
            "at most 1000 records per request (got 1200)",
        ),
        "415": _error(
            "A Content-Type other than JSON, or a Content-Encoding other than gzip.",
            "content-encoding",
            "encoding",
            "Content-Encoding 'br' is not supported; send gzip or no encoding",
        ),
        "422": _json(
            "Records that break the model's signature, or a body that is not a request.",
            "Error",
            example=_INVALID_EXAMPLE,
        ),
        "500": _error(
            "A fault of the server's own (never an answer to bad input).",
            "server",
            "internal",
            "internal error (RuntimeError); the server log has the traceback",
        ),
    },
    ("/v1/model", "get"): {"200": _json("The served model.", "ModelInfo")},
    ("/healthz", "get"): {
        "200": _json("The process is up.", "Health", example={"status": "ok"}),
    },
    ("/readyz", "get"): {
        "200": _json(
            "Ready: the model is loaded and scoring.", "Readiness", example={"status": "ready"}
        ),
        "503": _json(
            "Not ready: starting, stopping, or the prediction log failed.",
            "Readiness",
            example={"status": "not ready"},
        ),
    },
    ("/metrics", "get"): {
        "200": {
            "description": "Prometheus text exposition format, version 0.0.4.",
            "content": {
                METRICS_MEDIA_TYPE: {
                    "schema": {"type": "string"},
                    "example": "# HELP gitml_rows_scored_total Rows scored.\n"
                    "# TYPE gitml_rows_scored_total counter\ngitml_rows_scored_total 42.0\n",
                }
            },
        }
    },
}


def install_openapi(
    app: FastAPI,
    schema: InputSchema,
    settings: ServeParams,
    *,
    model_example: dict[str, Any],
    prediction_schema: dict[str, Any] | None = None,
    explanation: dict[str, Any] | None = None,
) -> None:
    """Make `app.openapi()` build the document once, with the request schema of `schema`.

    `model_example` (what `GET /v1/model` answers) is the example of that response;
    `prediction_schema` is the schema of one predicted record, which depends on the model's
    task (`gitml.serve.outputs.record_schema`; default: a binary model's). `explanation`
    (`GET /v1/model` "explanation") says in the `explain` parameter's description what this
    model's explanations are: method, output scale, baseline.
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            for path, operations in doc["paths"].items():
                for method, operation in operations.items():
                    if (path, method) in _RESPONSES:  # other protocols document their own
                        operation["responses"] = copy.deepcopy(_RESPONSES[(path, method)])
            if explanation is not None:
                _describe_explain(doc["paths"]["/v1/predict"]["post"], explanation)
            model = doc["paths"]["/v1/model"]["get"]["responses"]["200"]
            model["content"]["application/json"]["example"] = model_example
            components = doc.setdefault("components", {}).setdefault("schemas", {})
            components["PredictRequest"] = schema.json_schema(
                max_records=settings.max_records,
                unknown_category=settings.unknown_category,
                extra_fields=settings.extra_fields,
            )
            response: dict[str, Any] = copy.deepcopy(_RESPONSE_SCHEMA)
            if prediction_schema is not None:
                response["properties"]["predictions"]["items"] = prediction_schema
            components["PredictResponse"] = response
            components["Error"] = ERROR_SCHEMA
            components["ModelInfo"] = _MODEL_SCHEMA
            components["Health"] = _HEALTH_SCHEMA
            components["Readiness"] = _READINESS_SCHEMA
            components.update(getattr(app.state, "openapi_components", {}))
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _describe_explain(operation: dict[str, Any], explanation: dict[str, Any]) -> None:
    """The `explain` parameter's description, with what this model's explanations are."""
    for parameter in operation.get("parameters", []):
        if parameter.get("name") != "explain":
            continue
        if explanation.get("method") is None:
            text = f" This model cannot explain (422): {explanation.get('reason')}."
        else:
            baseline = explanation["baseline"]
            shown = (
                ", ".join(f"{k}: {v:.6g}" for k, v in baseline.items())
                if isinstance(baseline, dict)
                else f"{baseline:.6g}"
            )
            text = (
                f" This model: method `{explanation['method']}`; output `{explanation['output']}` "
                f"({explanation['output_meaning']}); baseline {shown}, reference "
                f"`{explanation['reference']}` ({explanation['reference_meaning']})."
            )
        parameter["description"] = EXPLAIN_PARAMETER["description"] + text


def add_openapi_components(app: FastAPI, schemas: dict[str, Any]) -> None:
    """Schemas that a protocol's routes refer to (`#/components/schemas/...`), added to the
    document `install_openapi` builds."""
    if not hasattr(app.state, "openapi_components"):
        app.state.openapi_components = {}
    app.state.openapi_components.update(schemas)


_ASSETS = {  # Swagger UI 5, as the fastapi-offline package ships it
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}


def install_docs(app: FastAPI) -> None:
    """`GET /docs`: Swagger UI with its script, style and icon served by this app.

    FastAPI's own `/docs` loads them from a CDN, so it shows an empty page on a machine
    without internet access; `validatorUrl: null` stops Swagger UI's call to its online
    validator.
    """
    assets = Path(str(files("fastapi_offline") / "static"))

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{root}/docs/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/docs/swagger-ui.css",
            swagger_favicon_url=f"{root}/docs/favicon.png",
            oauth2_redirect_url=None,
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/docs/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        if name not in _ASSETS:
            raise HTTPException(404)
        return FileResponse(
            assets / name,
            media_type=_ASSETS[name],
            headers={"cache-control": "public, max-age=3600"},
        )


_RESPONSE_SCHEMA = {
    "type": "object",
    "required": ["model", "request_id", "predictions"],
    "properties": {
        "model": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
        },
        "request_id": {"type": "string"},
        "predictions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "score": {"type": "number", "description": "probability of the positive class"},
                    "label": {"type": "string", "description": "the class at the threshold"},
                },
            },
        },
    },
}
_NAME_OR_NULL = {"type": ["string", "null"]}
_MODEL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "version", "commit", "task", "signature", "metrics", "threshold"],
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string", "description": "`unreleased` for a working-tree model"},
        "commit": _NAME_OR_NULL | {"description": "the Git commit the model was trained at"},
        "task": {"type": "string", "enum": list(TASKS)},
        "estimator": _NAME_OR_NULL,
        "model_sha256": _NAME_OR_NULL,
        "signature": {
            "type": "object",
            "description": "`models/signature.json`: the inputs and output the model takes",
            "required": ["inputs", "output"],
            "properties": {
                "signature_version": {"type": "integer"},
                "model_name": {"type": "string"},
                "inputs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "type", "nullable"],
                        "properties": {
                            "name": {"type": "string"},
                            "type": {"type": "string"},
                            "nullable": {"type": "boolean"},
                            "categories": {"type": "array", "items": {"type": "string"}},
                            "allowed": {"type": "array"},
                            "min": {"type": ["number", "null"]},
                            "max": {"type": ["number", "null"]},
                            "observed": {"type": "object"},
                        },
                    },
                },
                "output": {
                    "type": "object",
                    "properties": {
                        "task": {"type": "string"},
                        "target": {"type": "string"},
                        "classes": {"type": "array", "items": {"type": "string"}},
                        "positive_class": {"type": "string"},
                        "score": {"type": "string"},
                        "scores": {"type": "string"},
                        "value": {"type": "string"},
                    },
                },
            },
        },
        "metrics": {
            "type": "object",
            "description": "headline test-set metrics from `reports/metrics.json`",
            "additionalProperties": {"type": ["number", "null"]},
        },
        "output": {
            "type": "object",
            "description": "what each field of a predicted record means",
            "additionalProperties": {"type": "string"},
        },
        "threshold": {
            "type": ["number", "null"],
            "description": "binary: `label` is the positive class at score >= this; else null",
        },
        "explanation": {
            "type": "object",
            "description": "what `?explain=true` returns: method, output scale, baseline and "
            "its reference (`method` null and a `reason` when the model cannot explain)",
        },
        "fast_path_max_rows": {"type": "integer", "description": "0: the fast path is off"},
        "fast_path": {
            "type": "string",
            "description": "the start-up check's verdict: `on: ...` or `off: ` and why",
        },
    },
}
_HEALTH_SCHEMA = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"type": "string", "enum": ["ok"]}},
}
_READINESS_SCHEMA = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"type": "string", "examples": ["ready", "not ready"]},
        "reason": {"type": "string", "description": "why the server is not ready"},
    },
}
