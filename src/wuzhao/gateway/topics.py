"""Publishing to topics: ``POST /v1/topics/{topic}/messages`` (role invoke).

The message goes to every topic trigger of the topic, in the key's namespace,
whose filter passes its attributes: one asynchronous call per subscriber, all
durably queued before the 202 (``worker/notifications.py``). A topic is only a
name: publishing to one nobody subscribes to is accepted and delivered nowhere
(``"deliveries": 0``).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from wuzhao.domain.access import Action
from wuzhao.gateway.bodies import MessageBody
from wuzhao.gateway.context import authorize, platform_of
from wuzhao.gateway.responses import decode_json, json_response, read_body
from wuzhao.worker.notifications import Published


async def publish_message(request: Request) -> Response:
    namespace = authorize(request, Action.INVOKE)
    platform = platform_of(request)
    body = decode_json(await read_body(request, platform.settings.max_request_bytes), MessageBody)
    published = await platform.notifications.publish(
        namespace, request.path_params["topic"], body.message, body.attributes
    )
    return json_response(published_view(published), 202)


def published_view(published: Published) -> dict[str, Any]:
    return {"message_id": published.message_id, "deliveries": published.deliveries}
