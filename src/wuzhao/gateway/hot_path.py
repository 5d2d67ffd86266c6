"""The synchronous invoke route as plain ASGI, in front of the framework.

``POST /v1/functions/{name}/invoke`` is the one route whose cost every call
pays, so it skips Starlette's middleware stack, router, request and response
objects (measured at about a third of the server's time per warm call) and
speaks ASGI directly: one pass over the headers, the key check, the qualifier,
one bounded body read, the worker, one ``http.response.start`` and one
``http.response.body``. It answers exactly as the routed version
(``gateway/invoke.py``) would, errors included; everything else — other routes,
asynchronous calls, paths that are not a valid function name — goes on to the
application unchanged.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

import msgspec
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from wuzhao.domain.access import Action
from wuzhao.errors import InvocationError, WuzhaoError
from wuzhao.gateway.auth import CHALLENGE, bearer, unauthorized
from wuzhao.gateway.context import namespace_for
from wuzhao.gateway.responses import checked_event, receive_body

if TYPE_CHECKING:
    from wuzhao.platform import Platform

log = logging.getLogger("wuzhao.gateway")

_INVOKE = re.compile(r"/v1/functions/([a-z0-9][a-z0-9_-]{0,63})/invoke\Z")
_JSON = b"application/json"
_encode = msgspec.json.Encoder().encode


class HotPath:
    def __init__(self, app: ASGIApp, platform: Platform) -> None:
        self.app = app
        self.platform = platform

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _INVOKE.match(scope["path"])
            if match is not None and _synchronous(scope["headers"]):
                await self._invoke(match.group(1), scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _invoke(self, name: str, scope: Scope, receive: Receive, send: Send) -> None:
        platform = self.platform
        headers: list[tuple[bytes, bytes]] = []
        try:
            key = bearer(scope["headers"])
            record = await platform.keys.authenticate(key) if key else None
            if record is None:
                await _respond(send, unauthorized(), _raw(CHALLENGE))
                return
            named = _header(scope["headers"], b"x-wuzhao-namespace")
            namespace = namespace_for(platform, record, named, Action.INVOKE)
            target = platform.versions.resolve(namespace, name, _qualifier(scope["query_string"]))
            body = await receive_body(scope["headers"], receive, platform.settings.max_request_bytes)
            event = checked_event(body)
            outcome = await platform.worker.invoke(target, event)
            headers = [
                (b"x-wuzhao-invocation-id", outcome.invocation_id.encode()),
                (b"x-wuzhao-executed-version", outcome.version.encode()),
                (b"x-wuzhao-cold-start", b"true" if outcome.cold_start else b"false"),
                (b"x-wuzhao-duration-ms", f"{outcome.duration_ms:.3f}".encode()),
            ]
            if outcome.error is not None:
                raise outcome.error
            assert outcome.result is not None
            await _send(send, 200, headers, outcome.result)
        except ClientDisconnect:  # nobody is left to answer
            return
        except WuzhaoError as error:
            if isinstance(error, InvocationError):
                headers.append((b"x-wuzhao-function-error", error.code.encode()))
            await _respond(send, error, headers)
        except Exception:
            log.exception("unexpected error on POST %s", scope["path"])
            await _respond(send, WuzhaoError("internal error; the server log has the details"), [])


def _synchronous(headers: list[tuple[bytes, bytes]]) -> bool:
    kind = _header(headers, b"x-wuzhao-invocation-type")
    return kind is None or kind.lower() == "requestresponse"


def _header(headers: list[tuple[bytes, bytes]], wanted: bytes) -> str | None:
    for name, value in headers:
        if name == wanted:
            return value.decode("latin-1")
    return None


def _qualifier(query_string: bytes) -> str | None:
    if not query_string:
        return None
    return dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)).get("qualifier")


def _raw(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


async def _respond(send: Send, error: WuzhaoError, headers: list[tuple[bytes, bytes]]) -> None:
    await _send(send, error.status, headers, _encode(error.to_body()))


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers.append((b"content-type", _JSON))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
