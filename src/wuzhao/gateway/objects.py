"""Routes for buckets and objects (the built-in object store).

Object bodies are streamed both ways: a PUT hands the request's chunks to the
store as they arrive (the size cap is kept while they do), a GET sends the
file in bounded chunks, so no route holds an object in memory. An object is
its bytes; its metadata travels in headers (``ETag`` is the quoted SHA-256,
user metadata is ``X-Wuzhao-Meta-<name>``), and listings give it as JSON.
"""

from __future__ import annotations

import email.utils
import re
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from wuzhao.control.objects import object_view
from wuzhao.domain.access import Action
from wuzhao.domain.timestamps import iso
from wuzhao.errors import BadRequest, RangeNotSatisfiable
from wuzhao.gateway.context import authorize, platform_of
from wuzhao.gateway.invocations import query_int
from wuzhao.gateway.responses import error_response, json_response, read_body
from wuzhao.objects.api import BucketRecord, ObjectReader, ObjectRecord
from wuzhao.objects.names import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT

META_PREFIX = "x-wuzhao-meta-"
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)\Z")
BUCKET_BODY_LIMIT = 1024  # the route takes no body: enough to refuse one with 400 rather than 413


# -- buckets --


async def list_buckets(request: Request) -> Response:
    namespace = authorize(request, Action.READ)
    records = await platform_of(request).objects.list_buckets(namespace)
    return json_response({"buckets": [bucket_view(r) for r in records]})


async def create_bucket(request: Request) -> Response:
    """Idempotent: 201 when made, 200 when the namespace already has it."""
    namespace = authorize(request, Action.MANAGE)
    if await read_body(request, BUCKET_BODY_LIMIT):
        raise BadRequest("PUT /v1/buckets/{bucket} takes no body")
    record, created = await platform_of(request).objects.create_bucket(
        namespace, request.path_params["bucket"]
    )
    return json_response(bucket_view(record), 201 if created else 200)


async def delete_bucket(request: Request) -> Response:
    namespace = authorize(request, Action.MANAGE)
    await platform_of(request).objects.delete_bucket(namespace, request.path_params["bucket"])
    return Response(status_code=204)


async def list_objects(request: Request) -> Response:
    namespace = authorize(request, Action.READ)
    query = request.query_params
    limit = query_int(query, "limit", DEFAULT_LIST_LIMIT, minimum=1, maximum=MAX_LIST_LIMIT)
    page = await platform_of(request).objects.list(
        namespace,
        request.path_params["bucket"],
        prefix=query.get("prefix", ""),
        after=query.get("after", ""),
        limit=limit or DEFAULT_LIST_LIMIT,
    )
    return json_response({"objects": [object_view(r) for r in page.objects], "next": page.next})


# -- objects --


async def put_object(request: Request) -> Response:
    namespace = authorize(request, Action.MANAGE)
    headers = request.headers
    declared = headers.get("content-length")
    metadata = {
        name.removeprefix(META_PREFIX): value
        for name, value in headers.items()
        if name.startswith(META_PREFIX)
    }
    try:
        record, created = await platform_of(request).objects.put(
            namespace,
            request.path_params["bucket"],
            request.path_params["key"],
            request.stream(),
            content_type=headers.get("content-type"),
            metadata=metadata,
            declared_size=int(declared) if declared and declared.isascii() and declared.isdigit() else None,
        )
    except ClientDisconnect:  # nothing was stored; nobody is left to read the answer
        raise BadRequest("the client went away before the whole body arrived") from None
    return json_response(object_view(record), 201 if created else 200, {"ETag": etag(record)})


async def get_object(request: Request) -> Response:
    """The object's bytes (GET) or only its headers (HEAD); If-None-Match and one Range honoured."""
    namespace = authorize(request, Action.READ)
    objects = platform_of(request).objects
    bucket, key = request.path_params["bucket"], request.path_params["key"]
    if request.method == "HEAD":  # no file to open
        record = await objects.head(namespace, bucket, key)
        try:
            status, headers, _ = answer(request, record)
        except RangeNotSatisfiable as error:
            return error_response(error, {"Content-Range": f"bytes */{record.size}"})
        return Response(status_code=status, headers=headers)
    reader = await objects.read(namespace, bucket, key)
    try:
        status, headers, span = answer(request, reader.record)
    except RangeNotSatisfiable as error:
        await reader.close()
        return error_response(error, {"Content-Range": f"bytes */{reader.record.size}"})
    except BaseException:
        await reader.close()
        raise
    if span is None:
        await reader.close()
        return Response(status_code=status, headers=headers)
    return ObjectResponse(reader, span, status, headers)


async def delete_object(request: Request) -> Response:
    namespace = authorize(request, Action.MANAGE)
    await platform_of(request).objects.delete(
        namespace, request.path_params["bucket"], request.path_params["key"]
    )
    return Response(status_code=204)


class ObjectResponse(StreamingResponse):
    """The bytes ``span`` of an opened object; the file is closed however the response ends."""

    def __init__(
        self, reader: ObjectReader, span: tuple[int, int], status: int, headers: dict[str, str]
    ) -> None:
        self._reader = reader
        self._chunks = reader.chunks(*span)
        super().__init__(self._chunks, status, headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self._chunks, "aclose", None)
            if aclose is not None:
                await aclose()
            await self._reader.close()


# -- what a GET or HEAD answers --


def answer(request: Request, record: ObjectRecord) -> tuple[int, dict[str, str], tuple[int, int] | None]:
    """Status, headers, and the byte span to send (None: no body, a 304)."""
    headers = object_headers(record)
    if not_modified(request.headers.get("if-none-match"), record):
        del headers["Content-Length"]
        return 304, headers, None
    span = byte_range(request.headers.get("range"), record.size)
    if_range = request.headers.get("if-range")
    if span is None or (if_range is not None and if_range.strip() != etag(record)):
        return 200, headers, (0, record.size)
    start, end = span
    headers["Content-Length"] = str(end - start)
    headers["Content-Range"] = f"bytes {start}-{end - 1}/{record.size}"
    return 206, headers, span


def object_headers(record: ObjectRecord) -> dict[str, str]:
    headers = {
        "ETag": etag(record),
        "Content-Length": str(record.size),
        "Content-Type": record.content_type,
        "Last-Modified": email.utils.formatdate(record.modified_at, usegmt=True),
        "Accept-Ranges": "bytes",
        # The stored Content-Type is the uploader's: a browser must not guess another from the bytes.
        "X-Content-Type-Options": "nosniff",
    }
    for name, value in record.metadata.items():
        headers[f"X-Wuzhao-Meta-{name}"] = value
    return headers


def etag(record: ObjectRecord) -> str:
    return f'"{record.etag}"'


def not_modified(if_none_match: str | None, record: ObjectRecord) -> bool:
    """RFC 9110 13.1.2: any listed tag (weakly compared) or ``*`` matches."""
    if if_none_match is None:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag(record) in tags


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range as ``[start, end)``; None to send the whole object.

    A header that is not one byte range (several ranges, another unit,
    garbage) is ignored, as RFC 9110 allows; a range that starts past the end
    is 416.
    """
    match = _RANGE.match(header.strip()) if header else None
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # the last N bytes
        suffix = int(last)
        if suffix == 0:
            raise _unsatisfiable(size)
        return max(0, size - suffix), size
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    if last != "" and int(last) < start:
        return None  # invalid: ignored
    if start >= size:
        raise _unsatisfiable(size)
    return start, end


def _unsatisfiable(size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(f"the range is outside the object's {size} bytes")


# -- views --


def bucket_view(record: BucketRecord) -> dict[str, Any]:
    return {"name": record.name, "created_at": iso(record.created_at)}
