"""Routes for published versions and aliases of a function."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from wuzhao.domain.access import Action
from wuzhao.domain.timestamps import iso
from wuzhao.domain.versions import version_number
from wuzhao.gateway.bodies import AliasBody, PublishBody
from wuzhao.gateway.context import authorize, platform_of
from wuzhao.gateway.functions import config_view
from wuzhao.gateway.responses import decode_json, json_response, read_body
from wuzhao.store.api import AliasRecord, VersionRecord

BODY_LIMIT = 64 * 1024


async def publish(request: Request) -> Response:
    namespace = authorize(request, Action.MANAGE)
    body = decode_json(await read_body(request, BODY_LIMIT) or b"{}", PublishBody)
    record, created = await platform_of(request).versions.publish(
        namespace, request.path_params["name"], body.description
    )
    return json_response(version_view(record), 201 if created else 200)


async def list_versions(request: Request) -> Response:
    namespace = authorize(request, Action.READ)
    records = platform_of(request).versions.list_versions(namespace, request.path_params["name"])
    return json_response({"versions": [version_view(r) for r in records]})


async def get_version(request: Request) -> Response:
    namespace = authorize(request, Action.READ)
    record = platform_of(request).versions.get_version(
        namespace, request.path_params["name"], _version(request)
    )
    return json_response(version_view(record))


async def delete_version(request: Request) -> Response:
    namespace = authorize(request, Action.MANAGE)
    await platform_of(request).versions.delete_version(
        namespace, request.path_params["name"], _version(request)
    )
    return Response(status_code=204)


async def put_alias(request: Request) -> Response:
    namespace = authorize(request, Action.MANAGE)
    body = decode_json(await read_body(request, BODY_LIMIT), AliasBody)
    record, created = await platform_of(request).versions.put_alias(
        namespace,
        request.path_params["name"],
        request.path_params["alias"],
        version=body.version,
        weights=body.routing,
        description=body.description,
    )
    return json_response(alias_view(record), 201 if created else 200)


async def list_aliases(request: Request) -> Response:
    namespace = authorize(request, Action.READ)
    records = platform_of(request).versions.list_aliases(namespace, request.path_params["name"])
    return json_response({"aliases": [alias_view(r) for r in records]})


async def get_alias(request: Request) -> Response:
    namespace = authorize(request, Action.READ)
    record = platform_of(request).versions.get_alias(
        namespace, request.path_params["name"], request.path_params["alias"]
    )
    return json_response(alias_view(record))


async def delete_alias(request: Request) -> Response:
    namespace = authorize(request, Action.MANAGE)
    await platform_of(request).versions.delete_alias(
        namespace, request.path_params["name"], request.path_params["alias"]
    )
    return Response(status_code=204)


def _version(request: Request) -> int:
    return version_number(request.path_params["version"])


def version_view(record: VersionRecord) -> dict[str, Any]:
    return {
        "function": record.function,
        "version": record.version,
        "description": record.description,
        **config_view(record.config),
        "code_sha256": record.code_sha256,
        "code_size": record.code_size,
        "created_at": iso(record.created_at),
    }


def alias_view(record: AliasRecord) -> dict[str, Any]:
    routing = None
    if record.additional_version is not None:
        routing = {str(record.additional_version): record.additional_weight}
    return {
        "function": record.function,
        "name": record.name,
        "version": record.version,
        "routing": routing,
        "description": record.description,
        "updated_at": iso(record.updated_at),
    }
