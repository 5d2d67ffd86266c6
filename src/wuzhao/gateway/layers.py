"""Routes for layers (shared code mounted under /opt) and secrets (write-only values)."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from wuzhao.domain.access import Action
from wuzhao.domain.timestamps import iso
from wuzhao.domain.versions import version_number
from wuzhao.errors import InvalidCode, NotFound
from wuzhao.gateway.bodies import LayerBody, SecretBody
from wuzhao.gateway.context import authorize, platform_of
from wuzhao.gateway.responses import decode_json, json_response, read_body
from wuzhao.store.api import LayerRecord, SecretRecord

if TYPE_CHECKING:
    pass

SECRET_BODY_LIMIT = 128 * 1024
MAX_VERSION = 2**63 - 1  # the largest SQLite integer


async def push_layer(request: Request) -> Response:
    namespace = authorize(request, Action.MANAGE)
    platform = platform_of(request)
    limit = platform.settings.max_code_bytes * 4 // 3 + 64 * 1024
    body = decode_json(await read_body(request, limit), LayerBody)
    try:
        data = base64.b64decode(body.code, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidCode("code must be the base64 encoding of a zip archive", field="code") from None
    record = await platform.layers.push(namespace, request.path_params["name"], data, body.description)
    return json_response(layer_view(record), 201)


async def list_layers(request: Request) -> Response:
    namespace = authorize(request, Action.READ)
    records = await platform_of(request).layers.versions(namespace)
    return json_response({"layers": [layer_view(r) for r in records]})


async def get_layer(request: Request) -> Response:
    namespace = authorize(request, Action.READ)
    records = await platform_of(request).layers.versions(namespace, request.path_params["name"])
    return json_response({"name": request.path_params["name"], "versions": [layer_view(r) for r in records]})


async def delete_layer_version(request: Request) -> Response:
    namespace = authorize(request, Action.MANAGE)
    version = version_number(request.path_params["version"])
    if version > MAX_VERSION:  # no such version, and SQLite would overflow on it (a 500 before)
        raise NotFound(f"layer {request.path_params['name']}:{version} does not exist")
    await platform_of(request).layers.delete(namespace, request.path_params["name"], version)
    return Response(status_code=204)


async def put_secret(request: Request) -> Response:
    namespace = authorize(request, Action.MANAGE)
    body = decode_json(await read_body(request, SECRET_BODY_LIMIT), SecretBody)
    record = await platform_of(request).secrets.set(namespace, request.path_params["name"], body.value)
    return json_response(secret_view(record))


async def list_secrets(request: Request) -> Response:
    namespace = authorize(request, Action.READ)
    records = await platform_of(request).secrets.names(namespace)
    return json_response({"secrets": [secret_view(r) for r in records]})


async def delete_secret(request: Request) -> Response:
    namespace = authorize(request, Action.MANAGE)
    await platform_of(request).secrets.delete(namespace, request.path_params["name"])
    return Response(status_code=204)


def layer_view(record: LayerRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "version": record.version,
        "reference": f"{record.name}:{record.version}",
        "description": record.description,
        "code_sha256": record.code_sha256,
        "code_size": record.code_size,
        "created_at": iso(record.created_at),
    }


def secret_view(record: SecretRecord) -> dict[str, Any]:
    return {"name": record.name, "updated_at": iso(record.updated_at)}  # never the value
