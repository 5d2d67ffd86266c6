"""Asynchronous calls: the accepting side of invoke, and a function's dead letters.

``POST /v1/functions/{name}/invoke`` with ``X-Wuzhao-Invocation-Type: Event``
(or ``async``) answers 202 once the call is durably in the queue; the
dispatcher (``worker/dispatcher.py``) runs it later, retrying as the function's
configuration says. What still fails goes dead and waits here for an operator:
read, redrive (run it again, retries counted from zero) or delete.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from wuzhao.domain.access import Action
from wuzhao.errors import BadRequest, NotFound
from wuzhao.gateway.context import authorize, platform_of
from wuzhao.gateway.invocations import call_view, query_int
from wuzhao.gateway.responses import checked_event, json_response, read_body
from wuzhao.queue.api import CallState

INVOCATION_TYPE = "x-wuzhao-invocation-type"
IDEMPOTENCY_KEY = "idempotency-key"
ORDERING_KEY = "x-wuzhao-ordering-key"
ASYNC_TYPES = ("event", "async")
SYNC_TYPE = "requestresponse"
MAX_KEY_LENGTH = 256


def is_async(request: Request) -> bool:
    """Not a plain synchronous call: ``accept`` takes it (and refuses unknown types with 400)."""
    kind = request.headers.get(INVOCATION_TYPE)
    return kind is not None and kind.lower() != SYNC_TYPE


async def accept(request: Request) -> Response:
    namespace = authorize(request, Action.INVOKE)
    platform = platform_of(request)
    kind = request.headers.get(INVOCATION_TYPE, "")
    if kind.lower() not in ASYNC_TYPES:
        raise BadRequest(
            f"X-Wuzhao-Invocation-Type {kind!r} is unknown: use RequestResponse (the default) or Event",
            field="X-Wuzhao-Invocation-Type",
        )
    name = request.path_params["name"]
    qualifier = request.query_params.get("qualifier") or None
    # The qualifier is resolved again at each attempt; here only: does it exist now?
    platform.versions.resolve(namespace, name, qualifier)
    idempotency_key = _key(request, IDEMPOTENCY_KEY, "Idempotency-Key")
    ordering_key = _key(request, ORDERING_KEY, "X-Wuzhao-Ordering-Key")
    event = await _event(request, platform.settings.max_request_bytes)
    # A client's call starts a chain; durable when send returns.
    delivery = await platform.dispatcher.deliveries.send(
        namespace,
        name,
        event,
        idempotency_key=idempotency_key,
        ordering_key=ordering_key,
        qualifier=qualifier,
        cause=None,
    )
    stored_id = delivery.call_id
    if delivery.created:
        platform.metrics.async_outcome(namespace, name, "accepted")
    return json_response(
        {"invocation_id": stored_id, "status": "queued"}, 202, {"X-Wuzhao-Invocation-Id": stored_id}
    )


# dead letters


async def list_dead_letters(request: Request) -> Response:
    namespace = authorize(request, Action.READ)
    platform = platform_of(request)
    name = request.path_params["name"]
    limit = query_int(request.query_params, "limit", 100, minimum=1, maximum=1000) or 100
    after = request.query_params.get("after") or None
    states = await platform.queue.dead_letters(namespace, name, limit=limit, after=after)
    if not states and after is None:
        platform.registry.get(namespace, name)  # 404 for a function that never was (nor left any)
    return json_response(
        {
            "dead_letters": [call_view(state) for state in states],
            "next": states[-1].call.id if len(states) == limit else None,
        }
    )


async def get_dead_letter(request: Request) -> Response:
    namespace = authorize(request, Action.READ)
    return json_response(call_view(await _dead_letter(request, namespace)))


async def redrive_dead_letter(request: Request) -> Response:
    namespace = authorize(request, Action.MANAGE)
    platform = platform_of(request)
    name, call_id = request.path_params["name"], request.path_params["id"]
    platform.registry.get(namespace, name)  # 404: redriven to a function that is gone, it would die again
    if not await platform.queue.redrive(namespace, name, call_id, now=time.time()):
        raise NotFound(f"function {name!r} has no dead letter {call_id!r}")
    platform.dispatcher.wake()
    return json_response(
        {"invocation_id": call_id, "status": "queued"}, 202, {"X-Wuzhao-Invocation-Id": call_id}
    )


async def delete_dead_letter(request: Request) -> Response:
    namespace = authorize(request, Action.MANAGE)
    name, call_id = request.path_params["name"], request.path_params["id"]
    if not await platform_of(request).queue.delete_dead(namespace, name, call_id):
        raise NotFound(f"function {name!r} has no dead letter {call_id!r}")
    return Response(status_code=204)


async def _dead_letter(request: Request, namespace: str) -> CallState:
    name, call_id = request.path_params["name"], request.path_params["id"]
    state = await platform_of(request).queue.get(call_id)
    if (
        state is None
        or state.status != "dead"
        or (state.call.namespace, state.call.function) != (namespace, name)
    ):
        raise NotFound(f"function {name!r} has no dead letter {call_id!r}")
    return state


# request parts


def _key(request: Request, header: str, label: str) -> str | None:
    value = request.headers.get(header)
    if value is None:
        return None
    if not value or len(value) > MAX_KEY_LENGTH or not value.isprintable():
        raise BadRequest(f"{label} must be 1 to {MAX_KEY_LENGTH} printable characters", field=label)
    return value


async def _event(request: Request, limit: int) -> bytes:
    """The body, as the synchronous route takes it."""
    return checked_event(await read_body(request, limit))
