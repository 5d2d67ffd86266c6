"""The object store through a real server: streaming, hashes, conditions, tenancy, roles, limits."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.integration.conftest import Server, ServerFactory

from wuzhao import errors
from wuzhao.client import Client

MB = 1024 * 1024


def status_kb(pid: int, field: str) -> int:
    """A memory figure of a process from /proc/<pid>/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def sdk(server: Server, key: str | None = None, **kwargs: str) -> Client:
    return Client(server.url, api_key=key or server.key, environ={}, **kwargs)  # type: ignore[arg-type]


def make_key(api: httpx.Client, role: str, namespace: str = "default") -> str:
    response = api.post("/v1/keys", json={"role": role, "namespace": namespace})
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def raw_put(server: Server, path: str, chunks: Iterator[bytes], headers: dict[str, str]) -> int:
    """A PUT written on a socket, so the server may answer (and close) before the body is all sent."""
    head = [
        f"PUT {path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: Bearer {server.key}",
        "Connection: close",
    ]
    head += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        try:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
            for chunk in chunks:
                if headers.get("Transfer-Encoding") == "chunked":
                    chunk = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
                sock.sendall(chunk)
            if headers.get("Transfer-Encoding") == "chunked":
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # it answered before taking it all: that is the point
        answer = b""
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
    return int(answer.split(b" ", 2)[1])


def test_a_50_mb_object_streams_through_without_the_server_holding_it(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    server = start_server()
    assert server.process is not None
    pid = server.process.pid
    source = tmp_path / "big.bin"
    with source.open("wb") as out:
        for _ in range(50):
            out.write(os.urandom(MB))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    with sdk(server) as client:
        client.create_bucket("big")
        client.put_object("big", "warm-up", b"x" * MB)  # the first transfer's one-off costs
        client.download_object("big", "warm-up", tmp_path / "warm-up")
        before = status_kb(pid, "VmHWM")

        stored = client.put_object("big", "blob.bin", source)
        after_upload = status_kb(pid, "VmHWM")
        info = client.download_object("big", "blob.bin", tmp_path / "back.bin")
        after_download = status_kb(pid, "VmHWM")

    assert stored["size"] == 50 * MB
    assert stored["etag"] == info["etag"] == digest
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).hexdigest() == digest
    # The peak RSS may move a little (buffers, the allocator), never by anything like the object.
    assert after_upload - before < 16 * 1024, (before, after_upload)
    assert after_download - before < 16 * 1024, (before, after_download)


def test_etag_is_the_sha256_and_conditional_and_ranged_gets(server: Server) -> None:
    data = os.urandom(300_000)
    with sdk(server) as client:
        client.create_bucket("cond")
        stored = client.put_object("cond", "dir/file.bin", data, metadata={"owner": "ops"})
    api = server.client()
    got = api.get("/v1/buckets/cond/objects/dir/file.bin")
    assert got.content == data
    etag = got.headers["etag"]
    assert etag == f'"{hashlib.sha256(data).hexdigest()}"' == f'"{stored["etag"]}"'
    assert got.headers["content-length"] == "300000"
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["last-modified"].endswith(" GMT")
    assert got.headers["x-wuzhao-meta-owner"] == "ops"
    not_modified = api.get("/v1/buckets/cond/objects/dir/file.bin", headers={"If-None-Match": etag})
    assert (not_modified.status_code, not_modified.content) == (304, b"")
    assert not_modified.headers["etag"] == etag
    changed = api.get("/v1/buckets/cond/objects/dir/file.bin", headers={"If-None-Match": '"stale"'})
    assert changed.status_code == 200
    part = api.get("/v1/buckets/cond/objects/dir%2Ffile.bin", headers={"Range": "bytes=-100"})
    assert (part.status_code, part.content) == (206, data[-100:])
    assert part.headers["content-range"] == "bytes 299900-299999/300000"
    head = api.head("/v1/buckets/cond/objects/dir/file.bin")
    assert (head.status_code, head.content, head.headers["etag"]) == (200, b"", etag)


def test_objects_list_in_pages_and_go_away(server: Server) -> None:
    api = server.client()
    assert api.put("/v1/buckets/pages").status_code == 201
    assert api.put("/v1/buckets/pages").status_code == 200  # idempotent
    for key in ("b", "a/2", "a/1", "c", "a/10"):
        assert api.put(f"/v1/buckets/pages/objects/{key}", content=key.encode()).status_code == 201
    first = api.get("/v1/buckets/pages/objects", params={"limit": 2}).json()
    assert [o["key"] for o in first["objects"]] == ["a/1", "a/10"]
    second = api.get("/v1/buckets/pages/objects", params={"limit": 2, "after": first["next"]}).json()
    assert [o["key"] for o in second["objects"]] == ["a/2", "b"]
    under = api.get("/v1/buckets/pages/objects", params={"prefix": "a/"}).json()
    assert ([o["key"] for o in under["objects"]], under["next"]) == (["a/1", "a/10", "a/2"], None)
    assert api.get("/v1/buckets/pages/objects", params={"limit": 0}).status_code == 400
    assert api.delete("/v1/buckets/pages").status_code == 409
    for key in ("b", "a/2", "a/1", "c", "a/10"):
        assert api.delete(f"/v1/buckets/pages/objects/{key}").status_code == 204
    assert api.delete("/v1/buckets/pages/objects/b").status_code == 404
    assert api.delete("/v1/buckets/pages").status_code == 204
    assert api.get("/v1/buckets/pages/objects").status_code == 404


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/buckets/UPPER/objects/k", 400),
        ("/v1/buckets/ab/objects/k", 400),
        ("/v1/buckets/names/objects/a/%2E%2E/b", 400),
        ("/v1/buckets/names/objects/%2Fabs", 400),
        ("/v1/buckets/names/objects/a%00b", 400),
        ("/v1/buckets/names/objects/", 400),
        ("/v1/buckets/names/objects/" + "k" * 1025, 400),
        ("/v1/buckets/missing/objects/k", 404),
    ],
)
def test_bad_names_are_refused(server: Server, path: str, status: int) -> None:
    api = server.client()
    api.put("/v1/buckets/names")
    for method in ("PUT", "GET", "DELETE"):
        response = api.request(method, path, content=b"x" if method == "PUT" else None)
        assert response.status_code == status, (method, response.text)
        assert response.json()["error"]["code"] == ("BadRequest" if status == 400 else "NotFound")


def test_namespaces_are_isolated(server: Server) -> None:
    api = server.client()
    assert api.post("/v1/namespaces", json={"name": "objects-team"}).status_code == 201
    theirs = sdk(server, make_key(api, "developer", "objects-team"))
    mine = sdk(server)
    mine.create_bucket("shared-name")
    mine.put_object("shared-name", "secret.txt", b"default's")
    with pytest.raises(errors.NotFound):
        theirs.get_object("shared-name", "secret.txt")
    with pytest.raises(errors.NotFound):
        theirs.list_objects("shared-name")
    with pytest.raises(errors.NotFound):
        theirs.put_object("shared-name", "secret.txt", b"overwrite")
    assert theirs.list_buckets() == []
    theirs.create_bucket("shared-name")  # the same name is another bucket there
    theirs.put_object("shared-name", "secret.txt", b"team's")
    assert mine.get_object("shared-name", "secret.txt") == b"default's"
    assert theirs.get_object("shared-name", "secret.txt") == b"team's"
    as_admin = sdk(server, namespace="objects-team")
    assert as_admin.get_object("shared-name", "secret.txt") == b"team's"
    # a namespace is not deleted with its buckets (a new one of that name would find them)
    gone = api.delete("/v1/namespaces/objects-team")
    assert gone.status_code == 409
    assert "1 bucket" in gone.json()["error"]["message"]
    theirs.delete_object("shared-name", "secret.txt")
    theirs.delete_bucket("shared-name")
    for client in (theirs, mine, as_admin):
        client.close()


def test_roles_are_enforced(server: Server) -> None:
    api = server.client()
    api.put("/v1/buckets/roles")
    api.put("/v1/buckets/roles/objects/k", content=b"v")
    invoker = server.client(make_key(api, "invoker"))
    developer = server.client(make_key(api, "developer"))
    for method, path in [
        ("GET", "/v1/buckets"),
        ("PUT", "/v1/buckets/roles2"),
        ("DELETE", "/v1/buckets/roles"),
        ("GET", "/v1/buckets/roles/objects"),
        ("GET", "/v1/buckets/roles/objects/k"),
        ("HEAD", "/v1/buckets/roles/objects/k"),
        ("PUT", "/v1/buckets/roles/objects/k"),
        ("DELETE", "/v1/buckets/roles/objects/k"),
    ]:
        assert invoker.request(method, path).status_code == 403, (method, path)
    assert api.get("/v1/buckets/roles/objects/k").content == b"v"  # nothing changed
    assert developer.get("/v1/buckets/roles/objects/k").content == b"v"
    assert developer.put("/v1/buckets/roles/objects/k", content=b"w").status_code == 200
    assert developer.delete("/v1/buckets/roles/objects/k").status_code == 204


def test_objects_over_the_cap_are_413_and_leave_nothing(start_server: ServerFactory) -> None:
    server = start_server(WUZHAO_MAX_OBJECT_BYTES=str(MB))
    api = server.client()
    api.put("/v1/buckets/capped")
    api.put("/v1/buckets/capped/objects/k", content=b"old")

    def chunks(total: int) -> Iterator[bytes]:
        for _ in range(total // 65536):
            yield b"x" * 65536

    declared = raw_put(
        server, "/v1/buckets/capped/objects/k", chunks(2 * MB), {"Content-Length": str(2 * MB)}
    )
    streamed = raw_put(
        server, "/v1/buckets/capped/objects/k", chunks(4 * MB), {"Transfer-Encoding": "chunked"}
    )
    assert (declared, streamed) == (413, 413)
    assert api.get("/v1/buckets/capped/objects/k").content == b"old"
    assert api.put("/v1/buckets/capped/objects/k", content=b"y" * MB).status_code == 200  # at the cap: fine
    assert not list((server.data_dir / "objects" / "tmp").iterdir())  # the refused bodies are gone
    blobs = [p for p in (server.data_dir / "objects" / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) == 1
