"""The error body of every HTTP refusal: a message, the request id and the problems found.

The API's own refusals and the errors Starlette raises itself (404 for an unknown path, 405
for a method a path does not take) use the one shape, `application/json`, with the request
id in the body and in `X-Request-ID`. So does the 500 of a fault of the server's own.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

MAX_PROBLEMS_SHOWN = 100
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class Refusal(Exception):
    """Bad input found before the records are checked: a status and one problem."""

    def __init__(
        self,
        status: int,
        field: str,
        rule: str,
        reason: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.problem = problem(field, rule, reason)
        self.headers = headers


def request_id_of(request: Request) -> str:
    """The client's `X-Request-ID` when it is a safe token, else a new one."""
    given = request.headers.get("x-request-id")
    if given and _REQUEST_ID.match(given):
        return given
    return uuid.uuid4().hex


def error_response(
    status: int,
    message: str,
    problems: list[dict[str, Any]],
    request_id: str,
    *,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        error_body(message, problems, request_id),
        status_code=status,
        media_type="application/json",
        headers={**(headers or {}), "x-request-id": request_id},
    )


def error_body(message: str, problems: list[dict[str, Any]], request_id: str) -> bytes:
    shown = problems[:MAX_PROBLEMS_SHOWN]
    body: dict[str, Any] = {"error": message, "request_id": request_id, "problems": shown}
    if len(problems) > len(shown):
        body["problems_not_shown"] = len(problems) - len(shown)
    return orjson.dumps(body)


def install_error_handlers(app: FastAPI) -> None:
    """Answer Starlette's and FastAPI's own errors, and faults, with the error body."""
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _server_error)


def problem(field: str, rule: str, reason: str) -> dict[str, Any]:
    """One problem of a request as a whole (not of one record), in the documented shape."""
    return {"record": None, "field": field, "rule": rule, "reason": reason}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    method, path = request.method, request.url.path[:200]
    if exc.status_code == 404:
        reason = f"no endpoint {method} {path}; the endpoints are listed at /openapi.json"
        found = problem("path", "not_found", reason)
    elif exc.status_code == 405:
        allowed = {k.lower(): v for k, v in (exc.headers or {}).items()}.get("allow", "")
        reason = f"{path} does not take {method}; it takes {allowed}"
        found = problem("method", "method_not_allowed", reason)
    else:
        found = problem("request", f"http_{exc.status_code}", str(exc.detail))
    return error_response(
        exc.status_code, found["reason"], [found], request_id_of(request), headers=exc.headers
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = [
        problem(".".join(map(str, err.get("loc", ()))), err.get("type", "invalid"), err["msg"])
        for err in exc.errors()
    ]
    message = problems[0]["reason"] if problems else "invalid request"
    return error_response(422, message, problems, request_id_of(request))


async def _server_error(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after this answer, so uvicorn still logs the traceback
    request_id = request_id_of(request)
    reason = f"internal error ({type(exc).__name__}); the server log has the traceback"
    return error_response(500, reason, [problem("server", "internal", reason)], request_id)


PROBLEM_SCHEMA = {
    "type": "object",
    "properties": {
        "record": {"type": ["integer", "null"], "description": "index in `records`"},
        "field": {"type": "string"},
        "rule": {"type": "string"},
        "reason": {"type": "string"},
        "value": {"description": "the offending value, when there is one"},
    },
}
ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "request_id": {"type": "string"},
        "problems": {"type": "array", "items": PROBLEM_SCHEMA},
        "problems_not_shown": {"type": "integer"},
    },
}
