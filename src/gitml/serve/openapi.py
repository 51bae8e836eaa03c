"""The OpenAPI document of the HTTP API, generated from the routes and the model's signature."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from gitml.config.schema import ServeParams
from gitml.serve.errors import ERROR_SCHEMA
from gitml.serve.inputs import InputSchema

PREDICT_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}
        },
    },
    "responses": {
        "200": {
            "description": "One prediction per record, in order.",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/PredictResponse"}}
            },
        },
        **{
            code: {
                "description": text,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
            for code, text in (
                ("400", "Malformed JSON."),
                ("413", "Too many records, or the body is too large."),
                ("422", "Records that break the model's signature."),
            )
        },
    },
}


def install_openapi(app: FastAPI, schema: InputSchema, settings: ServeParams) -> None:
    """Make `app.openapi()` build the document once, with the request schema of `schema`."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = doc.setdefault("components", {}).setdefault("schemas", {})
            components["PredictRequest"] = schema.json_schema(
                max_records=settings.max_records,
                unknown_category=settings.unknown_category,
                extra_fields=settings.extra_fields,
            )
            components["PredictResponse"] = _RESPONSE_SCHEMA
            components["Error"] = ERROR_SCHEMA
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


_RESPONSE_SCHEMA = {
    "type": "object",
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
