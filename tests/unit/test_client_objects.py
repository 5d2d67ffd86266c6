"""The SDK's bucket and object methods against a fake server (httpx.MockTransport)."""

import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from wuzhao import errors
from wuzhao.client import Client

DATA = b"0123456789" * 1000
SHA = hashlib.sha256(DATA).hexdigest()
STORED = {
    "bucket": "bkt",
    "key": "a/b.png",
    "size": len(DATA),
    "etag": SHA,
    "content_type": "image/png",
    "created_at": "2024-05-01T12:00:00Z",
    "modified_at": "2024-05-01T12:00:00Z",
    "metadata": {},
}
OBJECT_HEADERS = {
    "ETag": f'"{SHA}"',
    "Content-Type": "image/png",
    "Last-Modified": "Wed, 01 May 2024 12:00:00 GMT",
    "X-Wuzhao-Meta-Owner": "me",
}


class Server:
    def __init__(self, *replies: Callable[[httpx.Request], httpx.Response]) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.replies.pop(0)(request)


def reply(status: int = 200, json: Any = None, content: bytes | None = None, **headers: str) -> Any:
    return lambda request: httpx.Response(status, json=json, content=content, headers=headers)


def client_for(server: Server) -> Client:
    return Client("http://wz", api_key="k", transport=httpx.MockTransport(server))


def test_put_object_streams_a_file_with_its_length_type_and_metadata(tmp_path: Path) -> None:
    source = tmp_path / "photo.png"
    source.write_bytes(DATA * 300)  # 3 MB: several chunks
    server = Server(reply(201, STORED))
    seen: list[tuple[int, int | None]] = []

    stored = client_for(server).put_object(
        "bkt",
        "a/b.png",
        source,
        metadata={"owner": "me"},
        progress=lambda done, total: seen.append((done, total)),
    )

    request = server.requests[0]
    assert stored == STORED
    assert (request.method, request.url.raw_path) == ("PUT", b"/v1/buckets/bkt/objects/a%2Fb.png")
    assert request.headers["content-length"] == str(len(DATA) * 300)
    assert request.headers["content-type"] == "image/png"  # guessed from the file name
    assert request.headers["x-wuzhao-meta-owner"] == "me"
    assert "transfer-encoding" not in request.headers
    assert request.content == DATA * 300
    assert len(seen) == 3 and seen[-1] == (len(DATA) * 300, len(DATA) * 300)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_put_object_from_bytes_and_from_a_pipe() -> None:
    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.parts = [b"abc", b"def"]

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def read(self, size: int = -1) -> bytes:
            return self.parts.pop(0) if self.parts else b""

    server = Server(reply(201, STORED), reply(200, STORED))
    client = client_for(server)
    client.put_object("bkt", "k", b"raw", content_type="text/plain")
    client.put_object("bkt", "k", Pipe())  # type: ignore[arg-type]

    from_bytes, from_pipe = server.requests
    assert from_bytes.headers["content-length"] == "3"
    assert from_bytes.headers["content-type"] == "text/plain"
    assert from_pipe.headers["transfer-encoding"] == "chunked"  # no length to tell
    assert from_pipe.headers["content-type"] == "application/octet-stream"
    assert from_pipe.content == b"abcdef"


def test_download_object_checks_the_hash_and_renames_into_place(tmp_path: Path) -> None:
    server = Server(reply(200, content=DATA, **OBJECT_HEADERS))
    target = tmp_path / "out.png"
    seen: list[int] = []

    info = client_for(server).download_object("bkt", "a/b.png", target, progress=lambda d, t: seen.append(d))

    assert target.read_bytes() == DATA
    assert info == {
        "bucket": "bkt",
        "key": "a/b.png",
        "size": len(DATA),
        "etag": SHA,
        "content_type": "image/png",
        "modified_at": "2024-05-01T12:00:00Z",
        "metadata": {"owner": "me"},
    }
    assert seen[-1] == len(DATA)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_a_damaged_download_leaves_no_file(tmp_path: Path) -> None:
    server = Server(reply(200, content=DATA[:-1] + b"X", **OBJECT_HEADERS))
    target = tmp_path / "out.png"

    with pytest.raises(errors.WuzhaoError, match="arrived damaged"):
        client_for(server).download_object("bkt", "a/b.png", target)

    assert list(tmp_path.iterdir()) == []


def test_a_failed_download_raises_the_typed_error(tmp_path: Path) -> None:
    missing = {"error": {"code": "NotFound", "message": "object 'k' does not exist in bucket 'bkt'"}}
    server = Server(reply(404, missing))
    with pytest.raises(errors.NotFound, match="does not exist"):
        client_for(server).download_object("bkt", "k", tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_download_into_a_file_object_and_get_object() -> None:
    server = Server(reply(200, content=DATA, **OBJECT_HEADERS), reply(200, content=DATA, **OBJECT_HEADERS))
    client = client_for(server)
    buffer = io.BytesIO()
    client.download_object("bkt", "k", buffer)
    assert buffer.getvalue() == DATA
    assert client.get_object("bkt", "k") == DATA


def test_head_object_reads_headers_and_maps_a_bodiless_404() -> None:
    server = Server(reply(200, **OBJECT_HEADERS, **{"Content-Length": "10"}), reply(404))
    client = client_for(server)
    info = client.head_object("bkt", "a/b.png")
    assert (info["size"], info["etag"], info["metadata"]) == (10, SHA, {"owner": "me"})
    assert server.requests[0].method == "HEAD"
    with pytest.raises(errors.NotFound, match="HTTP 404"):
        client.head_object("bkt", "gone")


def test_iter_objects_follows_every_page() -> None:
    pages = [
        {"objects": [{"key": "a"}, {"key": "b"}], "next": "b"},
        {"objects": [{"key": "c"}], "next": None},
    ]
    server = Server(reply(200, pages[0]), reply(200, pages[1]))

    keys = [o["key"] for o in client_for(server).iter_objects("bkt", prefix="p/")]

    assert keys == ["a", "b", "c"]
    first, second = (dict(r.url.params) for r in server.requests)
    assert first == {"prefix": "p/"}
    assert second == {"prefix": "p/", "after": "b"}


def test_bucket_calls() -> None:
    bucket = {"name": "bkt", "created_at": "2024-05-01T12:00:00Z"}
    server = Server(reply(201, bucket), reply(200, bucket), reply(200, {"buckets": [bucket]}), reply(204))
    client = client_for(server)
    assert client.create_bucket("bkt").created is True
    assert client.create_bucket("bkt").created is False
    assert client.list_buckets() == [bucket]
    client.delete_bucket("bkt")
    assert [(r.method, r.url.path) for r in server.requests] == [
        ("PUT", "/v1/buckets/bkt"),
        ("PUT", "/v1/buckets/bkt"),
        ("GET", "/v1/buckets"),
        ("DELETE", "/v1/buckets/bkt"),
    ]
