"""The object routes' HTTP rules (ranges, conditions, views, the document), and the hook's 500."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import msgspec
import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from wuzhao.control.objects import Objects, OnChange
from wuzhao.domain.chains import Chain
from wuzhao.errors import RangeNotSatisfiable, WuzhaoError
from wuzhao.gateway import app as app_module
from wuzhao.gateway import objects as routes
from wuzhao.gateway import openapi
from wuzhao.gateway.app import ROUTES
from wuzhao.objects.api import BucketRecord, ObjectEvent, ObjectRecord
from wuzhao.objects.local import LocalObjectStore
from wuzhao.store.api import ApiKeyRecord

NOW = 1_700_000_000.0
RECORD = ObjectRecord("default", "bkt", "a/b.txt", 1000, "ab" * 32, "text/plain", NOW, NOW + 1, 7, {"x": "1"})

# -- Range --


@pytest.mark.parametrize(
    ("header", "span"),
    [
        (None, None),
        ("", None),
        ("bytes=0-0", (0, 1)),
        ("bytes=0-99", (0, 100)),
        ("bytes=500-", (500, 1000)),
        ("bytes=990-5000", (990, 1000)),  # past the end: cut at the end
        ("bytes=-10", (990, 1000)),  # the last 10
        ("bytes=-5000", (0, 1000)),  # more than there is: all
        ("bytes=999-999", (999, 1000)),
        (" bytes=1-2 ", (1, 3)),
        # not one byte range: ignored, the whole object is sent (RFC 9110 allows it)
        ("bytes=0-1,5-6", None),
        ("items=0-1", None),
        ("bytes=-", None),
        ("bytes=5-1", None),
        ("bytes=a-b", None),
        ("bytes=\u00b2-3", None),  # a digit to str.isdigit, not to a parser
        ("bytes = 0-1", None),
    ],
)
def test_byte_range(header: str | None, span: tuple[int, int] | None) -> None:
    assert routes.byte_range(header, 1000) == span


@pytest.mark.parametrize(
    ("header", "size"),
    [("bytes=1000-", 1000), ("bytes=5000-6000", 1000), ("bytes=-0", 1000), ("bytes=0-", 0)],
)
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        routes.byte_range(header, size)


# -- If-None-Match --


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (None, False),
        (f'"{"ab" * 32}"', True),
        (f'W/"{"ab" * 32}"', True),  # weak comparison
        (f'"other", "{"ab" * 32}"', True),
        ("*", True),
        ('"other"', False),
        ("ab" * 32, False),  # unquoted: not an entity tag
        ("", False),
    ],
)
def test_if_none_match(header: str | None, matches: bool) -> None:
    assert routes.not_modified(header, RECORD) is matches


# -- views and the document --


def test_views_are_what_the_document_says() -> None:
    bucket = routes.bucket_view(BucketRecord("default", "bkt", NOW))
    stored = routes.object_view(RECORD)
    for name, view in (
        ("Bucket", bucket),
        ("StoredObject", stored),
        ("BucketList", {"buckets": [bucket]}),
        ("ObjectList", {"objects": [stored], "next": "a/b.txt"}),
    ):
        struct = {cls.__name__: cls for cls in openapi.RESPONSE_STRUCTS}[name]
        assert set(view) == set(struct.__struct_encode_fields__)
        msgspec.json.decode(msgspec.json.encode(view), type=struct)
    assert stored["etag"] == RECORD.etag  # unquoted in JSON; the header quotes it


def test_the_object_routes_are_described() -> None:
    document = openapi.build_document(ROUTES)
    item = document["paths"]["/v1/buckets/{bucket}/objects/{key}"]
    assert item["put"]["requestBody"]["content"] == {"application/octet-stream": {"schema": {}}}
    get = item["get"]["responses"]
    assert set(get) >= {"200", "206", "304", "404", "416"}
    assert set(get["200"]["headers"]) == {"ETag", "Last-Modified"}
    assert "Content-Range" in get["206"]["headers"]
    assert "content" not in get["304"]
    assert "Content-Range" in document["components"]["responses"]["Error416"]["headers"]
    headers = [p["name"] for p in item["get"]["parameters"] if p.get("in") == "header"]
    assert headers == ["If-None-Match", "Range", "If-Range"]
    listing = document["paths"]["/v1/buckets/{bucket}/objects"]["get"]
    assert [p["name"] for p in listing["parameters"] if p.get("in") == "query"] == [
        "prefix",
        "after",
        "limit",
    ]


# -- through the routes, in process --


class WithKey:
    """Stands in for the auth middleware: every request carries a developer key of ``default``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = ApiKeyRecord("0123456789abcdef", "hash", "default", "developer", NOW)
        scope.setdefault("state", {})["key"] = key
        await self.app(scope, receive, send)


def object_app(objects: Objects) -> ASGIApp:
    app = Starlette(
        routes=[r for r in ROUTES if isinstance(r, Route) and r.path.startswith("/v1/buckets")],
        exception_handlers={
            WuzhaoError: app_module._wuzhao_error,
            Exception: app_module._unexpected_error,
        },
    )
    app.state.platform = SimpleNamespace(
        objects=objects, namespaces=SimpleNamespace(exists=lambda name: name == "default")
    )
    return WithKey(app)


async def serve(tmp_path: Path, on_change: OnChange | None, check: Any) -> None:
    objects = Objects(LocalObjectStore(tmp_path / "objects"), max_object_bytes=1 << 20, on_change=on_change)
    await objects.open()
    try:
        transport = httpx.ASGITransport(app=object_app(objects), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await check(client, objects)
    finally:
        await objects.close()


def test_a_failing_hook_answers_500_and_the_object_stays(tmp_path: Path) -> None:
    events: list[ObjectEvent] = []

    async def on_change(event: ObjectEvent, cause: Chain | None) -> None:
        events.append(event)
        raise OSError("the trigger's queue is full")

    async def check(client: httpx.AsyncClient, objects: Objects) -> None:
        assert (await client.put("/v1/buckets/bkt")).status_code == 201
        put = await client.put("/v1/buckets/bkt/objects/dir/k.txt", content=b"stays")
        assert put.status_code == 500
        assert put.json()["error"]["code"] == "ObjectEventFailed"
        assert "was written" in put.json()["error"]["message"]
        got = await client.get("/v1/buckets/bkt/objects/dir/k.txt")
        assert (got.status_code, got.content) == (200, b"stays")
        deleted = await client.delete("/v1/buckets/bkt/objects/dir/k.txt")
        assert deleted.status_code == 500
        assert (await client.get("/v1/buckets/bkt/objects/dir/k.txt")).status_code == 404

    asyncio.run(serve(tmp_path, on_change, check))
    assert [(e.kind, e.key, e.size) for e in events] == [
        ("created", "dir/k.txt", 5),
        ("deleted", "dir/k.txt", 5),
    ]
    assert events[0].etag == hashlib.sha256(b"stays").hexdigest()


def test_get_head_ranges_and_conditions_in_process(tmp_path: Path) -> None:
    data = bytes(range(256)) * 10

    async def check(client: httpx.AsyncClient, objects: Objects) -> None:
        await client.put("/v1/buckets/bkt")
        headers = {"Content-Type": "image/png", "X-Wuzhao-Meta-Owner": "me"}
        put = await client.put("/v1/buckets/bkt/objects/a%2Fb.png", content=data, headers=headers)
        assert put.status_code == 201
        etag = put.headers["etag"]
        assert etag == f'"{hashlib.sha256(data).hexdigest()}"'
        got = await client.get("/v1/buckets/bkt/objects/a/b.png")  # '/' as it is, or as %2F above
        assert got.content == data
        assert (got.headers["content-type"], got.headers["x-wuzhao-meta-owner"]) == ("image/png", "me")
        assert got.headers["content-length"] == str(len(data))
        head = await client.head("/v1/buckets/bkt/objects/a/b.png")
        assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", str(len(data)))
        part = await client.get("/v1/buckets/bkt/objects/a/b.png", headers={"Range": "bytes=10-19"})
        assert (part.status_code, part.content) == (206, data[10:20])
        assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
        stale = await client.get(
            "/v1/buckets/bkt/objects/a/b.png", headers={"Range": "bytes=10-19", "If-Range": '"old"'}
        )
        assert (stale.status_code, stale.content) == (200, data)
        outside = await client.get("/v1/buckets/bkt/objects/a/b.png", headers={"Range": "bytes=99999-"})
        assert outside.status_code == 416
        assert outside.headers["content-range"] == f"bytes */{len(data)}"
        same = await client.get("/v1/buckets/bkt/objects/a/b.png", headers={"If-None-Match": etag})
        assert (same.status_code, same.content, same.headers["etag"]) == (304, b"", etag)
        again = await client.put("/v1/buckets/bkt/objects/a/b.png", content=b"new")
        assert again.status_code == 200  # replaced, not created
        missing = await client.head("/v1/buckets/bkt/objects/nope")
        assert missing.status_code == 404

    asyncio.run(serve(tmp_path, None, check))


def test_a_bucket_put_takes_no_body(tmp_path: Path) -> None:
    async def check(client: httpx.AsyncClient, objects: Objects) -> None:
        refused = await client.put("/v1/buckets/bkt", content=b"{}")
        assert refused.status_code == 400
        assert (await client.get("/v1/buckets")).json() == {"buckets": []}

    asyncio.run(serve(tmp_path, None, check))
