"""Invoking functions: results, headers, warm reuse, and every kind of failure."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import random
import string
import time

import pytest

STATEFUL = """
import os
calls = 0

def handler(event, context):
    global calls
    calls += 1
    return {
        "calls": calls,
        "pid": os.getpid(),
        "request_id": context.aws_request_id,
        "same_id": context.request_id == context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory": context.memory_limit_in_mb,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "env": os.environ.get("GREETING"),
        "event": event,
    }
"""


def test_hello_world_and_headers(api, deploy):
    deploy("hello")
    response = api.post("/v1/functions/hello/invoke", json={"name": "wuzhao"})
    assert response.status_code == 200, response.text
    assert response.json() == {"hello": "wuzhao"}
    assert response.headers["content-type"] == "application/json"
    assert len(response.headers["x-wuzhao-invocation-id"]) == 36
    assert response.headers["x-wuzhao-cold-start"] in ("true", "false")
    assert float(response.headers["x-wuzhao-duration-ms"]) >= 0
    assert "x-wuzhao-function-error" not in response.headers


def test_empty_body_is_an_empty_event(api, deploy):
    deploy("echo-empty", {"main.py": "def handler(event, context):\n    return event\n"})
    assert api.post("/v1/functions/echo-empty/invoke").json() == {}


def test_warm_instance_is_reused_and_keeps_module_state(api, deploy):
    deploy("stateful", {"main.py": STATEFUL}, memory_mb=256, timeout_s=7, env={"GREETING": "hi"})
    first = api.post("/v1/functions/stateful/invoke", json={"n": 1})
    second = api.post("/v1/functions/stateful/invoke", json={"n": 2})
    assert first.headers["x-wuzhao-cold-start"] == "true"
    assert second.headers["x-wuzhao-cold-start"] == "false"
    one, two = first.json(), second.json()
    assert (one["calls"], two["calls"]) == (1, 2)
    assert one["pid"] == two["pid"] == 1  # pid 1 of its own pid namespace
    assert two["request_id"] == second.headers["x-wuzhao-invocation-id"]
    assert two["same_id"] is True
    assert two["function_name"] == "stateful"
    assert two["function_version"] == "$LATEST"
    assert two["memory"] == 256
    assert 0 < two["remaining_ms"] <= 7000
    assert two["env"] == "hi"
    assert two["event"] == {"n": 2}


def test_handler_exception_is_a_function_error(api, deploy):
    deploy(
        "raises",
        {"main.py": "def handler(event, context):\n    raise ValueError('bad input: ' + str(event))\n"},
    )
    response = api.post("/v1/functions/raises/invoke", json=7)
    assert response.status_code == 500
    assert response.headers["x-wuzhao-function-error"] == "FunctionError"
    error = response.json()["error"]
    assert error["code"] == "FunctionError"
    assert error["error_type"] == "ValueError"
    assert error["message"] == "bad input: 7"
    assert any("raise ValueError" in line for line in error["traceback"])
    # the runtime survived the exception: the next call is warm
    again = api.post("/v1/functions/raises/invoke", json=8)
    assert again.headers["x-wuzhao-cold-start"] == "false"


def test_unserialisable_result_is_a_function_error(api, deploy):
    deploy("badresult", {"main.py": "def handler(event, context):\n    return object()\n"})
    response = api.post("/v1/functions/badresult/invoke")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "FunctionError"


def test_import_error_is_an_init_error(api, deploy):
    deploy("badimport", {"main.py": "import no_such_module\n\ndef handler(event, context):\n    return 1\n"})
    response = api.post("/v1/functions/badimport/invoke")
    assert response.status_code == 500
    assert response.headers["x-wuzhao-function-error"] == "InitError"
    error = response.json()["error"]
    assert error["code"] == "InitError"
    assert "no_such_module" in error["message"]


def test_missing_handler_attribute_is_an_init_error(api, deploy):
    deploy("noattr", {"main.py": "def other(event, context):\n    return 1\n"})
    response = api.post("/v1/functions/noattr/invoke")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "InitError"


def test_timeout_kills_the_call_and_the_next_call_works(api, deploy):
    deploy(
        "sleepy",
        {
            "main.py": """
            import time

            def handler(event, context):
                time.sleep(event["s"])
                return "done"
            """
        },
        timeout_s=1,
    )
    response = api.post("/v1/functions/sleepy/invoke", json={"s": 30})
    assert response.status_code == 504
    assert response.headers["x-wuzhao-function-error"] == "Timeout"
    assert response.json()["error"]["code"] == "Timeout"
    assert 900 <= float(response.headers["x-wuzhao-duration-ms"]) < 5000
    ok = api.post("/v1/functions/sleepy/invoke", json={"s": 0})
    assert ok.status_code == 200
    assert ok.json() == "done"
    assert ok.headers["x-wuzhao-cold-start"] == "true"  # the timed-out instance was killed


def test_out_of_memory_is_reported_and_the_next_call_works(api, deploy):
    deploy(
        "hungry",
        {
            "main.py": """
            def handler(event, context):
                if event.get("eat"):
                    hoard = []
                    while True:
                        hoard.append(bytearray(16 * 1024 * 1024))
                return "fine"
            """
        },
        memory_mb=128,
    )
    response = api.post("/v1/functions/hungry/invoke", json={"eat": True})
    assert response.status_code == 500
    assert response.headers["x-wuzhao-function-error"] == "OutOfMemory"
    assert response.json()["error"]["code"] == "OutOfMemory"
    assert api.post("/v1/functions/hungry/invoke", json={}).json() == "fine"
    assert api.get("/healthz").status_code == 200


def test_runtime_exit_is_reported(api, deploy):
    deploy("quitter", {"main.py": "import os\n\ndef handler(event, context):\n    os._exit(3)\n"})
    response = api.post("/v1/functions/quitter/invoke")
    assert response.status_code == 500
    assert response.headers["x-wuzhao-function-error"] == "RuntimeExited"
    assert "exit code 3" in response.json()["error"]["message"]


def test_invalid_event_json_is_400(api, deploy):
    deploy("hello-json")
    response = api.post(
        "/v1/functions/hello-json/invoke", content=b"{oops", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidJSON"


def test_event_over_the_limit_is_413(api, deploy):
    deploy("hello-big")
    event = json.dumps({"blob": "x" * (6 * 1024 * 1024 + 10)})
    response = api.post("/v1/functions/hello-big/invoke", content=event)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PayloadTooLarge"


def test_response_over_the_limit_is_refused(api, deploy):
    deploy("bigresult", {"main.py": "def handler(event, context):\n    return 'x' * (7 * 1024 * 1024)\n"})
    response = api.post("/v1/functions/bigresult/invoke")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "ResponseTooLarge"


def test_unknown_function_is_404(api):
    response = api.post("/v1/functions/nobody/invoke", json={})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NotFound"


def test_concurrent_calls_get_their_own_instances(api, deploy):
    deploy(
        "parallel",
        {
            "main.py": """
            import time

            def handler(event, context):
                time.sleep(0.5)
                return context.aws_request_id
            """
        },
    )

    def call(_):
        return api.post("/v1/functions/parallel/invoke", json={})

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(call, range(4)))
    assert all(r.status_code == 200 for r in responses)
    assert all(r.headers["x-wuzhao-cold-start"] == "true" for r in responses)
    counts = api.get("/v1/functions/parallel").json()["instances"]
    assert counts == {"idle": 4, "busy": 0}


@pytest.mark.parametrize("limit", [2])
def test_calls_over_the_concurrency_limit_are_throttled(start_server, code, limit):
    server = start_server(WUZHAO_MAX_CONCURRENCY=str(limit), WUZHAO_THROTTLE_WAIT="0.2")
    client = server.client()
    slow = {"main.py": "import time\n\ndef handler(event, context):\n    time.sleep(2)\n    return 1\n"}
    assert client.put("/v1/functions/slow", json={"code": code(slow)}).status_code == 201

    with concurrent.futures.ThreadPoolExecutor(limit + 2) as pool:
        responses = list(
            pool.map(lambda _: client.post("/v1/functions/slow/invoke", json={}), range(limit + 2))
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * limit + [429] * 2
    throttled = next(r for r in responses if r.status_code == 429)
    assert throttled.json()["error"]["code"] == "Throttled"


def test_idle_instances_are_stopped_scale_to_zero(start_server, code):
    server = start_server(WUZHAO_IDLE_TIMEOUT="1")
    client = server.client()
    assert client.put("/v1/functions/brief", json={"code": code()}).status_code == 201
    assert client.post("/v1/functions/brief/invoke", json={}).status_code == 200
    assert client.get("/v1/functions/brief").json()["instances"] == {"idle": 1, "busy": 0}
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if client.get("/v1/functions/brief").json()["instances"]["idle"] == 0:
            break
        time.sleep(0.2)
    assert client.get("/v1/functions/brief").json()["instances"] == {"idle": 0, "busy": 0}
    again = client.post("/v1/functions/brief/invoke", json={})
    assert again.headers["x-wuzhao-cold-start"] == "true"


def test_delete_stops_instances(api, deploy):
    deploy("doomed")
    assert api.post("/v1/functions/doomed/invoke").status_code == 200
    assert api.delete("/v1/functions/doomed").status_code == 204
    assert api.post("/v1/functions/doomed/invoke").status_code == 404


# Large events and results travel in memfds. The function watches its own runtime's
# channel: recvmsg and sendmsg of the socket class, wrapped, note every descriptor
# that comes or goes with the channel's bytes (what it is, while it is still open).
MEMFD_WATCH = """
import array, os, socket

moved = []
_recvmsg, _sendmsg = socket.socket.recvmsg, socket.socket.sendmsg


def _links(ancillary):
    links = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            data = bytes(data)  # sendmsg's may be an array
            fds = array.array("i")
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
            links += [os.readlink(f"/proc/self/fd/{fd}") for fd in fds]
    return links


def recvmsg(self, *args):
    answer = _recvmsg(self, *args)
    moved.extend(["received", link] for link in _links(answer[1]))
    return answer


def sendmsg(self, buffers, ancillary=(), *args):
    moved.extend(["sent", link] for link in _links(ancillary))
    return _sendmsg(self, buffers, ancillary, *args)


socket.socket.recvmsg = recvmsg
socket.socket.sendmsg = sendmsg


def handler(event, context):
    if event.get("report"):
        report = {"moved": list(moved), "fds": sorted(os.listdir("/proc/self/fd"))}
        moved.clear()
        return report
    return event["echo"]
"""


def server_memfds(server) -> list[str]:
    fds = f"/proc/{server.process.pid}/fd"
    links = []
    for name in os.listdir(fds):
        with contextlib.suppress(FileNotFoundError):
            links.append(os.readlink(f"{fds}/{name}"))
    return [link for link in links if link.startswith("/memfd:")]


def test_a_5mb_event_and_result_round_trip_byte_exact_through_memfds(api, deploy, server):
    deploy("memfd-echo", {"main.py": MEMFD_WATCH}, memory_mb=256)
    rng = random.Random(5)
    alphabet = string.ascii_letters + string.digits + ' "\\\n\t/éü✓€😀'
    text = "".join(rng.choices(alphabet, k=3_500_000))
    # The runtime answers json.dumps(value, separators=(",", ":")): so does the client.
    event = json.dumps({"echo": {"text": text, "n": [1, 2.5, None, True]}}, separators=(",", ":")).encode()
    expected = json.dumps({"text": text, "n": [1, 2.5, None, True]}, separators=(",", ":")).encode()
    assert 5_000_000 < len(event) < 6 * 1024 * 1024 and len(expected) > 5_000_000
    small = api.post("/v1/functions/memfd-echo/invoke", json={"echo": "small"})
    assert small.json() == "small"
    first_report = api.post("/v1/functions/memfd-echo/invoke", json={"report": True}).json()
    assert first_report["moved"] == []  # small bodies stay inline
    for _ in range(2):  # the second event goes in the same memfd, rewritten
        response = api.post("/v1/functions/memfd-echo/invoke", content=event)
        assert response.status_code == 200, response.text[:500]
        assert response.content == expected
        report = api.post("/v1/functions/memfd-echo/invoke", json={"report": True}).json()
        assert report["moved"] == [
            ["received", "/memfd:wuzhao-event (deleted)"],
            ["sent", "/memfd:wuzhao-result (deleted)"],
        ]
        assert report["fds"] == first_report["fds"]  # the runtime kept no descriptor
    # The worker keeps its event memfd while calls come, then gives it back.
    deadline = time.monotonic() + 10
    while server_memfds(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server_memfds(server) == []
