"""The in-function API (``from wuzhao import fn``) on a real server: objects, topics and calls of
other functions, made from inside sandboxed functions over the runtime channel.

The loop a function closes by writing into the bucket that triggers it is in ``test_loops.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

NS_HEADER = "X-Wuzhao-Namespace"

# Runs the Python statements of event["code"] with fn imported; returns what they put in `out`.
SCRIPT = """
import json, os, threading, time
from wuzhao import fn

def handler(event, context):
    out = {}
    exec(event["code"], {"fn": fn, "out": out, "event": event, "context": context,
                         "threading": threading, "time": time, "os": os, "json": json})
    return out
"""


def until(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, what or "timed out"
        time.sleep(0.05)
    return found


def run(api: httpx.Client, code: str, function: str = "fn-script", **event: Any) -> dict[str, Any]:
    response = api.post(f"/v1/functions/{function}/invoke", json={"code": code, **event})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_function_writes_reads_lists_and_deletes_objects(api, deploy):
    deploy("fn-script", {"main.py": SCRIPT})
    assert api.put("/v1/buckets/fn-box").status_code == 201
    out = run(
        api,
        """
written = fn.put_object("fn-box", "notes/a.txt", "héllo")
fn.put_object("fn-box", "notes/b.bin", bytes(range(256)), content_type="application/x-test",
              metadata={"owner": "fn"})
out["written"] = written
out["a"] = fn.get_object("fn-box", "notes/a.txt").decode()
out["b"] = list(fn.get_object("fn-box", "notes/b.bin"))
out["keys"] = [o["key"] for o in fn.list_objects("fn-box", prefix="notes/")]
out["page"] = [o["key"] for o in fn.list_objects("fn-box", after="notes/a.txt", limit=1)]
fn.delete_object("fn-box", "notes/b.bin")
out["after_delete"] = [o["key"] for o in fn.list_objects("fn-box")]
""",
    )
    written = out["written"]
    assert (written["bucket"], written["key"], written["size"]) == ("fn-box", "notes/a.txt", 6)
    assert written["content_type"] == "text/plain; charset=utf-8"
    assert out["a"] == "héllo"
    assert out["b"] == list(range(256))
    assert out["keys"] == ["notes/a.txt", "notes/b.bin"]
    assert out["page"] == ["notes/b.bin"]
    assert out["after_delete"] == ["notes/a.txt"]
    # What the function wrote is the namespace's object, as the API shows it.
    listed = api.get("/v1/buckets/fn-box/objects").json()["objects"]
    assert listed == [written]
    assert api.get("/v1/buckets/fn-box/objects/notes/a.txt").content == "héllo".encode()


def test_a_large_object_travels_in_memfds_both_ways(api, deploy):
    deploy("fn-script", {"main.py": SCRIPT}, memory_mb=256)
    assert api.put("/v1/buckets/fn-big").status_code in (200, 201)
    out = run(
        api,
        """
data = os.urandom(3 * 1024 * 1024)
fn.put_object("fn-big", "blob", data)
out["same"] = fn.get_object("fn-big", "blob") == data
try:
    fn.put_object("fn-big", "huge", b"x" * (7 * 1024 * 1024))  # over the 6 MiB a call carries
except fn.PayloadTooLarge as exc:
    out["too_large"] = exc.code
""",
    )
    assert out == {"same": True, "too_large": "PayloadTooLarge"}
    assert int(api.head("/v1/buckets/fn-big/objects/blob").headers["content-length"]) == 3 * 1024 * 1024


def test_failures_are_exceptions_with_the_api_s_codes(api, deploy):
    deploy(
        "fn-errors",
        {
            "main.py": """
from wuzhao import fn

try:
    fn.get_object("fn-box", "x")
    AT_IMPORT = "no error"
except fn.NotInInvocation as exc:
    AT_IMPORT = exc.code

def handler(event, context):
    out = {"import": AT_IMPORT}
    for name, call in {
        "missing_object": lambda: fn.get_object("fn-errs", "nothing"),
        "missing_bucket": lambda: fn.put_object("no-such-bucket", "k", b"x"),
        "bad_key": lambda: fn.put_object("fn-errs", "a/../b", b"x"),
        "bad_type": lambda: fn.get_object("fn-errs", 7),
        "bad_limit": lambda: fn.list_objects("fn-errs", limit=5000),
        "missing_function": lambda: fn.invoke("no-such-function", {}),
        "bad_topic": lambda: fn.publish("Not A Topic", "x"),
    }.items():
        try:
            call()
            out[name] = "no error"
        except fn.PlatformError as exc:
            out[name] = [type(exc).__name__, exc.code, exc.field]
    return out
"""
        },
    )
    assert api.put("/v1/buckets/fn-errs").status_code in (200, 201)
    response = api.post("/v1/functions/fn-errors/invoke", json={})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "import": "NotInInvocation",
        "missing_object": ["NotFound", "NotFound", None],
        "missing_bucket": ["NotFound", "NotFound", None],
        "bad_key": ["BadRequest", "BadRequest", "key"],
        "bad_type": ["BadRequest", "BadRequest", "key"],
        "bad_limit": ["BadRequest", "BadRequest", "limit"],
        "missing_function": ["NotFound", "NotFound", None],
        "bad_topic": ["BadRequest", "BadRequest", "topic"],
    }
    # Errors are the function's to catch: the instance is as good as before.
    again = api.post("/v1/functions/fn-errors/invoke", json={})
    assert again.headers["x-wuzhao-cold-start"] == "false"


def test_threads_share_the_channel_and_a_late_thread_is_refused(api, deploy):
    deploy("fn-script", {"main.py": SCRIPT})
    assert api.put("/v1/buckets/fn-threads").status_code in (200, 201)
    out = run(
        api,
        """
errors = []
def write(n):
    try:
        for i in range(20):
            fn.put_object("fn-threads", f"t{n}/{i}", str(i))
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
for t in threads: t.start()
for t in threads: t.join()
out["errors"] = errors
out["count"] = len(fn.list_objects("fn-threads"))

import builtins
def late():
    while fn._session is not None:  # until the handler has returned
        time.sleep(0.001)
    try:
        fn.get_object("fn-threads", "t0/0")
        builtins.LATE = "no error"
    except fn.NotInInvocation as exc:
        builtins.LATE = exc.code
threading.Thread(target=late, daemon=True).start()
""",
    )
    assert out == {"errors": [], "count": 80}
    late = run(api, "import builtins; out['late'] = getattr(builtins, 'LATE', None)")
    assert late == {"late": "NotInInvocation"}


def test_a_function_cannot_reach_a_bucket_of_another_namespace(server, api, deploy):
    assert api.post("/v1/namespaces", json={"name": "fn-other"}).status_code == 201
    other = {NS_HEADER: "fn-other"}
    assert api.put("/v1/buckets/fn-secret", headers=other).status_code == 201
    assert api.put("/v1/buckets/fn-secret/objects/k", content=b"theirs", headers=other).status_code == 201
    deploy("fn-script", {"main.py": SCRIPT})
    out = run(
        api,
        """
for name, call in {
    "get": lambda: fn.get_object("fn-secret", "k"),
    "put": lambda: fn.put_object("fn-secret", "k", b"mine"),
    "delete": lambda: fn.delete_object("fn-secret", "k"),
    "list": lambda: fn.list_objects("fn-secret"),
}.items():
    try:
        call()
        out[name] = "no error"
    except fn.PlatformError as exc:
        out[name] = exc.code
""",
    )
    assert out == {"get": "NotFound", "put": "NotFound", "delete": "NotFound", "list": "NotFound"}
    assert api.get("/v1/buckets/fn-secret/objects/k", headers=other).content == b"theirs"


def test_a_published_message_reaches_a_topic_triggered_function(api, deploy):
    deploy(
        "fn-sink",
        {
            "main.py": """
import json

def handler(event, context):
    sns = event["Records"][0]["Sns"]
    seen = {"id": sns["MessageId"], "message": sns["Message"], "attributes": sns["MessageAttributes"]}
    print(json.dumps(seen))
"""
        },
    )
    trigger = {"type": "topic", "function": "fn-sink", "topic": "fn-news", "filter": {"kind": ["hot"]}}
    assert api.put("/v1/triggers/fn-news", json=trigger).status_code in (200, 201)
    deploy("fn-script", {"main.py": SCRIPT})
    out = run(
        api,
        """
out["hot"] = fn.publish("fn-news", {"n": 1}, {"kind": "hot"})
out["cold"] = fn.publish("fn-news", "not for the sink", {"kind": "cold"})
""",
    )

    def seen() -> list[dict[str, Any]]:
        logs = api.get("/v1/functions/fn-sink/logs").json()["logs"]
        return [json.loads(line["message"]) for line in logs if line["message"].startswith("{")]

    (got,) = until(seen, what="the subscriber never ran")
    assert got == {
        "id": out["hot"],
        "message": '{"n":1}',  # a JSON value goes as its JSON text
        "attributes": {"kind": {"Type": "String", "Value": "hot"}},
    }
    assert out["cold"] and out["cold"] != out["hot"]
    time.sleep(0.5)
    assert len(seen()) == 1  # the filter kept the other message out


def test_a_synchronous_invoke_returns_the_result_or_raises_the_callee_s_error(api, deploy):
    deploy(
        "fn-callee",
        {
            "main.py": """
def handler(event, context):
    if event.get("fail"):
        raise ValueError("no " + event["fail"])
    return {"double": event["n"] * 2, "request": context.aws_request_id}
"""
        },
    )
    deploy("fn-script", {"main.py": SCRIPT})
    out = run(
        api,
        """
out["result"] = fn.invoke("fn-callee", {"n": 21})
out["none"] = fn.invoke("fn-callee", {"n": 0}, qualifier="$LATEST")["double"]
try:
    fn.invoke("fn-callee", {"fail": "way"})
except fn.FunctionError as exc:
    out["error"] = [exc.code, exc.error_type, exc.message, exc.invocation_id, bool(exc.traceback)]
""",
    )
    assert out["result"]["double"] == 42
    assert out["none"] == 0
    code, error_type, message, invocation_id, has_trace = out["error"]
    assert (code, error_type, message, has_trace) == ("FunctionError", "ValueError", "no way", True)
    record = api.get(f"/v1/invocations/{invocation_id}").json()
    assert record["function"] == "fn-callee"
    assert record["error"]["code"] == "FunctionError"
    done = api.get(f"/v1/invocations/{out['result']['request']}").json()
    assert done["status"] == "succeeded"

    # An uncaught callee error fails the caller with the callee's message.
    response = api.post(
        "/v1/functions/fn-script/invoke", json={"code": "fn.invoke('fn-callee', {'fail': 'luck'})"}
    )
    assert response.status_code == 500
    assert response.json()["error"]["error_type"] == "FunctionError"
    assert "no luck" in response.json()["error"]["message"]


def test_an_asynchronous_invoke_returns_an_id_that_succeeds(api, deploy):
    deploy("fn-callee-async", {"main.py": "def handler(event, context):\n    return {'got': event}\n"})
    deploy("fn-script", {"main.py": SCRIPT})
    out = run(api, 'out["id"] = fn.invoke("fn-callee-async", {"x": 1}, async_=True)')

    def finished() -> dict[str, Any] | None:
        call = api.get(f"/v1/invocations/{out['id']}").json()
        return call if call["status"] in ("succeeded", "dead") else None

    call = until(finished, what="the asynchronous call never finished")
    assert call["status"] == "succeeded"
    assert call["result"] == {"got": {"x": 1}}


def test_time_in_a_platform_call_counts_against_the_caller_s_timeout(api, deploy):
    deploy("fn-slow", {"main.py": "import time\n\ndef handler(event, context):\n    time.sleep(4)\n"})
    deploy("fn-impatient", {"main.py": SCRIPT}, timeout_s=1)
    started = time.monotonic()
    response = api.post("/v1/functions/fn-impatient/invoke", json={"code": "fn.invoke('fn-slow', {})"})
    elapsed = time.monotonic() - started
    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "Timeout"
    assert elapsed < 3, elapsed  # its own timeout, not the callee's
    again = api.post("/v1/functions/fn-impatient/invoke", json={"code": "out['ok'] = 1"})
    assert again.json() == {"ok": 1}


def test_fn_works_with_network_none_where_the_api_is_unreachable(server, api, deploy):
    deploy("fn-offline", {"main.py": SCRIPT}, network="none")
    assert api.get("/v1/functions/fn-offline").json()["network"] == "none"
    assert api.put("/v1/buckets/fn-offline").status_code in (200, 201)
    out = run(
        api,
        """
import socket
try:
    socket.create_connection(("127.0.0.1", event["port"]), timeout=1).close()
    out["connect"] = "connected"
except OSError as exc:
    out["connect"] = type(exc).__name__
out["written"] = fn.put_object("fn-offline", "k", b"v")["size"]
out["env"] = sorted(k for k, v in os.environ.items() if str(event["port"]) in v or "WUZHAO" in k)
""",
        function="fn-offline",
        port=server.port,
    )
    assert out == {"connect": "ConnectionRefusedError", "written": 1, "env": []}


def test_calls_are_counted_by_operation_and_outcome(api, deploy):
    deploy("fn-script", {"main.py": SCRIPT})
    assert api.put("/v1/buckets/fn-counted").status_code in (200, 201)
    run(
        api,
        """
fn.put_object("fn-counted", "k", b"v")
try:
    fn.get_object("fn-never", "k")
except fn.NotFound:
    pass
""",
    )
    text = api.get("/metrics").text
    assert (
        metric(
            text, "wuzhao_function_api_calls_total", function="fn-script", op="get_object", outcome="NotFound"
        )
        >= 1
    )
    assert (
        metric(text, "wuzhao_function_api_calls_total", function="fn-script", op="put_object", outcome="ok")
        >= 1
    )
