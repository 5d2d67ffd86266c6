"""Loop detection on a real server: a chain of calls that calls one function more than its
``max_chain_calls`` is stopped (the next call recorded dead, RecursiveLoop), while a pipeline
and many independent events are not.

Loops close through destinations, and through the in-function API (``from wuzhao import fn``):
a function writing into the bucket that triggers it (its write continues its chain, so the
trigger's call does), one invoking itself. The platform's part of the object path (a change
with a cause continues its chain) is also tested without a sandbox in
``tests/unit/worker/test_notifications.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

EVENT = {"X-Wuzhao-Invocation-Type": "Event"}

# Prints the event it got, as JSON on one line.
SINK = """
import json

def handler(event, context):
    print(json.dumps({"event": event, "call": context.aws_request_id}))
    return {"seen": True}
"""

TRIVIAL = """
def handler(event, context):
    print("run")
    return None
"""


def printed(api: httpx.Client, function: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        page = api.get(f"/v1/functions/{function}/logs", params={"after": after, "limit": 1000}).json()
        found += [json.loads(line["message"]) for line in page["logs"] if line["message"].startswith("{")]
        if not page["logs"]:
            return found
        after = page["next"]


def runs(api: httpx.Client, function: str) -> int:
    page = api.get(f"/v1/functions/{function}/logs", params={"limit": 1000}).json()
    return sum(line["message"] == "run" for line in page["logs"])


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def until(check: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, what or "timed out"
        time.sleep(0.1)
    return found


def submit(api: httpx.Client, name: str, event: Any) -> str:
    response = api.post(f"/v1/functions/{name}/invoke", json=event, headers=EVENT)
    assert response.status_code == 202, response.text
    return str(response.json()["invocation_id"])


def test_a_function_that_is_its_own_destination_stops_at_max_chain_calls(
    api: httpx.Client, deploy: Callable[..., Any]
) -> None:
    deploy("loop-self", {"main.py": SINK}, on_success="loop-self")
    assert api.get("/v1/functions/loop-self").json()["max_chain_calls"] == 16  # the default
    first = submit(api, "loop-self", {"start": True})

    dead = until(
        lambda: api.get("/v1/functions/loop-self/dead-letters").json()["dead_letters"],
        what="no RecursiveLoop dead letter",
    )
    time.sleep(1.0)  # and nothing more comes
    runs = printed(api, "loop-self")
    assert len(runs) == 16  # the client's call and 15 records of records
    assert runs[0]["event"] == {"start": True}
    innermost = runs[-1]["event"]
    for _ in range(14):  # each record is of the call before it
        innermost = innermost["requestPayload"]
    assert innermost["requestContext"]["requestId"] == first

    (stopped,) = dead
    assert stopped["error"]["code"] == "RecursiveLoop"
    assert "'loop-self' was called 16 times in one chain of calls" in stopped["error"]["message"]
    assert stopped["attempts"] == []
    call = api.get(f"/v1/invocations/{stopped['id']}").json()
    assert (call["status"], call["error"]["code"]) == ("dead", "RecursiveLoop")
    text = api.get("/metrics").text
    assert metric(text, "wuzhao_recursive_loops_total", function="loop-self") == 1


def test_a_lower_limit_stops_sooner_and_an_opted_out_loop_is_not_stopped(
    api: httpx.Client, deploy: Callable[..., Any]
) -> None:
    deploy("loop-three", {"main.py": SINK}, on_success="loop-three", max_chain_calls=3)
    submit(api, "loop-three", {})
    until(lambda: api.get("/v1/functions/loop-three/dead-letters").json()["dead_letters"])
    assert len(printed(api, "loop-three")) == 3

    # recursive_loop: allow opts out; the test ends the loop itself by removing the destination
    deploy(
        "loop-free", {"main.py": TRIVIAL}, on_success="loop-free", max_chain_calls=1, recursive_loop="allow"
    )
    submit(api, "loop-free", {})
    until(lambda: runs(api, "loop-free") >= 5, what="an opted-out loop was stopped")
    deploy("loop-free", {"main.py": TRIVIAL}, on_success="")
    assert api.get("/v1/functions/loop-free/dead-letters").json()["dead_letters"] == []
    assert metric(api.get("/metrics").text, "wuzhao_recursive_loops_total", function="loop-free") == 0


def test_a_pipeline_is_not_stopped_even_at_the_tightest_limit(
    api: httpx.Client, deploy: Callable[..., Any]
) -> None:
    deploy("pipe-c", {"main.py": SINK}, max_chain_calls=1)
    deploy("pipe-b", {"main.py": SINK}, on_success="pipe-c", max_chain_calls=1)
    deploy("pipe-a", {"main.py": SINK}, on_success="pipe-b", max_chain_calls=1)
    first = submit(api, "pipe-a", {"order": 1})
    (c,) = until(lambda: printed(api, "pipe-c"), what="C never ran")
    assert c["event"]["requestContext"]["functionArn"].endswith(":pipe-b:$LATEST")
    assert c["event"]["requestPayload"]["requestContext"]["requestId"] == first
    time.sleep(0.5)
    for name in ("pipe-a", "pipe-b", "pipe-c"):
        assert len(printed(api, name)) == 1
        assert api.get(f"/v1/functions/{name}/dead-letters").json()["dead_letters"] == []


def test_a_function_invoked_by_a_thousand_independent_events_is_not_stopped(
    api: httpx.Client, deploy: Callable[..., Any]
) -> None:
    # The tightest limit: were independent events one chain, the second would be stopped.
    deploy("many", {"main.py": TRIVIAL}, max_chain_calls=1, max_concurrency=20)
    assert (
        api.put("/v1/triggers/many", json={"type": "topic", "function": "many", "topic": "many"}).status_code
        == 201
    )

    def send(n: int) -> int:
        response = api.post("/v1/topics/many/messages", json={"message": str(n)})
        assert response.status_code == 202, response.text
        return int(response.json()["deliveries"])

    with ThreadPoolExecutor(16) as pool:  # together they share the queue's commits
        assert sum(pool.map(send, range(1000))) == 1000

    def done() -> bool:
        text = api.get("/metrics").text
        return metric(text, "wuzhao_async_outcomes_total", function="many", outcome="succeeded") >= 1000

    until(done, timeout=120, what="not every message's call succeeded")
    text = api.get("/metrics").text
    assert metric(text, "wuzhao_async_outcomes_total", function="many", outcome="succeeded") == 1000
    assert metric(text, "wuzhao_recursive_loops_total", function="many") == 0
    assert api.get("/v1/functions/many/dead-letters").json()["dead_letters"] == []


# Writes the key it was told of, plus "x", back into its own bucket: every write triggers it again.
WRITER = """
from urllib.parse import unquote_plus

from wuzhao import fn

def handler(event, context):
    key = unquote_plus(event["Records"][0]["s3"]["object"]["key"])
    print("run")
    fn.put_object("loop-bucket", key + "x", b"again")
"""


def test_a_function_writing_into_the_bucket_that_triggers_it_stops_at_max_chain_calls(
    api: httpx.Client, deploy: Callable[..., Any]
) -> None:
    deploy("loop-writer", {"main.py": WRITER})
    assert api.put("/v1/buckets/loop-bucket").status_code == 201
    trigger = {"type": "object", "function": "loop-writer", "bucket": "loop-bucket"}
    assert api.put("/v1/triggers/loop-writer", json=trigger).status_code == 201
    assert api.put("/v1/buckets/loop-bucket/objects/k", content=b"start").status_code == 201

    dead = until(
        lambda: api.get("/v1/functions/loop-writer/dead-letters").json()["dead_letters"],
        what="no RecursiveLoop dead letter",
    )
    time.sleep(1.0)  # and nothing more comes
    assert runs(api, "loop-writer") == 16  # the upload's call, then 15 calls of its own writes
    keys = [o["key"] for o in api.get("/v1/buckets/loop-bucket/objects").json()["objects"]]
    assert sorted(keys, key=len) == ["k" + "x" * n for n in range(17)]  # the 16th run's write stands

    (stopped,) = dead
    assert stopped["error"]["code"] == "RecursiveLoop"
    assert "'loop-writer' was called 16 times in one chain of calls" in stopped["error"]["message"]
    assert stopped["attempts"] == []
    call = api.get(f"/v1/invocations/{stopped['id']}").json()
    assert (call["status"], call["error"]["code"]) == ("dead", "RecursiveLoop")
    text = api.get("/metrics").text
    assert metric(text, "wuzhao_recursive_loops_total", function="loop-writer") == 1


def test_a_function_invoking_itself_synchronously_gets_recursive_loop(
    api: httpx.Client, deploy: Callable[..., Any]
) -> None:
    deploy(
        "loop-sync",
        {
            "main.py": """
from wuzhao import fn

def handler(event, context):
    try:
        return ["run", *fn.invoke("loop-sync", {})]
    except fn.RecursiveLoop as exc:
        return ["run", exc.code]
"""
        },
        max_chain_calls=3,
    )
    response = api.post("/v1/functions/loop-sync/invoke", json={})
    assert response.status_code == 200, response.text
    assert response.json() == ["run", "run", "run", "RecursiveLoop"]
    text = api.get("/metrics").text
    assert metric(text, "wuzhao_recursive_loops_total", function="loop-sync") == 1


def test_a_pipeline_through_the_in_function_api_is_not_stopped(
    api: httpx.Client, deploy: Callable[..., Any]
) -> None:
    deploy("fnpipe-c", {"main.py": SINK}, max_chain_calls=1)
    forward = """
from wuzhao import fn

def handler(event, context):
    print("run")
    return fn.invoke({next!r}, {{"from": context.function_name}}, async_={async_})
"""
    deploy("fnpipe-b", {"main.py": forward.format(next="fnpipe-c", async_=True)}, max_chain_calls=1)
    deploy("fnpipe-a", {"main.py": forward.format(next="fnpipe-b", async_=False)}, max_chain_calls=1)
    response = api.post("/v1/functions/fnpipe-a/invoke", json={})
    assert response.status_code == 200, response.text
    call_id = response.json()  # A returns what B returned: the id of B's asynchronous call of C
    (c,) = until(lambda: printed(api, "fnpipe-c"), what="C never ran")
    assert c == {"event": {"from": "fnpipe-b"}, "call": call_id}
    time.sleep(0.5)
    for name in ("fnpipe-a", "fnpipe-b", "fnpipe-c"):
        assert api.get(f"/v1/functions/{name}/dead-letters").json()["dead_letters"] == []
    assert runs(api, "fnpipe-a") == runs(api, "fnpipe-b") == 1
