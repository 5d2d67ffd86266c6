"""Hostile functions writing garbage on the runtime channel (fd 3), the worker's only link to them.

The handler writes the bytes itself, bypassing the runtime, then waits to be
killed. Whatever it writes, the call must fail with ``RuntimeExited`` (at once
for malformed bytes; a partial frame followed by silence by the function's
timeout at the latest, but as ``RuntimeExited``, not ``Timeout``), and the
next call must work on a new instance.
"""

from __future__ import annotations

import base64
import json
import struct
import time

import pytest
from tests.conftest import zip_files
from tests.security.conftest import NEEDS_SANDBOX, error_code

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
