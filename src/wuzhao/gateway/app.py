"""The ASGI application: routes, authentication and the error mapping."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp

from wuzhao.domain.access import Action
from wuzhao.errors import BadRequest, MethodNotAllowed, NotFound, WuzhaoError
from wuzhao.gateway import (
    async_calls,
    functions,
    invocations,
    invoke,
    layers,
    objects,
    openapi,
    tenancy,
    topics,
    triggers,
    versions,
)
from wuzhao.gateway.auth import AuthMiddleware
from wuzhao.gateway.context import authorize, platform_of
from wuzhao.gateway.hot_path import HotPath
from wuzhao.gateway.http_triggers import HttpTriggers
from wuzhao.gateway.responses import error_response, json_response
from wuzhao.observe.metrics import CONTENT_TYPE
from wuzhao.platform import Platform

log = logging.getLogger("wuzhao.gateway")


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def metrics(request: Request) -> Response:
    """Prometheus exposition of every namespace's numbers: admin keys only."""
    authorize(request, Action.ADMINISTER)
    platform = platform_of(request)
    await platform.dispatcher.refresh_depth()  # the queue's depth, read now rather than cached
    return Response(platform.metrics.exposition(), media_type=CONTENT_TYPE)


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/v1/openapi.json", openapi.get_document, methods=["GET"]),
    Route("/v1/functions", functions.list_functions, methods=["GET"]),
    Route("/v1/functions/{name}", functions.get_function, methods=["GET"]),
    Route("/v1/functions/{name}", functions.put_function, methods=["PUT"]),
    Route("/v1/functions/{name}", functions.delete_function, methods=["DELETE"]),
    Route("/v1/functions/{name}/invoke", invoke.invoke, methods=["POST"]),
    Route("/v1/functions/{name}/logs", invocations.get_logs, methods=["GET"]),
    Route("/v1/functions/{name}/dead-letters", async_calls.list_dead_letters, methods=["GET"]),
    Route("/v1/functions/{name}/dead-letters/{id}", async_calls.get_dead_letter, methods=["GET"]),
    Route("/v1/functions/{name}/dead-letters/{id}", async_calls.delete_dead_letter, methods=["DELETE"]),
    Route(
        "/v1/functions/{name}/dead-letters/{id}/redrive", async_calls.redrive_dead_letter, methods=["POST"]
    ),
    Route("/v1/functions/{name}/versions", versions.publish, methods=["POST"]),
    Route("/v1/functions/{name}/versions", versions.list_versions, methods=["GET"]),
    Route("/v1/functions/{name}/versions/{version}", versions.get_version, methods=["GET"]),
    Route("/v1/functions/{name}/versions/{version}", versions.delete_version, methods=["DELETE"]),
    Route("/v1/functions/{name}/aliases", versions.list_aliases, methods=["GET"]),
    Route("/v1/functions/{name}/aliases/{alias}", versions.get_alias, methods=["GET"]),
    Route("/v1/functions/{name}/aliases/{alias}", versions.put_alias, methods=["PUT"]),
    Route("/v1/functions/{name}/aliases/{alias}", versions.delete_alias, methods=["DELETE"]),
    Route("/v1/invocations/{id}", invocations.get_invocation, methods=["GET"]),
    Route("/v1/layers", layers.list_layers, methods=["GET"]),
    Route("/v1/layers/{name}", layers.get_layer, methods=["GET"]),
    Route("/v1/layers/{name}", layers.push_layer, methods=["PUT"]),
    Route("/v1/layers/{name}/versions/{version}", layers.delete_layer_version, methods=["DELETE"]),
    Route("/v1/secrets", layers.list_secrets, methods=["GET"]),
    Route("/v1/secrets/{name}", layers.put_secret, methods=["PUT"]),
    Route("/v1/secrets/{name}", layers.delete_secret, methods=["DELETE"]),
    Route("/v1/triggers", triggers.list_triggers, methods=["GET"]),
    Route("/v1/triggers/{name}", triggers.get_trigger, methods=["GET"]),
    Route("/v1/triggers/{name}", triggers.put_trigger, methods=["PUT"]),
    Route("/v1/triggers/{name}", triggers.delete_trigger, methods=["DELETE"]),
    Route("/v1/topics/{topic}/messages", topics.publish_message, methods=["POST"]),
    Route("/v1/buckets", objects.list_buckets, methods=["GET"]),
    Route("/v1/buckets/{bucket}", objects.create_bucket, methods=["PUT"]),
    Route("/v1/buckets/{bucket}", objects.delete_bucket, methods=["DELETE"]),
    Route("/v1/buckets/{bucket}/objects", objects.list_objects, methods=["GET"]),
    # {key:path}: a key may hold '/'; GET also answers HEAD (the handler sends no body then)
    Route("/v1/buckets/{bucket}/objects/{key:path}", objects.put_object, methods=["PUT"]),
    Route("/v1/buckets/{bucket}/objects/{key:path}", objects.get_object, methods=["GET"]),
    Route("/v1/buckets/{bucket}/objects/{key:path}", objects.delete_object, methods=["DELETE"]),
    Route("/v1/namespaces", tenancy.list_namespaces, methods=["GET"]),
    Route("/v1/namespaces", tenancy.create_namespace, methods=["POST"]),
    Route("/v1/namespaces/{name}", tenancy.get_namespace, methods=["GET"]),
    Route("/v1/namespaces/{name}", tenancy.set_quotas, methods=["PUT"]),
    Route("/v1/namespaces/{name}", tenancy.delete_namespace, methods=["DELETE"]),
    Route("/v1/keys", tenancy.list_keys, methods=["GET"]),
    Route("/v1/keys", tenancy.create_key, methods=["POST"]),
    Route("/v1/keys/{key_id}", tenancy.delete_key, methods=["DELETE"]),
]


def create_app(platform: Platform, *, on_started: Callable[[], Any] | None = None) -> ASGIApp:
    """The whole HTTP surface: HTTP triggers and the synchronous invoke route's fast path in front
    of the routed app."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await platform.start()
        if on_started is not None:
            on_started()
        try:
            yield
        finally:
            await platform.stop()

    app = Starlette(
        routes=ROUTES,
        middleware=[Middleware(AuthMiddleware, keys=platform.keys)],
        exception_handlers={
            WuzhaoError: _wuzhao_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
        lifespan=lifespan,
    )
    app.state.platform = platform
    app.state.openapi = openapi.encode(openapi.build_document(ROUTES))
    # HTTP triggers (/http/...) are the functions' own surface, outside the API and its key check.
    return HttpTriggers(HotPath(app, platform), platform)


async def _wuzhao_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WuzhaoError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        error: WuzhaoError = NotFound(f"no route for {request.method} {request.url.path}")
    elif exc.status_code == 405:
        error = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
        return error_response(error, {"Allow": _allowed_methods(request)})
    else:
        error = BadRequest(str(exc.detail))
    return error_response(error)


def _allowed_methods(request: Request) -> str:
    """A 405's Allow header (RFC 9110): the methods of every route of the path, not only the first."""
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.methods and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods
    return ", ".join(sorted(methods))


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(WuzhaoError("internal error; the server log has the details"))
