"""Routes for triggers: ``PUT /v1/triggers/{name}`` and friends (the control plane).

The requests an HTTP trigger answers are the data plane: ``gateway/http_triggers.py``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from wuzhao.domain import schedules
from wuzhao.domain import triggers as rules
from wuzhao.domain.access import Action
from wuzhao.domain.timestamps import iso
from wuzhao.domain.triggers import HttpTrigger, ObjectTrigger, TopicTrigger, TriggerSpec
from wuzhao.errors import BadRequest
from wuzhao.gateway.context import authorize, platform_of
from wuzhao.gateway.responses import decode_json, json_response, read_body
from wuzhao.store.api import TriggerRecord

if TYPE_CHECKING:
    from wuzhao.platform import Platform

BODY_LIMIT = 64 * 1024


async def put_trigger(request: Request) -> Response:
    namespace = authorize(request, Action.MANAGE)
    platform = platform_of(request)
    try:
        spec = decode_json(await read_body(request, BODY_LIMIT), TriggerSpec)
    except BadRequest as error:
        if error.field != "type":
            raise
        raise BadRequest(f"type must be one of: {', '.join(rules.TYPES)}", field="type") from None
    record, created = await platform.triggers.put(namespace, request.path_params["name"], spec)
    return json_response(trigger_view(platform, record), 201 if created else 200)


async def list_triggers(request: Request) -> Response:
    namespace = authorize(request, Action.READ)
    platform = platform_of(request)
    function = request.query_params.get("function") or None
    records = platform.triggers.find(namespace, function)
    return json_response({"triggers": [trigger_view(platform, r) for r in records]})


async def get_trigger(request: Request) -> Response:
    namespace = authorize(request, Action.READ)
    platform = platform_of(request)
    return json_response(
        trigger_view(platform, platform.triggers.get(namespace, request.path_params["name"]))
    )


async def delete_trigger(request: Request) -> Response:
    namespace = authorize(request, Action.MANAGE)
    await platform_of(request).triggers.delete(namespace, request.path_params["name"])
    return Response(status_code=204)


def trigger_view(platform: Platform, record: TriggerRecord) -> dict[str, Any]:
    """A trigger as the API shows it: its settings as given, and what a caller needs to use it
    (an HTTP trigger's ``url_path``; a timer's next and last ticks)."""
    spec: TriggerSpec = record.spec
    view: dict[str, Any] = {
        "name": record.name,
        "function": spec.function,
        "qualifier": spec.qualifier,
        "type": spec.__struct_config__.tag,
    }
    if isinstance(spec, ObjectTrigger):
        view |= {"bucket": spec.bucket, "events": spec.events, "prefix": spec.prefix, "suffix": spec.suffix}
    elif isinstance(spec, TopicTrigger):
        view |= {"topic": spec.topic, "filter": spec.filter}
    elif isinstance(spec, HttpTrigger):
        view |= {
            "methods": spec.methods,
            "path": spec.path,
            "auth": spec.auth,
            "url_path": rules.url_path(record.namespace, spec),
        }
    else:
        last = platform.triggers.last_tick(record.namespace, record.name)
        upcoming = schedules.next_tick(rules.schedule(spec), time.time(), record.updated_at)
        view |= {
            "schedule": spec.schedule,
            "timezone": spec.timezone,
            "missed_ticks": spec.missed_ticks,
            "next_tick": iso(upcoming),
            "last_tick": iso(last) if last is not None and last >= record.updated_at else None,
        }
    return view | {"created_at": iso(record.created_at), "updated_at": iso(record.updated_at)}
