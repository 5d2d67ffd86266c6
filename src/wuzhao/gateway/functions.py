"""Routes that manage functions: create or update, read, list, delete."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from wuzhao.domain.access import Action
from wuzhao.domain.functions import FunctionConfig, FunctionRecord, FunctionUpdate
from wuzhao.domain.timestamps import iso
from wuzhao.gateway.context import authorize, platform_of
from wuzhao.gateway.responses import decode_json, json_response, read_body


# A base64 zip of max_code_bytes is 4/3 larger, plus room for the other fields.
def _deploy_limit(max_code_bytes: int) -> int:
    return max_code_bytes * 4 // 3 + 64 * 1024


async def put_function(request: Request) -> Response:
    platform = platform_of(request)
    body = await read_body(request, _deploy_limit(platform.settings.max_code_bytes))
    update = decode_json(body, FunctionUpdate)
    record, created = await platform.registry.put(
        authorize(request, Action.MANAGE), request.path_params["name"], update
    )
    return json_response(view(request, record), 201 if created else 200)


async def get_function(request: Request) -> Response:
    record = platform_of(request).registry.get(authorize(request, Action.READ), request.path_params["name"])
    return json_response(view(request, record))


async def list_functions(request: Request) -> Response:
    records = platform_of(request).registry.list(authorize(request, Action.READ))
    return json_response({"functions": [view(request, r) for r in records]})


async def delete_function(request: Request) -> Response:
    await platform_of(request).registry.delete(authorize(request, Action.MANAGE), request.path_params["name"])
    return Response(status_code=204)


def config_view(config: FunctionConfig) -> dict[str, Any]:
    """The configuration fields shared by a function and its published versions."""
    return {
        "runtime": config.runtime,
        "handler": config.handler,
        "memory_mb": config.memory_mb,
        "timeout_s": config.timeout_s,
        "env": config.env,
        "secrets": config.secrets,  # env var -> secret name; never a value
        "layers": config.layers,
        "network": config.network,
        "max_concurrency": config.max_concurrency,
        "min_instances": config.min_instances,
        "idle_timeout_s": config.idle_timeout_s,
        "max_retries": config.max_retries,
        "retry_delay_s": config.retry_delay_s,
        "max_event_age_s": config.max_event_age_s,
        "on_success": config.on_success,
        "on_failure": config.on_failure,
        "ordering_hold": config.ordering_hold,
        "max_chain_calls": config.max_chain_calls,
        "recursive_loop": config.recursive_loop,
    }


def view(request: Request, record: FunctionRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        **config_view(record.config),
        "code_sha256": record.code_sha256,
        "code_size": record.code_size,
        "revision": record.revision,
        "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at),
        "instances": platform_of(request).worker.instance_counts(record.namespace, record.name),
    }
