"""A predict request's body: media type, size limit, gzip decoding and the `records` list.

The body is read as bytes, counted against the limit while it streams in (a gzip body is
decoded as it streams in, and the limit applies to the decoded bytes), then parsed with
orjson. Every refusal is a `Refusal` with its status (400, 413, 415, 422), field and rule.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import orjson
from fastapi import Request

from gitml.serve.errors import Refusal

JSON = "application/json"


def check_media_type(
    content_type: str | None, *, also: tuple[str, ...] = (), reason: str | None = None
) -> None:
    """Refuse a body declared as something other than JSON or one of `also` (no
    Content-Type: JSON); `reason` replaces the refusal's default wording."""
    if content_type is None:
        return
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == JSON or media_type.endswith("+json") or media_type in also:
        return
    raise Refusal(
        415,
        "content-type",
        "media_type",
        reason or f"Content-Type {content_type[:100]!r} is not JSON; send application/json",
        headers={"accept": ", ".join((JSON, *also))},
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The body, decoded, refused with 413 as soon as it is known to exceed `limit` bytes.

    A gzip body is decoded as it streams in, never more than `limit` + 1 bytes at a time:
    a small compressed body that inflates past the limit (a gzip bomb) is refused without
    being inflated.
    """
    gunzip = _decoder(request.headers.get("content-encoding"), limit)
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Refusal(400, "body", "content_length", "Content-Length is not a number")
        if int(declared) > limit:
            raise Refusal(
                413, "body", "max_bytes", f"body of {declared} bytes exceeds {limit} bytes"
            )
    received = 0
    chunks = bytearray()
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise Refusal(413, "body", "max_bytes", f"body exceeds {limit} bytes")
        if gunzip is None:
            chunks += chunk
        else:
            gunzip.feed(chunk)
    return bytes(chunks) if gunzip is None else gunzip.finish()


def _decoder(content_encoding: str | None, limit: int) -> _Gunzip | None:
    """The decoder for a Content-Encoding: None for none (or identity), else gzip or 415."""
    if content_encoding is None:
        return None
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c not in ("", "identity")]
    if not codings:
        return None
    if codings in (["gzip"], ["x-gzip"]):
        return _Gunzip(limit)
    raise Refusal(
        415,
        "content-encoding",
        "encoding",
        f"Content-Encoding {content_encoding[:100]!r} is not supported; send gzip or no encoding",
        headers={"accept-encoding": "gzip"},
    )


class _Gunzip:
    """Incremental gzip decoding that holds at most `limit` + 1 decoded bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self._member = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._started = False  # the current member has been fed bytes

    def feed(self, chunk: bytes) -> None:
        while chunk:
            self._started = True
            room = self.limit + 1 - len(self.data)  # >= 1: 0 would mean "no limit" to zlib
            try:
                self.data += self._member.decompress(chunk, room)
            except zlib.error as err:
                raise Refusal(400, "body", "gzip", f"corrupt gzip body ({err})") from None
            if len(self.data) > self.limit:
                raise Refusal(
                    413, "body", "max_bytes", f"body exceeds {self.limit} bytes once decompressed"
                )
            if self._member.eof:  # a member ended; another may follow (RFC 1952 allows it)
                chunk = self._member.unused_data
                self._member = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                self._started = False
            else:
                chunk = self._member.unconsumed_tail

    def finish(self) -> bytes:
        if self._started:
            raise Refusal(400, "body", "gzip", "corrupt gzip body (truncated)")
        return bytes(self.data)


def parse_json(body: bytes) -> Any:
    """A request body's JSON value, or a 400 `Refusal` (empty, malformed, invalid Unicode);
    NaN and Infinity are read as numbers, for the input rules to name."""
    if not body:
        raise Refusal(400, "body", "json", "empty body; expected a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as err:
        return _lenient_json(body, err)


def parse_records(body: bytes, max_records: int) -> Any:
    """The `records` list of a request body."""
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise Refusal(422, "body", "type", 'expected a JSON object {"records": [...]}')
    if "records" not in payload:
        raise Refusal(422, "records", "missing", "required field is missing")
    unknown = [k for k in payload if k != "records"]
    if unknown:
        raise Refusal(422, str(unknown[0]), "unknown_field", "is not a field of the request")
    records = payload["records"]
    if isinstance(records, list) and len(records) > max_records:
        raise too_many_records(len(records), max_records)
    return records


def too_many_records(count: int | str, limit: int) -> Refusal:
    """413 for a request of more than `serve.max_records` records, in every protocol
    (`count`: how many came, or words for it when reading stopped early)."""
    return Refusal(
        413, "records", "max_items", f"at most {limit} records per request (got {count})"
    )


def _lenient_json(body: bytes, err: Exception) -> Any:
    """Parse JSON that only orjson refuses (NaN, Infinity): their fields are named later."""
    try:
        payload = json.loads(body, parse_constant=float)
    except (ValueError, RecursionError):
        detail = str(err).split(":", 1)[0]
        raise Refusal(400, "body", "json", f"malformed JSON ({detail})") from None
    try:  # the one other thing orjson refuses and json accepts: a lone surrogate escape
        orjson.dumps(payload)
    except orjson.JSONEncodeError:
        raise Refusal(
            400, "body", "unicode", "invalid Unicode: a lone surrogate escape (e.g. \\ud800)"
        ) from None
    return payload
