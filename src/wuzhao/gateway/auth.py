"""Authentication of every ``/v1`` route, before routing.

It runs in front of the router so that even a path that does not exist answers
401 to a caller without a valid key: the control plane reveals nothing, not even
which routes it has, to anyone unauthenticated.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from wuzhao.control.keys import KeyRing
from wuzhao.errors import Unauthorized
from wuzhao.gateway.responses import error_response

CHALLENGE = {"WWW-Authenticate": "Bearer"}


class AuthMiddleware:
    def __init__(self, app: ASGIApp, keys: KeyRing) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        key = bearer(scope["headers"])
        record = await self.keys.authenticate(key) if key else None
        if record is None:
            response = error_response(unauthorized(), CHALLENGE)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["key"] = record
        await self.app(scope, receive, send)


def _protected(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/") or path == "/metrics"


def unauthorized() -> Unauthorized:
    return Unauthorized("a valid API key is required: send 'Authorization: Bearer <key>'")


def bearer(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, if there is one."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None
