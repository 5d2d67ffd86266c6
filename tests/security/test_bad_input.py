"""Bad input to the platform itself: every management route answers 4xx with an error body, never 5xx.

Requests are written by hand on a raw socket, so that nothing on the client
side normalises a path (``..``), re-encodes a name or refuses a body: the
server gets exactly the bytes of the case. Routes come from the app's own
``ROUTES``, so a new route is covered without touching this file.
"""

from __future__ import annotations

import base64
import io
import json
import re
import socket
import zipfile
from collections.abc import Iterator

import pytest
from starlette.routing import Route
from tests.conftest import HELLO, zip_files
from tests.security.conftest import MAX_CODE_BYTES, NEEDS_SANDBOX

from wuzhao.gateway.app import ROUTES

pytestmark = NEEDS_SANDBOX

MB = 1024 * 1024
_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")
TARGET = "bad-input-target"  # a real function, so that bodies reach their checks
HELLO_CODE = base64.b64encode(zip_files({"main.py": HELLO})).decode()


class Reply:
    def __init__(self, raw: bytes) -> None:
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1]) if lines[0].startswith("HTTP/") else 0
        self.headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
        }
        if self.headers.get("transfer-encoding") == "chunked":
            body = _dechunk(body)
        self.body = body

    def __repr__(self) -> str:
        return f"<{self.status} {self.body[:200]!r}>"


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def raw_request(
    server,
    method: str,
    target: str | bytes,
    body: bytes | Iterator[bytes] | None = None,
    headers: dict[str, str] | None = None,
    *,
    auth: bool = True,
) -> Reply:
    """One request on a fresh connection, bytes exactly as given; a chunked body when an iterator."""
    target = target.encode("latin-1") if isinstance(target, str) else target
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    if auth:
        lines.append(f"Authorization: Bearer {server.key}".encode())
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}".encode("latin-1"))
    chunked = body is not None and not isinstance(body, bytes)
    if isinstance(body, bytes):
        lines.append(f"Content-Length: {len(body)}".encode())
    elif chunked:
        lines.append(b"Transfer-Encoding: chunked")
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        try:
            sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
            if isinstance(body, bytes):
                sock.sendall(body)
            elif chunked:
                for chunk in body:  # type: ignore[union-attr]
                    sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer (413) and close before taking it all
        received = b""
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            received += data
    return Reply(received)


def error_shape_problem(reply: Reply, method: str) -> str | None:
    """None when the reply is a 4xx with the API's error body, else what is wrong with it."""
    if not 400 <= reply.status < 500:
        return f"status {reply.status}"
    if method == "HEAD":
        return None
    try:
        body = json.loads(reply.body)
    except ValueError:
        return "body is not JSON"
    if not (isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"], dict)):
        return "body is not {'error': {...}}"
    error = body["error"]
    if not (isinstance(error.get("code"), str) and isinstance(error.get("message"), str)):
        return "error has no string code and message"
    return None


def endpoints() -> list[tuple[str, str]]:
    found = []
    for route in ROUTES:
        assert isinstance(route, Route)
        if route.path.startswith("/v1/"):
            found += [(method, route.path) for method in sorted(route.methods or ()) if method != "HEAD"]
    return found


ENDPOINTS = endpoints()
IDS = [f"{method} {path}" for method, path in ENDPOINTS]


def fill(path: str, value: str) -> str:
    return _PARAM.sub(lambda _: value, path)


def fill_valid(path: str) -> str:
    return _PARAM.sub(
        lambda m: TARGET if m.group(1) == "name" else "00000000-0000-0000-0000-000000000000", path
    )


@pytest.fixture(autouse=True)
def target(server) -> None:
    """The function the bodies are sent to; made again if a DELETE case removed it."""
    reply = raw_request(server, "PUT", f"/v1/functions/{TARGET}", json.dumps({"code": HELLO_CODE}).encode())
    assert reply.status in (200, 201), reply


# --- names and ids: traversal, encodings, odd characters --------------------------------

ODD_NAMES = {
    "dotdot": "..",
    "dot": ".",
    "encoded-dotdot": "%2e%2e",
    "encoded-dotdot-upper": "%2E%2E",
    "encoded-traversal": "..%2f..%2fadmin.key",
    "double-encoded": "%252e%252e%252fadmin.key",
    "backslashes": "..%5c..%5cadmin.key",
    "slash": "a/b",
    "encoded-slash": "a%2fb",
    "nul": "a%00b",
    "only-nul": "%00",
    "crlf": "a%0d%0aX-Injected:%201",
    "long": "a" * 1000,
    "long-encoded": "%61" * 1000,
    "unicode": "%C3%BC%C3%B1%C3%AF%C3%A7%C3%B8d%C3%A9",
    "emoji": "%F0%9F%98%80",
    "invalid-utf8": "%ff%fe",
    "upper-case": "Hello",
    "leading-dash": "-hello",
    "space": "a%20b",
    "semicolon": "a;b",
    "shell": "$(id)",
    "glob": "*",
    "tilde": "~root",
    "percent": "%25",
}


@pytest.mark.parametrize(
    ("method", "path"),
    [e for e in ENDPOINTS if "{" in e[1]],
    ids=[i for i, e in zip(IDS, ENDPOINTS, strict=True) if "{" in e[1]],
)
def test_odd_names_and_traversal_are_4xx(server, method, path):
    body = json.dumps({"code": HELLO_CODE}).encode() if method == "PUT" else b"{}"
    problems = {}
    for case, value in ODD_NAMES.items():
        reply = raw_request(server, method, fill(path, value), body if method in ("PUT", "POST") else None)
        problem = error_shape_problem(reply, method)
        if problem:
            problems[case] = (problem, reply)
        assert b"X-Injected" not in b"".join(f"{k}: {v}".encode() for k, v in reply.headers.items())
    assert problems == {}


# --- malformed JSON and wrong types -----------------------------------------------------


def _zip(entries: dict[str, bytes]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return base64.b64encode(buffer.getvalue()).decode()


MALFORMED = {
    "not-json": b"{oops",
    "truncated": b'{"code": "',
    "empty-array-open": b"[",
    "invalid-utf8": b"\xff\xfe\xfd",
    "nul-bytes": b"\x00\x00\x00",
    "trailing-garbage": b"{} {}",
    "deeply-nested-arrays": b"[" * 5000 + b"]" * 5000,
    "deeply-nested-objects": b'{"a":' * 5000 + b"1" + b"}" * 5000,
    "huge-number": b"1" + b"0" * 100000,
    "lone-surrogate": b'"\\ud800"',
}

WRONG_TYPES = {
    "null": b"null",
    "array": b"[]",
    "number": b"42",
    "string": b'"text"',
    "memory-string": b'{"memory_mb": "big"}',
    "memory-huge": b'{"memory_mb": 99999999999999999999999999}',
    "memory-negative": b'{"memory_mb": -1}',
    "memory-float": b'{"memory_mb": 1.5}',
    "memory-bool": b'{"memory_mb": true}',
    "memory-nan": b'{"memory_mb": NaN}',
    "timeout-zero": b'{"timeout_s": 0}',
    "timeout-too-long": b'{"timeout_s": 100000}',
    "env-array": b'{"env": []}',
    "env-number-value": b'{"env": {"A": 1}}',
    "env-empty-name": b'{"env": {"": "x"}}',
    "env-reserved": b'{"env": {"WUZHAO_KEY": "x"}}',
    "env-nul": b'{"env": {"A": "x\\u0000y"}}',
    "env-name-with-equals": b'{"env": {"A=B": "x"}}',
    "handler-traversal": b'{"handler": "../../etc/passwd"}',
    "handler-number": b'{"handler": 5}',
    "runtime-unknown": b'{"runtime": "python2.7"}',
    "unknown-field": b'{"privileged": true}',
    "code-number": b'{"code": 5}',
    "code-not-base64": b'{"code": "!!! not base64 !!!"}',
    "code-not-a-zip": json.dumps({"code": base64.b64encode(b"not a zip").decode()}).encode(),
    "code-traversal-entry": json.dumps(
        {"code": _zip({"../evil.py": b"x", "main.py": HELLO.encode()})}
    ).encode(),
    "code-absolute-entry": json.dumps(
        {"code": _zip({"/etc/evil.py": b"x", "main.py": HELLO.encode()})}
    ).encode(),
    "code-without-handler": json.dumps({"code": _zip({"other.py": b"x = 1"})}).encode(),
    "code-empty-zip": json.dumps({"code": _zip({})}).encode(),
}


@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=IDS)
def test_malformed_json_and_wrong_types_are_4xx(server, method, path):
    """Body-taking routes refuse every case with 4xx; the others must at least never fail with 5xx."""
    takes_body = method in ("PUT", "POST")
    cases = dict(MALFORMED)
    if method == "PUT":
        cases.update(WRONG_TYPES)
        if not path.startswith("/v1/functions/"):
            del cases["code-without-handler"]  # only a function's code needs its handler's module
    problems = {}
    for case, body in cases.items():
        reply = raw_request(server, method, fill_valid(path), body, {"Content-Type": "application/json"})
        if takes_body:
            problem = error_shape_problem(reply, method)
        else:
            problem = f"status {reply.status}" if not 200 <= reply.status < 500 else None
        if problem:
            problems[case] = (problem, reply)
    assert problems == {}


QUERIES = [
    "since=garbage", "since=nan", "since=inf", "since=-inf", "since=1e999", "since=" + "9" * 5000,
    "since=10x", "since=2024-13-45T99:99", "limit=abc", "limit=0", "limit=-5", "limit=1001",
    "limit=1.5", "limit=" + "9" * 100, "after=x", "after=-1", "after=" + "9" * 100,
    "limit=%00", "since=%ff",
]  # fmt: skip


@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=IDS)
def test_bad_query_parameters_are_4xx_or_ignored(server, method, path):
    """Query parameters a route reads are validated (4xx); the others are ignored, never a 5xx."""
    problems = {}
    for query in QUERIES:
        body = b"{}" if method in ("PUT", "POST") else None
        reply = raw_request(server, method, fill_valid(path) + "?" + query, body)
        if reply.status >= 500 or reply.status < 200:
            problems[query] = reply
        elif reply.status >= 400 and error_shape_problem(reply, method):
            problems[query] = (error_shape_problem(reply, method), reply)
    assert problems == {}
    if path.endswith("/logs"):  # the route that reads them refuses every one of them
        for query in QUERIES:
            reply = raw_request(server, method, fill_valid(path) + "?" + query)
            assert reply.status == 400, (query, reply)


def test_a_zip_bomb_is_refused(server):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("main.py", HELLO)
        with archive.open("bomb.bin", "w", force_zip64=True) as bomb:
            zeros = b"\0" * MB
            for _ in range(260):  # over the 250 MB unpacked limit, about 250 KB packed
                bomb.write(zeros)
    assert len(buffer.getvalue()) < MAX_CODE_BYTES
    body = json.dumps({"code": base64.b64encode(buffer.getvalue()).decode()}).encode()
    reply = raw_request(server, "PUT", "/v1/functions/bad-input-bomb", body)
    assert error_shape_problem(reply, "PUT") is None, reply
    assert reply.status == 413


# --- huge bodies ------------------------------------------------------------------------


def over(limit: int) -> bytes:
    """A JSON document a little over ``limit`` bytes."""
    return json.dumps({"code": "A" * (limit + 1024)}).encode()


def chunks(total: int, size: int = 256 * 1024) -> Iterator[bytes]:
    yield b'{"blob": "'
    sent = 0
    while sent < total:
        yield b"x" * size
        sent += size
    yield b'"}'


DEPLOY_LIMIT = MAX_CODE_BYTES * 4 // 3 + 64 * 1024
INVOKE_LIMIT = 6 * MB


HUGE = [
    pytest.param("PUT", "/v1/functions/bad-input-huge", over(DEPLOY_LIMIT), {}, id="deploy-over-limit"),
    pytest.param("PUT", "/v1/functions/bad-input-huge", "chunks", {}, id="deploy-chunked"),
    pytest.param(
        "PUT", "/v1/functions/bad-input-huge", None, {"Content-Length": str(10**12)}, id="deploy-declared-1tb"
    ),
    pytest.param("POST", f"/v1/functions/{TARGET}/invoke", over(INVOKE_LIMIT), {}, id="invoke-over-limit"),
    pytest.param("POST", f"/v1/functions/{TARGET}/invoke", "chunks", {}, id="invoke-chunked"),
    pytest.param(
        "POST",
        f"/v1/functions/{TARGET}/invoke",
        None,
        {"Content-Length": str(10**12)},
        id="invoke-declared-1tb",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "headers"), HUGE)
def test_huge_bodies_are_413(server, method, path, body, headers):
    if body == "chunks":
        body = chunks(8 * MB)
    reply = raw_request(server, method, path, body, headers)
    assert error_shape_problem(reply, method) is None, reply
    assert reply.status == 413, reply
    assert json.loads(reply.body)["error"]["code"] == "PayloadTooLarge"


# --- not even HTTP ----------------------------------------------------------------------

GARBAGE_REQUESTS = {
    "not-http": b"GARBAGE\r\n\r\n",
    "binary": bytes(range(256)) + b"\r\n\r\n",
    "nul-in-path": b"GET /v1/functions/a\x00b HTTP/1.1\r\nHost: x\r\n\r\n",
    "negative-length": b"PUT /v1/functions/x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "two-lengths": (
        b"PUT /v1/functions/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
    ),
    "header-without-colon": b"GET /healthz HTTP/1.1\r\nHost: x\r\nbroken header\r\n\r\n",
    "bad-chunk-size": b"PUT /v1/functions/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "http-0.9": b"GET /v1/functions\r\n\r\n",
}


@pytest.mark.parametrize("case", list(GARBAGE_REQUESTS))
def test_requests_that_are_not_http_are_refused(server, case):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(GARBAGE_REQUESTS[case])
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while data := sock.recv(65536):
            received += data
    # a 400 from the HTTP layer, or the connection closed: never a 5xx, never a 2xx
    if received:
        assert 400 <= Reply(received).status < 500, received[:200]
