"""Routes for namespaces and API keys (admin keys only)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from wuzhao.domain.access import Action, parse_role
from wuzhao.domain.timestamps import iso
from wuzhao.errors import NotFound
from wuzhao.gateway.bodies import KeyBody, NamespaceBody, QuotaBody
from wuzhao.gateway.context import authorize, platform_of
from wuzhao.gateway.responses import decode_json, json_response, read_body
from wuzhao.store.api import ApiKeyRecord, NamespaceRecord

BODY_LIMIT = 64 * 1024


async def create_namespace(request: Request) -> Response:
    authorize(request, Action.ADMINISTER)
    body = decode_json(await read_body(request, BODY_LIMIT), NamespaceBody)
    record = await platform_of(request).namespaces.create(
        body.name, max_instances=body.max_instances, max_memory_mb=body.max_memory_mb
    )
    return json_response(namespace_view(request, record), 201)


async def list_namespaces(request: Request) -> Response:
    authorize(request, Action.ADMINISTER)
    records = platform_of(request).namespaces.all()
    return json_response({"namespaces": [namespace_view(request, r) for r in records]})


async def get_namespace(request: Request) -> Response:
    authorize(request, Action.ADMINISTER)
    record = platform_of(request).namespaces.get(request.path_params["name"])
    return json_response(namespace_view(request, record))


async def set_quotas(request: Request) -> Response:
    authorize(request, Action.ADMINISTER)
    body = decode_json(await read_body(request, BODY_LIMIT), QuotaBody)
    record = await platform_of(request).namespaces.set_quotas(
        request.path_params["name"], max_instances=body.max_instances, max_memory_mb=body.max_memory_mb
    )
    return json_response(namespace_view(request, record))


async def delete_namespace(request: Request) -> Response:
    authorize(request, Action.ADMINISTER)
    platform = platform_of(request)
    await platform.recorder.flush()  # records of its last calls are deleted with it, not written after
    await platform.namespaces.delete(request.path_params["name"])
    return Response(status_code=204)


async def create_key(request: Request) -> Response:
    authorize(request, Action.ADMINISTER)
    body = decode_json(await read_body(request, BODY_LIMIT), KeyBody)
    platform = platform_of(request)
    platform.namespaces.get(body.namespace)  # 404 for an unknown namespace
    key, record = await platform.keys.create(body.namespace, parse_role(body.role), body.description)
    # The only answer that ever carries a key's secret: it is not stored anywhere.
    return json_response({**key_view(record), "key": key}, 201)


async def list_keys(request: Request) -> Response:
    authorize(request, Action.ADMINISTER)
    records = await platform_of(request).keys.all()
    return json_response({"keys": [key_view(r) for r in records]})


async def delete_key(request: Request) -> Response:
    authorize(request, Action.ADMINISTER)
    if not await platform_of(request).keys.revoke(request.path_params["key_id"]):
        raise NotFound(f"key {request.path_params['key_id']!r} does not exist")
    return Response(status_code=204)


def namespace_view(request: Request, record: NamespaceRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "created_at": iso(record.created_at),
        "max_instances": record.max_instances,
        "max_memory_mb": record.max_memory_mb,
        "usage": platform_of(request).worker.namespace_usage(record.name),
    }


def key_view(record: ApiKeyRecord) -> dict[str, Any]:
    return {
        "key_id": record.key_id,
        "namespace": record.namespace,
        "role": record.role,
        "description": record.description,
        "created_at": iso(record.created_at),
    }
