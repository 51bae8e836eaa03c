"""gitml's own protocol: `POST /v1/predict`, `GET /v1/model`, `GET /healthz`, `GET /readyz`.

`/v1/predict` takes `{"records": [...]}` and scores with the deployment's default model (the
first one given); with `?explain=true` each prediction also carries its `explanation`
(`gitml.serve.explanations`). Bad input is answered with 400, 413, 415 or 422 and a body
that names the record, the field and the reason (`gitml.serve.errors`), never with a 5xx.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request, Response

from gitml.errors import InputError
from gitml.serve.context import ScoringFailed, ServeContext, explain_scored
from gitml.serve.errors import Refusal, request_id_of
from gitml.serve.explanations import explanation_records
from gitml.serve.openapi import PREDICT_OPENAPI
from gitml.serve.outputs import response_records
from gitml.serve.request_body import check_media_type, parse_records, read_body

TAG = "gitml"  # the group of these routes (and /metrics) in /docs
PATHS = ("/v1/predict", "/v1/model", "/healthz", "/readyz")


def install_v1(app: FastAPI, ctx: ServeContext) -> None:
    settings = ctx.settings
    deployment = ctx.deployment

    @app.post("/v1/predict", summary="Score records", openapi_extra=PREDICT_OPENAPI, tags=[TAG])
    async def predict(request: Request) -> Response:
        request_id = request_id_of(request)
        runtime = deployment.default
        try:
            explain = explain_flag(request.query_params.getlist("explain"))
            check_media_type(request.headers.get("content-type"))
            body = await read_body(request, settings.max_body_bytes)
            records = parse_records(body, settings.max_records)
            columns = ctx.check(runtime, records)
            # explained first: a record it refuses (not finite) is then neither scored nor
            # logged, as with every other refusal
            explained = await explain_scored(runtime, columns, request_id) if explain else None
            scores = await ctx.infer(runtime, columns, request_id)
        except (Refusal, InputError, ScoringFailed) as err:
            return ctx.error_for(err, request_id, input_status=422)
        served = runtime.served
        predictions = response_records(served, scores, runtime.threshold)
        if explained is not None:
            assert runtime.explainer.explainer is not None
            for record, why in zip(
                predictions,
                explanation_records(runtime.explainer.explainer, explained),
                strict=True,
            ):
                record["explanation"] = why
        payload = {
            "model": {"name": served.name, "version": served.version},
            "request_id": request_id,
            "predictions": predictions,
        }
        return Response(
            orjson.dumps(payload),
            media_type="application/json",
            headers={"x-request-id": request_id},
        )

    described: dict[Any, bytes] = {}  # by version: the default changes on a reload

    @app.get(
        "/v1/model", summary="The served model: identity, signature, headline metrics", tags=[TAG]
    )
    async def model() -> Response:
        runtime = deployment.default
        body = described.get(runtime.key)
        if body is None:
            body = orjson.dumps(runtime.describe(), option=orjson.OPT_SERIALIZE_NUMPY)
            described[runtime.key] = body
        return Response(body, media_type="application/json")

    @app.get("/healthz", summary="The process is up", tags=[TAG])
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/readyz", summary="The model is loaded and scoring", tags=[TAG])
    async def readyz() -> Response:
        reason = readiness_problem(ctx)
        body = {"status": "ready"} if reason is None else {"status": "not ready", "reason": reason}
        status = 200 if reason is None else 503
        return Response(orjson.dumps(body), status_code=status, media_type="application/json")


EXPLAIN_VALUES = {"true": True, "false": False, "1": True, "0": False}


def explain_flag(given: list[str]) -> bool:
    """The `explain` query parameter: true or false (also 1 or 0; absent: false), else a
    422 naming it."""
    if not given:
        return False
    value = given[-1].strip().lower()
    if len(set(given)) > 1 or value not in EXPLAIN_VALUES:
        shown = ", ".join(repr(v[:40]) for v in given[:3])
        raise Refusal(
            422,
            "explain",
            "query_parameter",
            f"query parameter 'explain' must be true or false (got {shown})",
        )
    return EXPLAIN_VALUES[value]


def readiness_problem(ctx: ServeContext) -> str | None:
    """Why the server is not ready (None: ready): a primary model not scoring, or, with
    `prediction_log.on_error: unready`, a primary's prediction log in trouble."""
    if not ctx.deployment.ready:
        return "starting or stopping"
    if ctx.settings.prediction_log.on_error == "unready":
        for runtime in ctx.deployment.runtimes:
            trouble = runtime.log.failing() if runtime.log is not None else None
            if trouble is not None:
                return f"prediction log: {trouble}"
    return None
