"""Hostile functions writing garbage on the runtime channel (fd 3), the worker's only link to them.

The handler writes the bytes itself, bypassing the runtime, then waits to be
killed. Whatever it writes, the call must fail with ``RuntimeExited`` (at once
for malformed bytes; a partial frame followed by silence by the function's
timeout at the latest, but as ``RuntimeExited``, not ``Timeout``), and the
next call must work on a new instance.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import struct
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from tests.conftest import zip_files
from tests.security.conftest import NEEDS_SANDBOX, PeakRss, error_code, wait_until

pytestmark = NEEDS_SANDBOX

TIMEOUT_S = 5


def frame(header: bytes, body: bytes = b"") -> bytes:
    return struct.pack(">II", len(header), len(body)) + header + body


# name: the bytes the function writes on its channel (``{id}`` is the call's id)
GARBAGE = {
    "4gb-header-length": struct.pack(">II", 0xFFFFFFFF, 0) + b"{}",
    "zero-header-length": struct.pack(">II", 0, 0) + b"{}",
    "header-over-64kb": struct.pack(">II", 64 * 1024 + 1, 0) + b"x" * 100,
    "invalid-utf8-header": frame(b'{"type": "result", "id": "\xff\xfe"}', b"1"),
    "header-not-json": frame(b"this is not json", b"1"),
    "header-not-an-object": frame(b'["result"]', b"1"),
    "type-not-a-string": frame(b'{"type": 7}', b"1"),
    "unknown-type": frame(b'{"type": "invoke", "id": "{id}"}', b"{}"),
    "answer-for-another-call": frame(b'{"type": "result", "id": "someone-else"}', b"1"),
    "unsolicited-ready": frame(b'{"type": "ready"}'),
    "result-not-json": frame(b'{"type": "result", "id": "{id}"}', b"\xff{not json"),
    "partial-frame-then-stall": struct.pack(">II", 100, 10) + b'{"type": "res',
    "random-bytes": bytes(range(256)) * 64,
    # Requests of the platform (the in-function API) out of turn: each a violation, not an error reply.
    "call-for-another-invocation": frame(
        b'{"type": "call", "id": "someone-else", "seq": 1, "op": "get_object"}'
    ),
    "call-numbered-out-of-turn": frame(b'{"type": "call", "id": "{id}", "seq": 2, "op": "get_object"}'),
    "call-without-op": frame(b'{"type": "call", "id": "{id}", "seq": 1, "bucket": "b"}'),
    "same-call-twice-at-once": frame(b'{"type": "call", "id": "{id}", "seq": 1, "op": "list_objects"}') * 2,
    "reply-from-the-runtime": frame(b'{"type": "reply", "id": "{id}", "seq": 1, "ok": true}'),
}


HANDLER = """
import os, time

def handler(event, context):
    if event.get("garbage") is None:
        return "fine"
    garbage = bytes.fromhex(event["garbage"]).replace(b"{id}", context.aws_request_id.encode())
    view = memoryview(garbage)
    while view:
        view = view[os.write(3, view):]
    time.sleep(3600)  # never answer properly: the garbage is all the worker gets
"""


@pytest.fixture(scope="module")
def garbage_function(server):
    client = server.client()
    code = base64.b64encode(zip_files({"main.py": HANDLER})).decode()
    response = client.put("/v1/functions/chan-garbage", json={"code": code, "timeout_s": TIMEOUT_S})
    assert response.status_code in (200, 201), response.text
    return "chan-garbage"


@pytest.mark.parametrize("garbage", list(GARBAGE))
def test_garbage_on_the_runtime_channel_is_runtime_exited(api, garbage_function, garbage):
    warm = api.post(f"/v1/functions/{garbage_function}/invoke", json={})
    assert warm.status_code == 200
    started = time.monotonic()
    response = api.post(f"/v1/functions/{garbage_function}/invoke", json={"garbage": GARBAGE[garbage].hex()})
    elapsed = time.monotonic() - started
    assert response.status_code == 500, response.text
    assert response.headers["x-wuzhao-function-error"] == "RuntimeExited"
    assert error_code(response) == "RuntimeExited"
    if garbage == "partial-frame-then-stall":  # only the clock can tell a stall from a slow frame
        assert elapsed < TIMEOUT_S + 2
    else:  # the worker saw the garbage at once, it did not wait for the timeout
        assert elapsed < TIMEOUT_S - 1, f"took {elapsed:.1f}s"
    again = api.post(f"/v1/functions/{garbage_function}/invoke", json={})
    assert again.status_code == 200
    assert again.json() == "fine"
    assert again.headers["x-wuzhao-cold-start"] == "true"  # the garbled instance is gone


def test_closing_the_runtime_channel_is_runtime_exited(api, hostile):
    hostile(
        "chan-close",
        """
import os, time

def handler(event, context):
    if event.get("close"):
        os.close(3)
        time.sleep(3600)
    return "fine"
""",
        timeout_s=TIMEOUT_S,
    )
    response = api.post("/v1/functions/chan-close/invoke", json={"close": True})
    assert response.status_code == 500, response.text
    assert error_code(response) == "RuntimeExited"
    again = api.post("/v1/functions/chan-close/invoke", json={})
    assert again.status_code == 200
    assert again.headers["x-wuzhao-cold-start"] == "true"


def test_channel_garbage_is_never_echoed_to_the_caller(api, garbage_function):
    response = api.post(
        f"/v1/functions/{garbage_function}/invoke",
        json={"garbage": frame(b'{"type": "result", "id": "x"}', b"<script>").hex()},
    )
    assert response.status_code == 500
    assert b"<script>" not in response.content
    json.loads(response.content)  # a well-formed error body


# Requests of the platform that are sound frames but bad requests: the function gets an error
# reply, and its instance lives on. The handler writes the frames and reads the replies itself.
RAW_CALLS = """
import json, os, struct

def frame(header, body=b""):
    raw = json.dumps(header).encode()
    return struct.pack(">II", len(raw), len(body)) + raw + body

def read_frame():
    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = os.read(3, n - len(data))
            assert chunk, "the worker closed the channel"
            data += chunk
        return data
    header_len, body_len = struct.unpack(">II", exactly(8))
    return json.loads(exactly(header_len)), exactly(body_len)

def handler(event, context):
    replies = []
    for seq, (header, body) in enumerate(event["calls"], 1):
        header = {**header, "type": "call", "id": context.aws_request_id, "seq": seq}
        os.write(3, frame(header, body.encode()))
        reply, body = read_frame()
        error = reply.get("error") or {}
        replies.append([reply.get("ok"), error.get("code"), error.get("field")])
    return replies
"""

BAD_REQUESTS = [
    ({"op": "launch_missiles"}, "", [False, "BadRequest", "op"]),
    ({"op": "get_object", "bucket": 7, "key": "k"}, "", [False, "BadRequest", "bucket"]),
    ({"op": "get_object", "bucket": "b", "key": "k", "sneaky": True}, "", [False, "BadRequest", "sneaky"]),
    ({"op": "get_object", "bucket": "b"}, "", [False, "BadRequest", "key"]),
    (
        {"op": "get_object", "bucket": "no-such-bucket", "key": "../../admin.key"},
        "",
        [False, "BadRequest", "key"],
    ),
    ({"op": "get_object", "bucket": "no-such-bucket", "key": "k"}, "", [False, "NotFound", None]),
    ({"op": "list_objects", "bucket": "b", "limit": 10**30}, "", [False, "BadRequest", "limit"]),
    ({"op": "invoke", "function": "canary", "async": "maybe"}, "{}", [False, "BadRequest", "async"]),
    ({"op": "invoke", "function": "../canary"}, "{}", [False, "NotFound", None]),
    ({"op": "invoke", "function": "canary"}, "{not json", [False, "InvalidJSON", "event"]),
    ({"op": "publish", "topic": "t", "attributes": {"a": 1}}, '"m"', [False, "BadRequest", "attributes"]),
    (
        {"op": "delete_object", "bucket": "b", "key": "k"},
        "a body it takes not",
        [False, "BadRequest", "body"],
    ),
]


def test_bad_requests_are_error_replies_and_the_instance_lives(api, hostile):
    hostile("chan-requests", RAW_CALLS, timeout_s=TIMEOUT_S)
    calls = [[header, body] for header, body, _ in BAD_REQUESTS]
    response = api.post("/v1/functions/chan-requests/invoke", json={"calls": calls})
    assert response.status_code == 200, response.text
    assert response.json() == [expected for _, _, expected in BAD_REQUESTS]
    again = api.post("/v1/functions/chan-requests/invoke", json={"calls": calls[:1]})
    assert again.status_code == 200
    assert again.headers["x-wuzhao-cold-start"] == "false"  # the same instance, unharmed


def test_a_request_over_the_cap_is_refused_unread(api, garbage_function):
    header = b'{"type": "call", "id": "{id}", "seq": 1, "op": "put_object", "bucket": "b", "key": "k"}'
    oversized = struct.pack(">II", len(header), 1 << 30) + header  # announces 1 GB, sends none of it
    started = time.monotonic()
    response = api.post(f"/v1/functions/{garbage_function}/invoke", json={"garbage": oversized.hex()})
    assert response.status_code == 413, response.text
    assert error_code(response) == "ResponseTooLarge"
    assert time.monotonic() - started < TIMEOUT_S - 1
    again = api.post(f"/v1/functions/{garbage_function}/invoke", json={})
    assert (again.status_code, again.headers["x-wuzhao-cold-start"]) == (200, "true")


# Descriptors: a large result comes back in a sealed memfd passed with its frame
# (SCM_RIGHTS). The handler sends a frame with descriptors of its choosing itself.
FD_HANDLER = """
import array, fcntl, json, os, socket, struct, time

SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
SHRINK_AND_GROW = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW  # not write: its bytes may change


def frame(header, body=b""):
    raw = json.dumps(header).encode()
    return struct.pack(">II", len(raw), len(body)) + raw + body


def memfd(data, seals=SEALS, size=None):
    fd = os.memfd_create("x", os.MFD_ALLOW_SEALING)
    os.write(fd, data)
    if size is not None:
        os.ftruncate(fd, size)
    if seals:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    return fd


def pipe():
    read_end, write_end = os.pipe()
    os.write(write_end, b'"ok"')
    return read_end


def tmp_file():
    with open("/tmp/result.json", "wb") as file:
        file.write(b'"ok"')
    return os.open("/tmp/result.json", os.O_RDONLY)


def handler(event, context):
    case = event.get("case")
    if case is None:
        return "fine"
    result = lambda length, body=b"": frame(
        {"type": "result", "id": context.aws_request_id, "memfd": length}, body
    )
    inline = lambda body: frame({"type": "result", "id": context.aws_request_id}, body)
    data, fds = {
        "announced-but-missing": lambda: (result(4), []),
        "not-announced": lambda: (inline(b'"ok"'), [memfd(b'"ok"')]),
        "two-descriptors": lambda: (result(4), [memfd(b'"ok"'), memfd(b'"ok"')]),
        "many-descriptors": lambda: (result(4), [memfd(b'"ok"') for _ in range(16)]),
        "a-pipe": lambda: (result(4), [pipe()]),
        "a-tmp-file": lambda: (result(4), [tmp_file()]),
        "the-channel-itself": lambda: (result(4), [3]),
        "unsealed-memfd": lambda: (result(4), [memfd(b'"ok"', seals=0)]),
        "writable-memfd": lambda: (result(4), [memfd(b'"ok"', seals=SHRINK_AND_GROW)]),
        "shorter-than-announced": lambda: (result(100), [memfd(b'"ok"')]),
        "a-terabyte-announced-as-4-bytes": lambda: (result(4), [memfd(b"", size=1 << 40)]),
        "inline-body-too": lambda: (result(4, b'"ok"'), [memfd(b'"ok"')]),
        "not-json": lambda: (result(4), [memfd(b"\\xff{no")]),
        "over-the-cap": lambda: (result(1 << 30), [memfd(b"", size=1 << 30)]),
    }[case]()
    channel = socket.socket(fileno=3)
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sent = channel.sendmsg([data], rights)
    channel.sendall(data[sent:])
    channel.detach()
    time.sleep(3600)  # never answer properly: this is all the worker gets
"""

# case -> why the worker refuses it (its RuntimeExited message says so)
BAD_DESCRIPTORS = {
    "announced-but-missing": "did not arrive",
    "not-announced": "announced none",
    "two-descriptors": "no frame announced",
    "many-descriptors": "more descriptors in one read",
    "a-pipe": "not a memfd",
    "a-tmp-file": "not a memfd",  # tmpfs: it has seals, but only F_SEAL_SEAL
    "the-channel-itself": "not a memfd",
    "unsealed-memfd": "not a memfd",
    "writable-memfd": "not a memfd",
    "shorter-than-announced": "the frame announced 100",
    "a-terabyte-announced-as-4-bytes": "the frame announced 4",
    "inline-body-too": "inline body",
    "not-json": "not valid JSON",
}


def server_fds(server) -> list[str]:
    """What the server process holds open: one entry per descriptor."""
    fds = f"/proc/{server.process.pid}/fd"
    links = []
    for name in os.listdir(fds):
        with contextlib.suppress(FileNotFoundError):
            links.append(os.readlink(f"{fds}/{name}").split(":[")[0])  # socket:[123] -> socket
    return sorted(links)


@pytest.fixture(scope="module")
def fd_function(server):
    client = server.client()
    code = base64.b64encode(zip_files({"main.py": FD_HANDLER})).decode()
    response = client.put("/v1/functions/chan-fds", json={"code": code, "timeout_s": TIMEOUT_S})
    assert response.status_code in (200, 201), response.text
    return "chan-fds"


@pytest.mark.parametrize("case", list(BAD_DESCRIPTORS))
def test_bad_descriptors_on_the_runtime_channel_are_runtime_exited_and_none_is_kept(
    api, server, fd_function, case
):
    warm = api.post(f"/v1/functions/{fd_function}/invoke", json={})
    assert warm.status_code == 200
    before = server_fds(server)
    started = time.monotonic()
    response = api.post(f"/v1/functions/{fd_function}/invoke", json={"case": case})
    elapsed = time.monotonic() - started
    assert response.status_code == 500, response.text
    assert error_code(response) == "RuntimeExited"
    assert BAD_DESCRIPTORS[case] in response.json()["error"]["message"]
    assert elapsed < TIMEOUT_S - 1, f"took {elapsed:.1f}s"  # seen at once, not by the timeout
    again = api.post(f"/v1/functions/{fd_function}/invoke", json={})
    assert again.status_code == 200
    assert again.headers["x-wuzhao-cold-start"] == "true"  # the instance that sent them is gone
    # The server holds what it held with one instance of the function: nothing it was sent.
    assert wait_until(lambda: server_fds(server) == before, timeout=5), _difference(
        before, server_fds(server)
    )
    assert not [link for link in server_fds(server) if link.startswith("/memfd:")]


def test_a_memfd_announced_over_the_cap_is_response_too_large_unread(api, server, fd_function):
    before = server_fds(server)
    started = time.monotonic()
    response = api.post(f"/v1/functions/{fd_function}/invoke", json={"case": "over-the-cap"})
    assert response.status_code == 413, response.text
    assert error_code(response) == "ResponseTooLarge"
    assert time.monotonic() - started < TIMEOUT_S - 1
    assert api.post(f"/v1/functions/{fd_function}/invoke", json={}).status_code == 200
    assert wait_until(lambda: server_fds(server) == before, timeout=5), (before, server_fds(server))


# Last in the file: it runs long, and the connections other tests left idle close meanwhile,
# not while a test above counts the server's descriptors.
def test_a_flood_of_requests_neither_stalls_nor_swells_the_worker(api, server, deploy):
    deploy("chan-bystander", {"main.py": "def handler(event, context):\n    return 'here'\n"})
    deploy(
        "chan-flood",
        {
            "main.py": """
import time
from wuzhao import fn

def handler(event, context):
    count, until = 0, time.monotonic() + event["seconds"]
    while time.monotonic() < until:
        try:
            fn.get_object("no-such-bucket", "k" * 1000)
        except fn.NotFound:
            count += 1
    return count
"""
        },
        timeout_s=30,
    )
    flood_client = server.client()
    try:
        with PeakRss(server.process.pid) as rss, ThreadPoolExecutor(2) as pool:
            flood = pool.submit(
                lambda: flood_client.post("/v1/functions/chan-flood/invoke", json={"seconds": 4})
            )
            time.sleep(0.5)
            worst = 0.0
            while not flood.done():  # meanwhile another function answers as quickly as ever
                started = time.monotonic()
                assert api.post("/v1/functions/chan-bystander/invoke").status_code == 200
                worst = max(worst, time.monotonic() - started)
                time.sleep(0.1)
            response = flood.result()
    finally:
        # Closed now, not by the server's keep-alive timeout in the middle of a later test that
        # counts the server's descriptors.
        flood_client.close()
        api.close()
    assert response.status_code == 200, response.text
    assert response.json() > 1000  # requests were served all along
    assert worst < 1.0, worst
    assert rss.peak - rss.before < 50 * 1024  # KB: what a flood leaves is counters, not buffers


def _difference(before: list[str], after: list[str]) -> tuple[list[str], list[str]]:
    """What is gone and what is new, once each."""
    gone, new = list(before), list(after)
    for link in before:
        if link in new:
            new.remove(link)
            gone.remove(link)
    return gone, new
