"""The HTTP API: a FastAPI app around one verified model, and the uvicorn runner.

Endpoints: `POST /v1/predict`, `GET /v1/model`, `GET /healthz`, `GET /readyz`,
`GET /metrics`. The request body is read as bytes (counted against `max_body_bytes` while it
streams in), parsed with orjson and checked by `InputSchema.check_records`, the same rules
`gitml predict` applies; bad input is answered with 400, 413 or 422 and a body that names
the record, the field and the reason, never with a 5xx.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
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

import numpy as np
import orjson
from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from uvicorn.protocols.http.h11_impl import H11Protocol

from gitml.config.schema import ServeParams
from gitml.errors import InputError
from gitml.serve.batcher import Job, MicroBatcher
from gitml.serve.bundle import ServedModel
from gitml.serve.fastpath import PARITY_TOLERANCE, compile_fast_path, verify_fast_path
from gitml.serve.inputs import Columns
from gitml.serve.predlog import LogEntry, PredictionLog
from gitml.serve.telemetry import CONTENT_TYPE, ServeMetrics

MAX_PROBLEMS_SHOWN = 100
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_log = logging.getLogger(__name__)
_PATHS = {"/v1/predict", "/v1/model", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"}


class _Refusal(Exception):
    """Bad input found before the records are checked: a status and one problem."""

    def __init__(self, status: int, field: str, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.problem = {"record": None, "field": field, "rule": rule, "reason": reason}


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
    metrics = ServeMetrics(name=served.name, version=served.version, commit=served.commit)
    log_cfg = settings.prediction_log
    log: PredictionLog | None = None

    def pipeline_score(columns: Columns) -> np.ndarray:
        return served.score(schema.to_frame(columns))

    fast = None
    if settings.fast_path_max_rows > 0:
        fast = compile_fast_path(served.pipeline, schema, served.positive_class)
        if fast is not None and verify_fast_path(fast, pipeline_score, schema) > PARITY_TOLERANCE:
            fast = None  # not the pipeline's arithmetic after all: never used
    fast_limit = settings.fast_path_max_rows if fast is not None else 0

    def score(columns: Columns) -> np.ndarray:
        metrics.batch_rows.observe(columns.n)  # every call into the model, failed ones too
        if fast is not None and columns.n <= fast_limit:
            return fast(columns)
        return pipeline_score(columns)

    def after(jobs: list[Job], scores: np.ndarray) -> None:
        metrics.rows.inc(len(scores))
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
                        part,
                        served.labels(part, threshold),
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
        description=f"Scores {served.signature['output'].get('score', 'the positive class')}.",
        lifespan=lifespan,
        redoc_url=None,
    )
    state = _State(served, settings, threshold, metrics, batcher, log)
    app.state.gitml = state
    app.add_middleware(_MetricsMiddleware, metrics=metrics)
    model_info = served.describe() | {"threshold": threshold, "fast_path_max_rows": fast_limit}
    model_body = orjson.dumps(model_info, option=orjson.OPT_SERIALIZE_NUMPY)
    identity = {"name": served.name, "version": served.version}

    declared = {*schema.names, "body", "records"}

    def field_label(field: Any) -> str:
        """A metric label for a problem's field: only names the server declares, so no client
        can grow `/metrics` by sending new field names."""
        return field if field in declared else "(undeclared)"

    def refuse(err: InputError, request_id: str) -> Response:
        for problem in err.problems:
            metrics.rejected_records.labels(field_label(problem["field"]), problem["rule"]).inc()
        return _error(422, err.message, err.problems, request_id)

    @app.post(
        "/v1/predict",
        summary="Score records",
        openapi_extra={
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
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/PredictResponse"}
                        }
                    },
                },
                **{
                    code: {
                        "description": text,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        },
                    }
                    for code, text in (
                        ("400", "Malformed JSON."),
                        ("413", "Too many records, or the body is too large."),
                        ("422", "Records that break the model's signature."),
                    )
                },
            },
        },
    )
    async def predict(request: Request) -> Response:
        request_id = _request_id(request)
        try:
            body = await _read_body(request, settings.max_body_bytes)
            records = _records(body, settings.max_records)
            columns = schema.check_records(
                records,
                unknown_category=settings.unknown_category,
                extra_fields=settings.extra_fields,
            )
        except _Refusal as refusal:
            problem = refusal.problem
            metrics.rejected_records.labels(field_label(problem["field"]), problem["rule"]).inc()
            return _error(refusal.status, str(refusal), [problem], request_id)
        except InputError as err:
            return refuse(err, request_id)
        for name, count in columns.unknown.items():
            metrics.unknown_categories.labels(name).inc(count)
        if columns.extra_fields:
            metrics.extra_fields.inc(columns.extra_fields)
        try:  # a failure while scoring is this request's own: the batcher re-scores the others
            scores = await batcher.submit(columns, request_id)
        except InputError as err:
            return refuse(err, request_id)
        except Exception as err:  # the model failed on this request; the server lives on
            _log.error("request %s: scoring failed", request_id, exc_info=err)
            reason = "the model could not score these records; the server log has the details"
            return _error(500, reason, [], request_id)
        labels = served.labels(scores, threshold)
        payload = {
            "model": identity,
            "request_id": request_id,
            "predictions": [
                {"score": s, "label": lab}
                for s, lab in zip(scores.tolist(), labels.tolist(), strict=True)
            ],
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
            components["Error"] = _ERROR_SCHEMA
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


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


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id")
    if given and _REQUEST_ID.match(given):
        return given
    return uuid.uuid4().hex


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise _Refusal(400, "body", "content_length", "Content-Length is not a number")
        if int(declared) > limit:
            raise _Refusal(
                413, "body", "max_bytes", f"body of {declared} bytes exceeds {limit} bytes"
            )
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            raise _Refusal(413, "body", "max_bytes", f"body exceeds {limit} bytes")
    return bytes(chunks)


def _records(body: bytes, max_records: int) -> Any:
    """The `records` list of a request body."""
    if not body:
        raise _Refusal(400, "body", "json", "empty body; expected a JSON object")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        payload = _lenient_json(body, err)
    if not isinstance(payload, dict):
        raise _Refusal(422, "body", "type", 'expected a JSON object {"records": [...]}')
    if "records" not in payload:
        raise _Refusal(422, "records", "missing", "required field is missing")
    unknown = [k for k in payload if k != "records"]
    if unknown:
        raise _Refusal(422, str(unknown[0]), "unknown_field", "is not a field of the request")
    records = payload["records"]
    if isinstance(records, list) and len(records) > max_records:
        raise _Refusal(
            413,
            "records",
            "max_items",
            f"at most {max_records} records per request (got {len(records)})",
        )
    return records


def _lenient_json(body: bytes, err: Exception) -> Any:
    """Parse JSON that only orjson refuses (NaN, Infinity): their fields are named later."""
    try:
        payload = json.loads(body, parse_constant=float)
    except (ValueError, RecursionError):
        detail = str(err).split(":", 1)[0]
        raise _Refusal(400, "body", "json", f"malformed JSON ({detail})") from None
    try:  # the one other thing orjson refuses and json accepts: a lone surrogate escape
        orjson.dumps(payload)
    except orjson.JSONEncodeError:
        raise _Refusal(
            400, "body", "unicode", "invalid Unicode: a lone surrogate escape (e.g. \\ud800)"
        ) from None
    return payload


def _error(status: int, message: str, problems: list[dict[str, Any]], request_id: str) -> Response:
    shown = problems[:MAX_PROBLEMS_SHOWN]
    body: dict[str, Any] = {"error": message, "request_id": request_id, "problems": shown}
    if len(problems) > len(shown):
        body["problems_not_shown"] = len(problems) - len(shown)
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={"x-request-id": request_id},
    )


_PROBLEM_SCHEMA = {
    "type": "object",
    "properties": {
        "record": {"type": ["integer", "null"], "description": "index in `records`"},
        "field": {"type": "string"},
        "rule": {"type": "string"},
        "reason": {"type": "string"},
        "value": {"description": "the offending value, when there is one"},
    },
}
_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "request_id": {"type": "string"},
        "problems": {"type": "array", "items": _PROBLEM_SCHEMA},
        "problems_not_shown": {"type": "integer"},
    },
}
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
        app = create_app(served, settings, threshold=threshold, log_dir=log_dir)
        uvicorn.run(app, **common)
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
    """uvicorn's h11 protocol with TCP_NODELAY on every connection.

    With `workers` > 1 uvicorn binds its socket with protocol 0, so asyncio does not set
    TCP_NODELAY on accepted connections, and each keep-alive response then waits for the
    client's delayed ACK: a 40 ms floor per request (uvicorn issue #3149).
    """

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


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
