"""The HTTP API: a FastAPI app around verified models (`gitml.serve.server` runs it).

Endpoints: `POST /v1/predict`, `GET /v1/model`, `GET /healthz`, `GET /readyz`,
`GET /metrics`, and the Open Inference Protocol V2 under `/v2` (`routes_v2`). The request
body is read as bytes (counted against `max_body_bytes` while it streams in), parsed with
orjson and checked by `InputSchema.check_records`, the same rules `gitml predict` applies;
bad input is answered with 400, 413, 415 or 422 and a body that names the record, the field
and the reason, never with a 5xx. A gzip body is decoded as it streams in, and the limit
applies to the decoded bytes.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import h11
import orjson
from fastapi import FastAPI, Response
from uvicorn.protocols.http.h11_impl import H11Protocol

from gitml.config.schema import ServeParams
from gitml.serve import routes_mlflow
from gitml.serve.bundle import ServedModel
from gitml.serve.context import ServeContext
from gitml.serve.deployment import Deployment
from gitml.serve.errors import error_body, install_error_handlers, problem
from gitml.serve.explanations import explanation_schema
from gitml.serve.openapi import install_docs, install_openapi
from gitml.serve.outputs import record_schema
from gitml.serve.reload import HangUp, Reloader
from gitml.serve.routes_v1 import PATHS as V1_PATHS
from gitml.serve.routes_v1 import TAG as V1_TAG
from gitml.serve.routes_v1 import install_v1
from gitml.serve.routes_v2 import install_v2
from gitml.serve.runtime import ModelRuntime
from gitml.serve.telemetry import CONTENT_TYPE, ServeMetrics

_log = logging.getLogger(__name__)
_PATHS = {*V1_PATHS, *routes_mlflow.PATHS, "/metrics", "/docs", "/openapi.json"}


def create_app(
    deployment: Deployment | ServedModel,
    settings: ServeParams,
    *,
    threshold: float | None = None,
    log_dir: Path | None = None,
    reloader: Reloader | None = None,
) -> FastAPI:
    """Build the app for `deployment` (or one model, served with `threshold`). `log_dir`
    enables the prediction log (None: off); `reloader` rebuilds the deployment on SIGHUP."""
    if isinstance(deployment, ServedModel):
        if threshold is None:
            raise TypeError("create_app(served, ...) needs the threshold")
        deployment = Deployment([ModelRuntime(deployment, settings, threshold=threshold)])
    metrics = ServeMetrics(binary=any(r.served.task == "binary" for r in deployment.all()))
    for runtime in deployment.all():
        runtime.metrics = metrics
        metrics.add_model(runtime.served.name, runtime.served.version, runtime.served.commit)
    ctx = ServeContext(deployment, settings, metrics, log_dir)
    if log_dir is not None:
        metrics.watch_log(
            lambda: [
                *(r.log.stats() for r in deployment.all() if r.log is not None),
                *deployment.retired_logs,
            ]
        )
    if deployment.shadow is not None:
        for outcome in ("ok", "failed", "timeout", "skipped"):
            metrics.shadow_requests.labels(outcome)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stopping = _ShutdownClock()
        for runtime in deployment.all():
            runtime.start(log_dir)
        hangup = HangUp(ctx, reloader)
        try:
            yield
        finally:
            hangup.restore()
            if reloader is not None:
                await reloader.stop(stopping.remaining(settings.shutdown_timeout_s))
            for runtime in deployment.runtimes:  # scores what was accepted
                runtime.stop_scoring()
            if deployment.shadow is not None:  # its last requests, within the bounds
                bound = stopping.remaining(settings.shutdown_timeout_s)
                await deployment.wait_shadow(min(settings.shadow_timeout_s, bound))
            deployment.close()
            if deployment.shadow is not None:
                deployment.shadow.stop_scoring()
            for runtime in deployment.all():  # whatever time the shutdown bound leaves
                runtime.close_log(stopping.remaining(settings.shutdown_timeout_s))
            stopping.restore()

    served = deployment.default.served
    app = FastAPI(
        title=f"gitml: {served.name}",
        version=served.version,
        description=_description(served),
        lifespan=lifespan,
        docs_url=None,  # install_docs: Swagger UI from the package, no CDN
        redoc_url=None,
    )
    app.state.gitml = ctx
    app.add_middleware(_MetricsMiddleware, metrics=metrics, deployment=deployment)
    install_error_handlers(app)
    install_v1(app, ctx)
    install_v2(app, ctx)

    @app.get("/metrics", summary="Prometheus metrics of this process", tags=[V1_TAG])
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    routes_mlflow.install_mlflow(app, ctx)
    install_openapi(
        app,
        served.schema,
        settings,
        model_example=orjson.loads(
            orjson.dumps(deployment.default.describe(), option=orjson.OPT_SERIALIZE_NUMPY)
        ),
        prediction_schema=_with_explanation(
            record_schema(served), explanation_schema(deployment.default.explainer)
        ),
        explanation=deployment.default.explainer.describe(),
    )
    install_docs(app)
    return app


def _with_explanation(record: dict[str, Any], explanation: dict[str, Any]) -> dict[str, Any]:
    """A predicted record's schema with its optional `explanation` (`?explain=true`)."""
    return record | {"properties": record["properties"] | {"explanation": explanation}}


def _description(served: ServedModel) -> str:
    output = served.signature["output"]
    if served.task == "regression":
        return f"Predicts {output.get('target', 'the target')} (`value`)."
    if served.task == "multiclass":
        return f"Scores the {output.get('scores', 'probability of each class')}."
    return f"Scores {output.get('score', 'the positive class')}."


_EXIT_SECONDS = 0.5  # uvicorn's last steps and the interpreter's exit, after the lifespan


class _ShutdownClock:
    """When the server was told to stop: it wraps the SIGTERM and SIGINT handlers (uvicorn's,
    installed before the lifespan starts) to note the time, so that the whole shutdown, not
    each of its steps, stays within `serve.shutdown_timeout_s`."""

    def __init__(self) -> None:
        self.signalled: float | None = None
        self._saved: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return  # an app served from a thread (tests): uvicorn handles no signals there
        for sig in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(sig)
            if callable(handler):
                self._saved[sig] = handler
                signal.signal(sig, self._note(handler))

    def _note(self, handler: Callable[[int, Any], Any]) -> Callable[[int, Any], Any]:
        def noted(signum: int, frame: Any) -> Any:
            if self.signalled is None:
                self.signalled = time.monotonic()
            return handler(signum, frame)

        return noted

    def remaining(self, bound: float) -> float:
        """Seconds left of `bound` since the signal (all of it without one), less what the
        process takes to exit afterwards."""
        spent = 0.0 if self.signalled is None else time.monotonic() - self.signalled
        return max(0.0, bound - spent - _EXIT_SECONDS)

    def restore(self) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


class _MetricsMiddleware:
    """Counts every response by path and status and times it (pure ASGI: cheap); runs each
    request inside `Deployment.serving` (in flight for a reload; the shadow after the
    response)."""

    def __init__(self, app: Any, metrics: ServeMetrics, deployment: Deployment) -> None:
        self.app = app
        self.metrics = metrics
        self.deployment = deployment

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        path = scope["path"] if scope["path"] in _PATHS else "other"

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with self.deployment.serving():
            try:
                await self.app(scope, receive, send_status)
            finally:
                route = scope.get("route")  # a matched route's template (/v2/models/{name}/infer)
                if path == "other" and route is not None:
                    path = getattr(route, "path", path)
                self.metrics.requests.labels(path, str(status)).inc()
                self.metrics.latency.labels(path).observe(time.perf_counter() - started)


# -- the HTTP protocol -----------------------------------------------------------------------


class NoDelayH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with TCP_NODELAY on every connection, and the error body on
    the 400 it sends itself for a request it cannot parse (uvicorn's is plain text).

    With `workers` > 1 uvicorn binds its socket with protocol 0, so asyncio does not set
    TCP_NODELAY on accepted connections, and each keep-alive response then waits for the
    client's delayed ACK: a 40 ms floor per request (uvicorn issue #3149).
    """

    def connection_made(self, transport: Any) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)

    def send_400_response(self, msg: str) -> None:
        request_id = uuid.uuid4().hex
        reason = "invalid HTTP request: its request line or a header could not be parsed"
        body = error_body(reason, [problem("request", "http", reason)], request_id)
        headers = [
            (b"content-type", b"application/json"),
            (b"x-request-id", request_id.encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()
