"""The invoke route: the platform's hot path.

One in-memory resolution of the qualifier, one bounded body read, one JSON validation, then the
worker; no database access on the way (records are written off the path).
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from wuzhao.domain.access import Action
from wuzhao.errors import InvalidJSON, InvocationError, WuzhaoError
from wuzhao.gateway import async_calls
from wuzhao.gateway.context import authorize, platform_of
from wuzhao.gateway.responses import error_response, read_body

EMPTY_EVENT = b"{}"


async def invoke(request: Request) -> Response:
    if async_calls.is_async(request):  # X-Wuzhao-Invocation-Type: Event: queued, answered 202
        return await async_calls.accept(request)
    namespace = authorize(request, Action.INVOKE)
    platform = platform_of(request)
    target = platform.versions.resolve(
        namespace, request.path_params["name"], request.query_params.get("qualifier")
    )
    event = await read_body(request, platform.settings.max_request_bytes)
    if not event.strip():
        event = EMPTY_EVENT  # like Lambda: no payload means an empty object
    else:
        try:
            msgspec.json.decode(event)
        except msgspec.DecodeError as exc:
            raise InvalidJSON(f"the event is not valid JSON: {exc}") from None
        except RecursionError:
            raise InvalidJSON("the event is nested too deeply") from None
    outcome = await platform.worker.invoke(target, event)
    headers = {
        "X-Wuzhao-Invocation-Id": outcome.invocation_id,
        "X-Wuzhao-Executed-Version": outcome.version,
        "X-Wuzhao-Cold-Start": "true" if outcome.cold_start else "false",
        "X-Wuzhao-Duration-Ms": f"{outcome.duration_ms:.3f}",
    }
    if outcome.error is not None:
        return _failure(outcome.error, headers)
    return Response(outcome.result, 200, headers, media_type="application/json")


def _failure(error: WuzhaoError, headers: dict[str, str]) -> Response:
    if isinstance(error, InvocationError):
        headers["X-Wuzhao-Function-Error"] = error.code
    return error_response(error, headers)
