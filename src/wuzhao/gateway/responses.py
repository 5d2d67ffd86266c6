"""JSON responses and the mapping of errors to ``{"error": {...}}`` bodies."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive

from wuzhao.errors import BadRequest, InvalidJSON, PayloadTooLarge, WuzhaoError

_encoder = msgspec.json.Encoder()
_FIELD = re.compile(r"at `\$\.?([^`\[]*)")
_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]*)`")
_MISSING_FIELD = re.compile(r"missing required field `([^`]*)`")


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_encoder.encode(content), status, headers, media_type="application/json")


def error_response(error: WuzhaoError, headers: dict[str, str] | None = None) -> Response:
    return json_response(error.to_body(), error.status, headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing anything over ``limit`` bytes before reading it all."""
    return await receive_body(request.scope["headers"], request.receive, limit)


async def receive_body(headers: list[tuple[bytes, bytes]], receive: Receive, limit: int) -> bytes:
    """:func:`read_body` in plain ASGI (the invoke hot path has no Request); ``ClientDisconnect``
    when the client leaves before the end."""
    for name, value in headers:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise PayloadTooLarge(f"the request body is {value.decode()} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def decode_json(body: bytes, type: Any = Any) -> Any:
    """Decode a JSON body into ``type``; errors name the offending field."""
    try:
        return msgspec.json.decode(body, type=type)
    except msgspec.ValidationError as exc:
        match = _UNKNOWN_FIELD.search(str(exc)) or _FIELD.search(str(exc))
        field = match.group(1) if match and match.group(1) else None
        missing = _MISSING_FIELD.search(str(exc))  # its path, if any, is the enclosing object's
        if missing:
            field = f"{field}.{missing.group(1)}" if field else missing.group(1)
        message = str(exc).split(" - at ")[0]
        raise BadRequest(f"{message}" + (f" (field {field!r})" if field else ""), field=field) from None
    except msgspec.DecodeError as exc:
        raise InvalidJSON(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidJSON("the request body is nested too deeply") from None


EMPTY_EVENT = b"{}"


def checked_event(body: bytes) -> bytes:
    """An invoke body as the function gets it: valid JSON, kept as sent (never re-encoded);
    no body at all is ``{}``, as on Lambda."""
    if not body.strip():
        return EMPTY_EVENT
    try:
        msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidJSON(f"the event is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidJSON("the event is nested too deeply") from None
    return body
