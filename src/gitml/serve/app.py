"""The HTTP API: a FastAPI app around one verified model, and the uvicorn runner.

Endpoints: `POST /v1/predict`, `GET /v1/model`, `GET /healthz`, `GET /readyz`,
`GET /metrics`. The request body is read as bytes (counted against `max_body_bytes` while it
streams in), parsed with orjson and checked by `InputSchema.check_records`, the same rules
`gitml predict` applies; bad input is answered with 400, 413, 415 or 422 and a body that
names the record, the field and the reason, never with a 5xx. A gzip body is decoded as it
streams in, and the limit applies to the decoded bytes.
"""

from __future__ import annotations

import copy
import json
import logging
import logging.config
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
import numpy as np
import orjson
from fastapi import FastAPI, Request, Response
from uvicorn.protocols.http.h11_impl import H11Protocol

from gitml.config.schema import ServeParams
from gitml.errors import InputError
from gitml.serve.batcher import Job, MicroBatcher
from gitml.serve.bundle import ServedModel
from gitml.serve.errors import (
    Refusal,
    error_body,
    error_response,
    install_error_handlers,
    problem,
    request_id_of,
)
from gitml.serve.fastpath import FastPathCheck, prepare_fast_path
from gitml.serve.inputs import Columns
from gitml.serve.openapi import PREDICT_OPENAPI, install_docs, install_openapi
from gitml.serve.outputs import (
    describe_output,
    output_columns,
    output_fields,
    record_schema,
    response_records,
)
from gitml.serve.predlog import LogEntry, PredictionLog
from gitml.serve.request_body import check_media_type, parse_records, read_body
from gitml.serve.telemetry import CONTENT_TYPE, ServeMetrics

_log = logging.getLogger(__name__)
_PATHS = {"/v1/predict", "/v1/model", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"}


@dataclass
class _State:
    served: ServedModel
    settings: ServeParams
    threshold: float
    metrics: ServeMetrics
    batcher: MicroBatcher
    log: PredictionLog | None
    ready: bool = False


def create_app(
    served: ServedModel,
    settings: ServeParams,
    *,
    threshold: float,
    log_dir: Path | None = None,
) -> FastAPI:
    """Build the app for `served`. `log_dir` enables the prediction log (None: off)."""
    schema = served.schema
    task = served.task
    metrics = ServeMetrics(
        name=served.name, version=served.version, commit=served.commit, task=task
    )
    log_cfg = settings.prediction_log
    log: PredictionLog | None = None

    def pipeline_score(columns: Columns) -> np.ndarray:
        return served.predict(schema.to_frame(columns))

    if settings.fast_path_max_rows > 0:
        check = prepare_fast_path(
            served.pipeline,
            schema,
            served.positive_class if task == "binary" else None,
            pipeline_score,
            task=task,
            target=served.target,
        )
    else:
        check = FastPathCheck(None, "off: serve.fast_path_max_rows is 0")
    fast = check.score
    fast_limit = settings.fast_path_max_rows if fast is not None else 0
    _log.info(
        "fast path %s",
        check.reason if fast is None else f"{check.reason}; used up to {fast_limit} rows",
    )

    def score(columns: Columns) -> np.ndarray:
        metrics.batch_rows.observe(columns.n)  # every call into the model, failed ones too
        if fast is not None and columns.n <= fast_limit:
            return fast(columns)
        return pipeline_score(columns)

    def after(jobs: list[Job], scores: np.ndarray) -> None:
        metrics.rows.inc(len(scores))
        if metrics.scores is not None:  # binary: the positive class's probability
            for value in scores.tolist():
                metrics.scores.observe(value)
        if log is not None:
            start = 0
            for job in jobs:
                part = scores[start : start + job.columns.n]
                start += job.columns.n
                log.append(
                    LogEntry(
                        job.request_id,
                        job.columns,
                        output_columns(served, part, threshold),
                        job.received,
                    )
                )  # never blocks: a full buffer drops the rows and counts them

    batcher = MicroBatcher(
        score,
        max_rows=settings.batch_max_rows,
        wait_ms=settings.batch_wait_ms,
        after=after,
        on_split=metrics.batch_splits.inc,
    )
    if log_dir is not None:
        metrics.watch_log(lambda: state.log.stats() if state.log is not None else None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal log
        if log_dir is not None:
            log = PredictionLog(
                log_dir,
                schema,
                model_name=served.name,
                model_version=served.version,
                outputs=output_fields(served),
                flush_rows=log_cfg.flush_rows,
                flush_seconds=log_cfg.flush_seconds,
                max_buffer_rows=log_cfg.max_buffer_rows,
                rotate_rows=log_cfg.rotate_rows,
                rotate_bytes=log_cfg.rotate_bytes,
                stall_seconds=log_cfg.stall_seconds,
            )
            state.log = log
        stopping = _ShutdownClock()
        batcher.start()
        state.ready = True
        try:
            yield
        finally:
            state.ready = False
            batcher.stop()  # scores what was accepted, then the log takes the last rows
            if log is not None:  # whatever time the shutdown bound leaves, and no more
                log.close(timeout=stopping.remaining(settings.shutdown_timeout_s))
            stopping.restore()

    app = FastAPI(
        title=f"gitml: {served.name}",
        version=served.version,
        description=_description(served),
        lifespan=lifespan,
        docs_url=None,  # install_docs: Swagger UI from the package, no CDN
        redoc_url=None,
    )
    state = _State(served, settings, threshold, metrics, batcher, log)
    app.state.gitml = state
    app.add_middleware(_MetricsMiddleware, metrics=metrics)
    install_error_handlers(app)
    model_info = served.describe() | {
        "output": describe_output(served, threshold),
        "threshold": threshold if task == "binary" else None,
        "fast_path_max_rows": fast_limit,
        "fast_path": check.reason,
    }
    model_body = orjson.dumps(model_info, option=orjson.OPT_SERIALIZE_NUMPY)
    identity = {"name": served.name, "version": served.version}

    declared = {
        *schema.names,
        served.target,  # a regression value that is not finite (`outputs.check_values`)
        "body",
        "records",
        "content-type",
        "content-encoding",
    }

    def field_label(field: Any) -> str:
        """A metric label for a problem's field: only names the server declares, so no client
        can grow `/metrics` by sending new field names."""
        return field if field in declared else "(undeclared)"

    def refuse(
        status: int,
        message: str,
        problems: list[dict[str, Any]],
        request_id: str,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """A refusal of the client's input, counted in /metrics by field and rule."""
        for found in problems:
            metrics.rejected_records.labels(field_label(found["field"]), found["rule"]).inc()
        return error_response(status, message, problems, request_id, headers=headers)

    @app.post(
        "/v1/predict",
        summary="Score records",
        openapi_extra=PREDICT_OPENAPI,
    )
    async def predict(request: Request) -> Response:
        request_id = request_id_of(request)
        try:
            check_media_type(request.headers.get("content-type"))
            body = await read_body(request, settings.max_body_bytes)
            records = parse_records(body, settings.max_records)
            columns = schema.check_records(
                records,
                unknown_category=settings.unknown_category,
                extra_fields=settings.extra_fields,
            )
        except Refusal as refusal:
            return refuse(
                refusal.status, str(refusal), [refusal.problem], request_id, refusal.headers
            )
        except InputError as err:
            return refuse(422, err.message, err.problems, request_id)
        for name, count in columns.unknown.items():
            metrics.unknown_categories.labels(name).inc(count)
        if columns.extra_fields:
            metrics.extra_fields.inc(columns.extra_fields)
        try:  # a failure while scoring is this request's own: the batcher re-scores the others
            scores = await batcher.submit(columns, request_id)
        except InputError as err:
            return refuse(422, err.message, err.problems, request_id)
        except Exception as err:  # the model failed on this request; the server lives on
            _log.error("request %s: scoring failed", request_id, exc_info=err)
            reason = "the model could not score these records; the server log has the details"
            return error_response(
                500, reason, [problem("server", "scoring_failed", reason)], request_id
            )
        payload = {
            "model": identity,
            "request_id": request_id,
            "predictions": response_records(served, scores, threshold),
        }
        return Response(
            orjson.dumps(payload),
            media_type="application/json",
            headers={"x-request-id": request_id},
        )

    @app.get("/v1/model", summary="The served model: identity, signature, headline metrics")
    async def model() -> Response:
        return Response(model_body, media_type="application/json")

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/readyz", summary="The model is loaded and scoring")
    async def readyz() -> Response:
        reason = None if state.ready and batcher.running else "starting or stopping"
        if reason is None and state.log is not None and log_cfg.on_error == "unready":
            trouble = state.log.failing()
            reason = None if trouble is None else f"prediction log: {trouble}"
        body = {"status": "ready"} if reason is None else {"status": "not ready", "reason": reason}
        status = 200 if reason is None else 503
        return Response(orjson.dumps(body), status_code=status, media_type="application/json")

    @app.get("/metrics", summary="Prometheus metrics of this process")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    install_openapi(
        app,
        schema,
        settings,
        model_example=orjson.loads(model_body),
        prediction_schema=record_schema(served),
    )
    install_docs(app)
    return app


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
    """Counts every response by path and status and times it (pure ASGI: cheap)."""

    def __init__(self, app: Any, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

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

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)


# -- running ---------------------------------------------------------------------------------

_SPEC_ENV = "GITML_SERVE_SPEC"


def run_server(
    served: ServedModel,
    settings: ServeParams,
    *,
    threshold: float,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    log_dir: Path | None = None,
    access_log: bool = False,
) -> None:
    """Serve until SIGINT or SIGTERM; then finish requests in flight and flush the log.

    With `workers` > 1, uvicorn starts that many processes; each loads and verifies the
    model again (from the same path) and keeps its own metrics and log files.
    """
    import uvicorn

    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "info",
        "access_log": access_log,
        "timeout_graceful_shutdown": settings.shutdown_timeout_s,
        "server_header": False,
        "log_config": _log_config(),
    }
    if workers <= 1:
        # before create_app, which logs the fast path's verdict; uvicorn applies it again
        logging.config.dictConfig(common["log_config"])
        app = create_app(served, settings, threshold=threshold, log_dir=log_dir)
        uvicorn.run(app, http=NoDelayH11Protocol, **common)
        return
    spec = {
        "model": str(served.path),
        "name": served.name,
        "version": served.version,
        "commit": served.commit,
        "metrics": served.metrics,
        "settings": settings.model_dump(mode="json"),
        "threshold": threshold,
        "log_dir": str(log_dir) if log_dir else None,
    }
    os.environ[_SPEC_ENV] = json.dumps(spec)
    uvicorn.run(
        "gitml.serve.app:app_from_environment",
        factory=True,
        workers=workers,
        http="gitml.serve.app:NoDelayH11Protocol",
        **common,
    )


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, with gitml's own messages (the prediction log's, failed scoring)
    printed the same way."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["gitml"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


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


def app_from_environment() -> FastAPI:
    """The app of one worker process of `run_server(workers > 1)` (uvicorn's factory)."""
    from gitml.serve.bundle import load_served_model

    spec = json.loads(os.environ[_SPEC_ENV])
    served = load_served_model(
        spec["model"],
        name=spec["name"],
        version=spec["version"],
        commit=spec["commit"],
        metrics=spec["metrics"],
    )
    return create_app(
        served,
        ServeParams.model_validate(spec["settings"]),
        threshold=spec["threshold"],
        log_dir=Path(spec["log_dir"]) if spec["log_dir"] else None,
    )
