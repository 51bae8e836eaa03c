"""The error body of every HTTP refusal: a message, the request id and the problems found."""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson
from fastapi import Request, Response

MAX_PROBLEMS_SHOWN = 100
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class Refusal(Exception):
    """Bad input found before the records are checked: a status and one problem."""

    def __init__(self, status: int, field: str, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.problem = {"record": None, "field": field, "rule": rule, "reason": reason}


def request_id_of(request: Request) -> str:
    """The client's `X-Request-ID` when it is a safe token, else a new one."""
    given = request.headers.get("x-request-id")
    if given and _REQUEST_ID.match(given):
        return given
    return uuid.uuid4().hex


def error_response(
    status: int, message: str, problems: list[dict[str, Any]], request_id: str
) -> Response:
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
