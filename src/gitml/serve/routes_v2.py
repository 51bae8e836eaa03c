"""The Open Inference Protocol V2 (KServe, Triton, MLServer) beside `/v1`.

`GET /v2`, `GET /v2/health/live|ready`, `GET /v2/models/{name}[/versions/{version}]` and its
`/ready`, `POST /v2/models/{name}[/versions/{version}]/infer`. A model is found by name (the
first version given) or by name and version; its tensors become records (`v2_tensors`), which
are checked and scored like every protocol's (`ServeContext`), and the outputs become the
answer (`v2_responses`). Errors are `{"error": ...}`, as the protocol asks, with gitml's `problems`
and `request_id` beside it: 400 for any bad input (the protocol's status for a failed
inference), 413 for too large a request, 415 for a media type or encoding not taken, 404 for
a model or version not served; never a 5xx for a client's input.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request, Response

from gitml import __version__
from gitml.errors import InputError
from gitml.serve import request_body
from gitml.serve.context import ScoringFailed, ServeContext
from gitml.serve.errors import Refusal, error_response, problem, request_id_of
from gitml.serve.openapi_v2 import describe_operation, install_v2_openapi
from gitml.serve.request_body import read_body
from gitml.serve.routes_v1 import readiness_problem
from gitml.serve.runtime import ModelRuntime
from gitml.serve.v2_binary import HEADER_LENGTH
from gitml.serve.v2_metadata import model_metadata, server_metadata
from gitml.serve.v2_responses import encode_response, output_tensors
from gitml.serve.v2_tensors import parse_infer_request

_JSON = "application/json"
_BINARY = "application/octet-stream"


def install_v2(app: FastAPI, ctx: ServeContext) -> None:
    """Add the V2 routes (and their OpenAPI description) to `app`."""
    settings = ctx.settings
    deployment = ctx.deployment

    def versions_of(name: str) -> list[str]:
        return [r.key.version for r in deployment.runtimes if r.key.name == name]

    metadata: dict[Any, bytes] = {}  # by version and versions served: a reload changes both

    def metadata_of(runtime: ModelRuntime) -> bytes:
        versions = versions_of(runtime.key.name)
        key = (runtime.key, tuple(versions))
        body = metadata.get(key)
        if body is None:
            body = metadata[key] = orjson.dumps(
                model_metadata(
                    runtime.served,
                    runtime.schema,
                    name=runtime.key.name,
                    versions=versions,
                    threshold=runtime.threshold,
                )
            )
        return body

    server_body = orjson.dumps(server_metadata(__version__))

    def find(request: Request) -> ModelRuntime | Response:
        """The runtime the path names, or the 404 answer."""
        name = request.path_params["name"]
        version = request.path_params.get("version")
        runtime = deployment.find(name, version)
        if runtime is not None:
            return runtime
        if name not in deployment.names:
            reason = f"model {_shown(name)} is not served here; models: {deployment.names}"
            found = problem("model", "not_found", reason)
        else:
            reason = (
                f"model {name!r} has no version {_shown(version)} served here; "
                f"versions: {versions_of(name)}"
            )
            found = problem("version", "not_found", reason)
        return error_response(404, reason, [found], request_id_of(request))

    @app.get("/v2", **describe_operation("server_metadata"))
    async def server() -> Response:
        return Response(server_body, media_type=_JSON)

    @app.get("/v2/health/live", **describe_operation("live"))
    async def live() -> Response:
        return Response(b'{"live":true}', media_type=_JSON)

    @app.get("/v2/health/ready", **describe_operation("ready"))
    async def ready() -> Response:
        if readiness_problem(ctx) is None:
            return Response(b'{"ready":true}', media_type=_JSON)
        return Response(b'{"ready":false}', status_code=503, media_type=_JSON)

    async def model(request: Request) -> Response:
        runtime = find(request)
        if isinstance(runtime, Response):
            return runtime
        return Response(metadata_of(runtime), media_type=_JSON)

    async def model_ready(request: Request) -> Response:
        runtime = find(request)
        if isinstance(runtime, Response):
            return runtime
        body = {"name": runtime.key.name, "version": runtime.key.version, "ready": runtime.ready}
        status = 200 if runtime.ready else 503
        return Response(orjson.dumps(body), status_code=status, media_type=_JSON)

    async def infer(request: Request) -> Response:
        request_id = request_id_of(request)
        runtime = find(request)
        if isinstance(runtime, Response):
            return runtime
        served = runtime.served
        try:
            check_media_type(request.headers.get("content-type"))
            body = await read_body(request, settings.max_body_bytes)
            parsed = parse_infer_request(
                body,
                request.headers.get(HEADER_LENGTH),
                runtime.schema,
                output_names=[name for name, _ in output_tensors(served)],
                max_records=settings.max_records,
                extra_fields=settings.extra_fields,
            )
            if parsed.extra_values:
                ctx.metrics.extra_fields.inc(parsed.extra_values)
            columns = ctx.check(runtime, parsed.records)
            outputs = await ctx.infer(runtime, columns, request_id)
        except (Refusal, InputError, ScoringFailed) as err:
            return ctx.error_for(err, request_id, input_status=400)
        content, header_length = encode_response(
            served,
            outputs,
            runtime.threshold,
            parsed,
            model_name=runtime.key.name,
            model_version=runtime.key.version,
            response_id=parsed.id if parsed.id is not None else request_id,
        )
        headers = {"x-request-id": request_id}
        if header_length is None:
            return Response(content, media_type=_JSON, headers=headers)
        headers[HEADER_LENGTH] = str(header_length)
        return Response(content, media_type=_BINARY, headers=headers)

    names = deployment.names
    versions = list(dict.fromkeys(r.key.version for r in deployment.runtimes))
    for endpoint, method, name in (
        (model, "GET", "model_metadata"),
        (model_ready, "GET", "model_ready"),
        (infer, "POST", "infer"),
    ):
        suffix = {"model_metadata": "", "model_ready": "/ready", "infer": "/infer"}[name]
        app.add_api_route(
            f"/v2/models/{{name}}{suffix}",
            endpoint,
            methods=[method],
            **describe_operation(name, path={"name": names}),
        )
        app.add_api_route(
            f"/v2/models/{{name}}/versions/{{version}}{suffix}",
            endpoint,
            methods=[method],
            **describe_operation(name, path={"name": names, "version": versions}),
        )
    install_v2_openapi(app, ctx)


def check_media_type(content_type: str | None) -> None:
    """Refuse a body declared as neither JSON nor binary tensor data (none: JSON)."""
    request_body.check_media_type(
        content_type,
        also=(_BINARY,),
        reason=f"Content-Type {(content_type or '')[:100]!r} is not taken; send "
        "application/json, or application/octet-stream with Inference-Header-Content-Length "
        "(binary tensor data)",
    )


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."
