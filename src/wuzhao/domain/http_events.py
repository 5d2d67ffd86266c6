"""HTTP requests as API Gateway events, and a function's answer as the HTTP response.

The event is API Gateway's HTTP API payload, format 2.0, so a handler written
for API Gateway (or a framework adapter such as Mangum) reads it unchanged::

    {"version": "2.0", "routeKey": "GET /users/{id}", "rawPath": "/users/42",
     "rawQueryString": "a=1&a=2", "cookies": [...], "headers": {"host": ...},
     "queryStringParameters": {"a": "1,2"}, "pathParameters": {"id": "42"},
     "requestContext": {"http": {"method": "GET", "path": ..., ...}, ...},
     "body": "...", "isBase64Encoded": false}

As there: header names are lower-cased, repeated headers and query parameters
are joined with commas, cookies are taken out of the headers into ``cookies``,
and fields with nothing to say (no query, no cookies, no body) are left out.
A body that is not text is sent base64-encoded with ``isBase64Encoded``.

The answer is read the way API Gateway reads a Lambda's: a JSON object with a
``statusCode`` is a response (``headers``, ``multiValueHeaders``, ``cookies``,
``body``, ``isBase64Encoded``); any other JSON value is the body of a 200
``application/json`` response. A response that breaks those rules is a 502,
as API Gateway answers a malformed Lambda response.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import msgspec

JSON = "application/json"
INTERNAL_ERROR = b'{"message":"Internal Server Error"}'
TIMED_OUT = b'{"message":"Endpoint request timed out"}'
_TEXT_TYPES = frozenset(
    {
        JSON,
        "application/xml",
        "application/javascript",
        "application/x-www-form-urlencoded",
        "application/graphql",
        "application/yaml",
        "application/x-yaml",
    }
)
# Framing is the server's business: a function does not set these.
_HOP_BY_HOP = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer"}
)
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class HttpRequest:
    """What the event is made of, read off the HTTP request."""

    method: str
    path: str  # below the trigger prefix, as sent (percent-encoded), e.g. /users/42
    query: str  # the raw query string, without '?'
    headers: list[tuple[str, str]]  # names lower-case, in order, repeats kept
    body: bytes
    source_ip: str
    protocol: str  # HTTP/1.1
    time: float  # unix seconds


@dataclass(frozen=True)
class Target:
    """Where the request went: fills ``routeKey``, ``pathParameters`` and ``requestContext``."""

    namespace: str
    trigger: str
    route_key: str
    path_parameters: Mapping[str, str]
    request_id: str


def build_event(request: HttpRequest, target: Target, *, strip_authorization: bool = False) -> bytes:
    """The event's JSON. ``strip_authorization``: the platform's key authenticated the request,
    so the function must not see it."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        if name == "cookie":
            cookies += [part.strip() for part in value.split(";") if part.strip()]
        elif not (strip_authorization and name == "authorization"):
            headers[name] = f"{headers[name]},{value}" if name in headers else value
    query: dict[str, str] = {}
    for name, value in parse_qsl(request.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    host = headers.get("host", "")
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": target.route_key,
        "rawPath": request.path,
        "rawQueryString": request.query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": target.namespace,
        "apiId": target.trigger,
        "domainName": host,
        "domainPrefix": host.split(".")[0] if host else "",
        "http": {
            "method": request.method,
            "path": request.path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": target.request_id,
        "routeKey": target.route_key,
        "stage": "$default",
        "time": _clf_time(request.time),
        "timeEpoch": int(request.time * 1000),
    }
    if target.path_parameters:
        event["pathParameters"] = dict(target.path_parameters)
    if request.body:
        text = _text(request.body, headers.get("content-type"))
        event["body"] = text if text is not None else base64.b64encode(request.body).decode("ascii")
        event["isBase64Encoded"] = text is None
    else:
        event["isBase64Encoded"] = False
    return _encode(event)


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]  # content-type included; never content-length
    body: bytes
    problem: str | None = None  # why the answer was refused (a 502), for the server log


def map_response(result: bytes) -> HttpResponse:
    """The HTTP response for a function's result (its JSON), by API Gateway's rules."""
    value = msgspec.json.decode(result)
    if not isinstance(value, dict) or "statusCode" not in value:
        return HttpResponse(200, [("content-type", JSON)], result)
    try:
        return _structured(value)
    except _Malformed as malformed:
        return bad_gateway(str(malformed))


def bad_gateway(problem: str | None = None) -> HttpResponse:
    """API Gateway's answer when the function failed or answered nonsense."""
    return HttpResponse(502, [("content-type", JSON)], INTERNAL_ERROR, problem)


def gateway_timeout() -> HttpResponse:
    return HttpResponse(504, [("content-type", JSON)], TIMED_OUT)


class _Malformed(Exception):  # never leaves this module: map_response makes it a 502
    """A response that breaks API Gateway's rules; its message says which."""


def _structured(value: dict[str, Any]) -> HttpResponse:
    status = value["statusCode"]
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise _Malformed(f"statusCode {status!r} is not an HTTP status (100-599)")
    headers: list[tuple[str, str]] = []
    single = _mapping(value, "headers")
    for name, raw in single.items():
        headers.append(_header(name, raw))
    for name, raws in _mapping(value, "multiValueHeaders").items():
        if not isinstance(raws, list):
            raise _Malformed(f"multiValueHeaders[{name!r}] must be a list")
        headers += [_header(name, raw) for raw in raws]
    cookies = value.get("cookies") or []
    if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
        raise _Malformed("cookies must be a list of strings")
    headers += [_header("set-cookie", cookie) for cookie in cookies]
    headers = [(name, text) for name, text in headers if name not in _HOP_BY_HOP]
    body = value.get("body")
    if body is None:
        body = ""
    if not isinstance(body, str):
        raise _Malformed(f"body must be a string, not {type(body).__name__}")
    encoded = value.get("isBase64Encoded", False)
    if not isinstance(encoded, bool):
        raise _Malformed("isBase64Encoded must be true or false")
    if encoded:
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise _Malformed("isBase64Encoded is true but body is not base64") from None
    else:
        data = body.encode("utf-8")
    if data and not any(name == "content-type" for name, _ in headers):
        headers.append(("content-type", JSON))
    return HttpResponse(status, headers, data)


def _mapping(value: dict[str, Any], key: str) -> dict[str, Any]:
    found = value.get(key) or {}
    if not isinstance(found, dict):
        raise _Malformed(f"{key} must be an object")
    return found


def _header(name: str, raw: Any) -> tuple[str, str]:
    if not _TOKEN.match(name):
        raise _Malformed(f"header name {name!r} is not a token")
    if isinstance(raw, bool):
        text = "true" if raw else "false"
    elif isinstance(raw, str | int | float):
        text = str(raw)
    else:
        raise _Malformed(f"header {name!r} must be a string or a number")
    if any(char in text for char in "\r\n\0"):
        raise _Malformed(f"header {name!r} has a line break or NUL in its value")
    try:
        text.encode("latin-1")  # what HTTP/1.1 can carry
    except UnicodeEncodeError:
        raise _Malformed(f"header {name!r} has characters HTTP headers cannot carry") from None
    return name.lower(), text


def _text(body: bytes, content_type: str | None) -> str | None:
    """The body as text if it is text (a textual media type, or none, and UTF-8); else None."""
    if content_type is not None:
        media = content_type.split(";")[0].strip().lower()
        textual = media.startswith("text/") or media in _TEXT_TYPES or media.endswith(("+json", "+xml"))
        if not textual:
            return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _clf_time(moment: float) -> str:
    """``12/Mar/2020:19:03:58 +0000``, in English whatever the locale."""
    utc = datetime.datetime.fromtimestamp(moment, datetime.UTC)
    return f"{utc.day:02d}/{_MONTHS[utc.month - 1]}/{utc.year}:{utc:%H:%M:%S} +0000"
