"""``POST /v1/functions/{name}/invoke`` as a routed endpoint.

Synchronous calls never get here: ``gateway/hot_path.py`` answers them before
the router. What is routed here is an asynchronous call (handed to
``gateway/async_calls.py``), or a synchronous one whose name cannot be a
function's (the hot path leaves those to the router, and they name nothing).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from wuzhao.domain.access import Action
from wuzhao.errors import NotFound
from wuzhao.gateway import async_calls
from wuzhao.gateway.context import authorize


async def invoke(request: Request) -> Response:
    if async_calls.is_async(request):  # X-Wuzhao-Invocation-Type: Event: queued, answered 202
        return await async_calls.accept(request)
    authorize(request, Action.INVOKE)  # 404 for another namespace, 403 for a role without invoke
    raise NotFound(f"function {request.path_params['name']!r} does not exist")
