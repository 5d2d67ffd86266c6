"""HTTP triggers: requests to ``/http/<namespace>/<path>`` run the function of the matching route.

This is the data plane, not the API: it answers outside ``/v1``, in front of
the application (plain ASGI, like the synchronous invoke route), with the
function's own responses. A request is matched against the namespace's routes
in memory (``control/triggers.py``, ``domain/routes.py``), authenticated when
the route says ``auth: key`` (an API key of the namespace whose role may
invoke, as ``POST /v1/functions/{name}/invoke`` needs), turned into an API
Gateway HTTP API 2.0 event, run synchronously, and the function's answer is
turned back into the response (``domain/http_events.py``).

What the platform refuses (no route, no key, a body over ``max_request_bytes``,
throttling) answers with the API's error body; what the function does wrong
answers like API Gateway: 502 ``{"message": "Internal Server Error"}``, or 504
when it runs past its timeout. The server log says why.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import TYPE_CHECKING
from urllib.parse import unquote

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from wuzhao.domain.access import Action
from wuzhao.domain.functions import NAME_PATTERN
from wuzhao.domain.http_events import (
    JSON,
    HttpRequest,
    HttpResponse,
    Target,
    bad_gateway,
    build_event,
    gateway_timeout,
)
from wuzhao.domain.http_events import map_response as http_response
from wuzhao.domain.routes import split_path
from wuzhao.domain.triggers import HTTP_PREFIX, HttpTrigger
from wuzhao.errors import InvocationError, MethodNotAllowed, NotFound, Timeout, WuzhaoError
from wuzhao.gateway.auth import CHALLENGE, bearer, unauthorized
from wuzhao.gateway.context import namespace_for
from wuzhao.gateway.responses import read_body

if TYPE_CHECKING:
    from wuzhao.platform import Platform

log = logging.getLogger("wuzhao.gateway")

_PREFIX = HTTP_PREFIX.encode()
_NAMESPACE = re.compile(NAME_PATTERN)
INVOCATION_ID_HEADER = "x-wuzhao-invocation-id"
_encode = msgspec.json.Encoder().encode


class HttpTriggers:
    """ASGI: ``/http/...`` goes to the HTTP triggers, everything else on to ``app``."""

    def __init__(self, app: ASGIApp, platform: Platform) -> None:
        self.app = app
        self.platform = platform

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path == HTTP_PREFIX or path.startswith(HTTP_PREFIX + "/"):
                await self._serve(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await self._answer(scope, receive)
        except ClientDisconnect:
            return  # nobody is left to answer
        except WuzhaoError as error:
            response = refusal(error, CHALLENGE if error.status == 401 else {})
        except Exception:
            log.exception("unexpected error on %s %s", scope["method"], scope["path"])
            response = refusal(WuzhaoError("internal error; the server log has the details"))
        await send({"type": "http.response.start", "status": response.status, "headers": _raw(response)})
        await send({"type": "http.response.body", "body": response.body})

    async def _answer(self, scope: Scope, receive: Receive) -> HttpResponse:
        platform = self.platform
        method: str = scope["method"]
        namespace, path = _split(scope)
        if namespace is None or not platform.namespaces.exists(namespace):
            raise NotFound(f"no HTTP trigger answers {method} {scope['path']}")
        match = platform.triggers.match(namespace, method, [unquote(s) for s in split_path(path)])
        if match.route is None:
            if match.allowed:
                refused = MethodNotAllowed(f"{method} is not allowed on {scope['path']}")
                return refusal(refused, {"Allow": ", ".join(sorted(match.allowed))})
            raise NotFound(f"no HTTP trigger answers {method} {scope['path']}")
        name = match.route.name
        spec = platform.triggers.get(namespace, name).spec
        assert isinstance(spec, HttpTrigger)
        if spec.auth == "key":
            key = bearer(scope["headers"])
            record = await platform.keys.authenticate(key) if key else None
            if record is None:
                raise unauthorized()
            namespace_for(platform, record, namespace, Action.INVOKE)
        try:
            target = platform.versions.resolve(namespace, spec.function, spec.qualifier)
        except NotFound as missing:  # its alias or version was deleted since: the route is broken
            log.warning("HTTP trigger %s/%s cannot call its function: %s", namespace, name, missing.message)
            return bad_gateway()
        body = await read_body(Request(scope, receive), platform.settings.max_request_bytes)
        request_id = str(uuid.uuid4())
        event = build_event(
            HttpRequest(
                method=method,
                path=path,
                query=scope.get("query_string", b"").decode("latin-1"),
                headers=[(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]],
                body=body,
                source_ip=(scope.get("client") or ("", 0))[0],
                protocol=f"HTTP/{scope.get('http_version', '1.1')}",
                time=time.time(),
            ),
            Target(namespace, name, match.route.key, match.parameters, request_id),
            strip_authorization=spec.auth == "key",  # the caller's key is the platform's, not the function's
        )
        outcome = await platform.worker.invoke(target, event, request_id)
        if outcome.error is not None and not isinstance(outcome.error, InvocationError):
            response = refusal(outcome.error)  # the platform's: throttled, over quota, shutting down
        elif outcome.error is not None:
            log.info(
                "HTTP trigger %s/%s: call %s failed: %s", namespace, name, request_id, outcome.error.code
            )
            response = gateway_timeout() if isinstance(outcome.error, Timeout) else bad_gateway()
        else:
            assert outcome.result is not None
            response = http_response(outcome.result)
            if response.problem is not None:
                log.warning(
                    "HTTP trigger %s/%s: call %s answered %s", namespace, name, request_id, response.problem
                )
        response.headers.append((INVOCATION_ID_HEADER, request_id))
        return response


def refusal(error: WuzhaoError, headers: dict[str, str] | None = None) -> HttpResponse:
    """What the platform refuses answers with the API's error body (the function never ran)."""
    extra = [(name.lower(), value) for name, value in (headers or {}).items()]
    return HttpResponse(error.status, [*extra, ("content-type", JSON)], _encode(error.to_body()))


def _split(scope: Scope) -> tuple[str | None, str]:
    """The namespace and the path below it, as sent (percent-encoded): ``/users/42``."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    rest = raw[len(_PREFIX) :].lstrip(b"/")
    namespace, _, below = rest.partition(b"/")
    name = namespace.decode("latin-1")
    return (name if _NAMESPACE.match(name) else None), "/" + below.decode("latin-1")


def _raw(response: HttpResponse) -> list[tuple[bytes, bytes]]:
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers]
    headers.append((b"content-length", str(len(response.body)).encode()))
    return headers
