"""Asynchronous invocations: accepted durably, run later, retried, dead-lettered, redriven.

Each test deploys functions with small retry delays to a server of its own
module and follows its calls through ``GET /v1/invocations/{id}``.
"""

from __future__ import annotations

import datetime
import itertools
import json
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from tests.integration.conftest import Server

EVENT = {"X-Wuzhao-Invocation-Type": "Event"}

ECHO = """
def handler(event, context):
    return {"event": event, "request_id": context.aws_request_id}
"""

# Fails until the instance has seen the call `fail_times` times (the module state of a warm
# instance survives between attempts of one call when they land on it; with one instance they do).
FLAKY = """
seen = {}

def handler(event, context):
    seen[context.aws_request_id] = seen.get(context.aws_request_id, 0) + 1
    if seen[context.aws_request_id] <= event.get("fail_times", 0):
        raise RuntimeError(f"attempt {seen[context.aws_request_id]} fails")
    return {"attempts": seen[context.aws_request_id], "n": event.get("n")}
"""

FAILS = """
def handler(event, context):
    raise ValueError("always")
"""


def submit(api: httpx.Client, name: str, event: Any = None, **headers: str) -> str:
    response = api.post(
        f"/v1/functions/{name}/invoke", json=event if event is not None else {}, headers={**EVENT, **headers}
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued"
    assert response.headers["x-wuzhao-invocation-id"] == body["invocation_id"]
    return str(body["invocation_id"])


def wait_for(
    api: httpx.Client, call_id: str, statuses: tuple[str, ...] = ("succeeded", "dead"), timeout: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = api.get(f"/v1/invocations/{call_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] in statuses:
            return body
        assert time.monotonic() < deadline, f"call {call_id} is still {body['status']}: {body}"
        time.sleep(0.05)


def test_an_async_call_is_accepted_then_succeeds(api: httpx.Client, deploy: Callable[..., Any]) -> None:
    deploy("async-echo", {"main.py": ECHO})
    call_id = submit(api, "async-echo", {"hello": "later"})
    body = wait_for(api, call_id)
    assert body["status"] == "succeeded"
    assert body["async"] is True
    assert (body["namespace"], body["function"], body["qualifier"]) == ("default", "async-echo", None)
    assert body["result"] == {"event": {"hello": "later"}, "request_id": call_id}  # the call's own id
    assert body["error"] is None
    assert [a["outcome"] for a in body["attempts"]] == ["success"]
    assert body["attempts"][0]["number"] == 1
    assert body["enqueued_at"] <= body["attempts"][0]["started_at"] <= body["updated_at"]
    # The attempt's log lines and record are the call's: its logs are found by its id.
    logs = api.get("/v1/functions/async-echo/logs").json()["logs"]
    assert all(line["invocation_id"] == call_id for line in logs if line["invocation_id"])
    metrics = api.get("/metrics").text
    for outcome in ("accepted", "succeeded"):
        assert gauge(metrics, "wuzhao_async_outcomes_total", function="async-echo", outcome=outcome) == 1
    assert gauge(metrics, "wuzhao_invocations_total", function="async-echo", outcome="success") == 1


def test_event_type_is_case_insensitive_and_async_is_its_synonym(
    api: httpx.Client, deploy: Callable[..., Any]
) -> None:
    deploy("async-kinds", {"main.py": ECHO})
    ids = [
        submit(api, "async-kinds", {"k": kind}, **{"X-Wuzhao-Invocation-Type": kind})
        for kind in ("event", "EVENT", "async", "Async")
    ]
    assert len(set(ids)) == 4
    assert all(wait_for(api, call_id)["status"] == "succeeded" for call_id in ids)
    sync = api.post(
        "/v1/functions/async-kinds/invoke", json={}, headers={"X-Wuzhao-Invocation-Type": "RequestResponse"}
    )
    assert sync.status_code == 200


@pytest.mark.parametrize(
    ("headers", "body", "query", "status", "error_code", "field"),
    [
        ({"X-Wuzhao-Invocation-Type": "DryRun"}, b"{}", "", 400, "BadRequest", "X-Wuzhao-Invocation-Type"),
        (EVENT, b"{not json", "", 400, "InvalidJSON", None),
        ({**EVENT, "Idempotency-Key": ""}, b"{}", "", 400, "BadRequest", "Idempotency-Key"),
        ({**EVENT, "Idempotency-Key": "k" * 257}, b"{}", "", 400, "BadRequest", "Idempotency-Key"),
        (
            {**EVENT, "X-Wuzhao-Ordering-Key": "k" * 257},
            b"{}",
            "",
            400,
            "BadRequest",
            "X-Wuzhao-Ordering-Key",
        ),
        (EVENT, b"{}", "?qualifier=7", 404, "NotFound", None),
        (EVENT, b"{}", "?qualifier=nosuchalias", 404, "NotFound", None),
    ],
)
def test_what_cannot_be_queued_is_refused_at_once(
    api: httpx.Client,
    deploy: Callable[..., Any],
    headers: dict[str, str],
    body: bytes,
    query: str,
    status: int,
    error_code: str,
    field: str | None,
) -> None:
    deploy("async-refuse", {"main.py": ECHO})
    response = api.post(f"/v1/functions/async-refuse/invoke{query}", content=body, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == error_code
    assert error.get("field") == field


def test_an_unknown_function_is_404_and_another_namespace_cannot_see_a_call(
    api: httpx.Client, deploy: Callable[..., Any]
) -> None:
    response = api.post("/v1/functions/no-such-function/invoke", json={}, headers=EVENT)
    assert response.status_code == 404
    deploy("async-private", {"main.py": ECHO})
    call_id = submit(api, "async-private")
    wait_for(api, call_id)
    assert api.post("/v1/namespaces", json={"name": "async-other"}).status_code == 201
    other = api.get(f"/v1/invocations/{call_id}", headers={"X-Wuzhao-Namespace": "async-other"})
    assert other.status_code == 404


def test_an_invoker_key_may_queue_calls(api: httpx.Client, deploy: Callable[..., Any], server: Any) -> None:
    deploy("async-invoker", {"main.py": ECHO})
    key = api.post("/v1/keys", json={"role": "invoker"}).json()["key"]
    invoker = server.client(key)
    call_id = submit(invoker, "async-invoker")
    assert wait_for(api, call_id)["status"] == "succeeded"
    # ... but not read them, nor the dead letters (the role's rules, as for everything else)
    assert invoker.get(f"/v1/invocations/{call_id}").status_code == 403


def test_a_repeated_idempotency_key_returns_the_first_id_and_queues_nothing(
    api: httpx.Client, deploy: Callable[..., Any]
) -> None:
    deploy("async-once", {"main.py": FLAKY})
    first = submit(api, "async-once", {"n": 1}, **{"Idempotency-Key": "order-42"})
    again = submit(api, "async-once", {"n": 2}, **{"Idempotency-Key": "order-42"})
    assert again == first
    other = submit(api, "async-once", {"n": 3}, **{"Idempotency-Key": "order-43"})
    assert other != first
    assert wait_for(api, first)["result"] == {"attempts": 1, "n": 1}  # the first event, run once
    assert wait_for(api, other)["result"] == {"attempts": 1, "n": 3}
    assert submit(api, "async-once", {"n": 4}, **{"Idempotency-Key": "order-42"}) == first  # also once done
    # The key is the function's: another function's same key is another call.
    deploy("async-once-too", {"main.py": FLAKY})
    assert submit(api, "async-once-too", {"n": 5}, **{"Idempotency-Key": "order-42"}) != first


def test_a_qualifier_is_resolved_at_each_attempt(api: httpx.Client, deploy: Callable[..., Any]) -> None:
    deploy(
        "async-versions", {"main.py": "def handler(event, context):\n    return context.function_version\n"}
    )
    assert api.post("/v1/functions/async-versions/versions", json={}).status_code == 201
    assert api.put("/v1/functions/async-versions/aliases/live", json={"version": 1}).status_code == 201
    response = api.post("/v1/functions/async-versions/invoke?qualifier=live", json={}, headers=EVENT)
    assert response.status_code == 202
    pinned = response.json()["invocation_id"]
    body = wait_for(api, pinned)
    assert (body["qualifier"], body["result"]) == ("live", "1")


def stamp(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso).timestamp()


def started(attempt: dict[str, Any]) -> float:
    return stamp(attempt["started_at"])


def ended(attempt: dict[str, Any]) -> float:
    return started(attempt) + attempt["duration_ms"] / 1000


def test_retries_wait_the_configured_delay_doubling_each_time(
    api: httpx.Client, deploy: Callable[..., Any]
) -> None:
    # One instance, so the handler's count of its calls survives between attempts.
    deploy("async-flaky", {"main.py": FLAKY}, max_concurrency=1, max_retries=3, retry_delay_s=0.5)
    body = wait_for(api, submit(api, "async-flaky", {"fail_times": 2, "n": 7}))
    assert body["status"] == "succeeded"
    assert body["result"] == {"attempts": 3, "n": 7}
    attempts = body["attempts"]
    assert [a["outcome"] for a in attempts] == ["FunctionError", "FunctionError", "success"]
    assert [a["number"] for a in attempts] == [1, 2, 3]
    assert attempts[0]["error"]["message"] == "attempt 1 fails"
    waits = [started(after) - ended(before) for before, after in itertools.pairwise(attempts)]
    # 0.5 s then 1 s, each ±20 % of jitter, plus a little for the dispatcher to notice.
    assert 0.4 <= waits[0] <= 0.6 + 0.2, waits
    assert 0.8 <= waits[1] <= 1.2 + 0.2, waits


def test_what_fails_every_attempt_goes_dead_and_can_be_redriven_or_deleted(
    api: httpx.Client, deploy: Callable[..., Any], code: Callable[..., str]
) -> None:
    deploy("async-dead", {"main.py": FAILS}, max_retries=1, retry_delay_s=0.1)
    first, second = submit(api, "async-dead", {"n": 1}), submit(api, "async-dead", {"n": 2})
    dead = wait_for(api, first)
    assert dead["status"] == "dead"
    assert [a["outcome"] for a in dead["attempts"]] == ["FunctionError", "FunctionError"]
    assert dead["error"]["code"] == "FunctionError"
    assert dead["error"]["error_type"] == "ValueError"
    assert dead["result"] is None
    wait_for(api, second)

    page = api.get("/v1/functions/async-dead/dead-letters").json()
    assert [d["id"] for d in page["dead_letters"]] == [first, second]  # oldest first
    assert page["next"] is None
    assert page["dead_letters"][0] == api.get(f"/v1/functions/async-dead/dead-letters/{first}").json()
    one = api.get("/v1/functions/async-dead/dead-letters", params={"limit": 1}).json()
    assert [d["id"] for d in one["dead_letters"]] == [first]
    rest = api.get("/v1/functions/async-dead/dead-letters", params={"limit": 1, "after": one["next"]}).json()
    assert [d["id"] for d in rest["dead_letters"]] == [second]

    # Fixed, then redriven: it runs again with its retries counted from zero, its attempts kept.
    assert api.put("/v1/functions/async-dead", json={"code": code({"main.py": ECHO})}).status_code == 200
    redriven = api.post(f"/v1/functions/async-dead/dead-letters/{first}/redrive")
    assert redriven.status_code == 202, redriven.text
    assert redriven.json() == {"invocation_id": first, "status": "queued"}
    body = wait_for(api, first)
    assert body["status"] == "succeeded"
    assert [a["number"] for a in body["attempts"]] == [1, 2, 3]
    assert body["attempts"][-1]["outcome"] == "success"
    assert body["result"]["event"] == {"n": 1}
    assert api.get(f"/v1/functions/async-dead/dead-letters/{first}").status_code == 404
    assert api.post(f"/v1/functions/async-dead/dead-letters/{first}/redrive").status_code == 404

    assert api.delete(f"/v1/functions/async-dead/dead-letters/{second}").status_code == 204
    assert api.get(f"/v1/functions/async-dead/dead-letters/{second}").status_code == 404
    assert api.delete(f"/v1/functions/async-dead/dead-letters/{second}").status_code == 404
    assert api.get("/v1/functions/async-dead/dead-letters").json() == {"dead_letters": [], "next": None}
    assert api.get("/v1/functions/no-such-function/dead-letters").status_code == 404
    bad = api.get("/v1/functions/async-dead/dead-letters", params={"limit": 0})
    assert (bad.status_code, bad.json()["error"]["field"]) == (400, "limit")


def test_a_key_runs_in_order_through_a_retry_while_other_keys_go_on(
    api: httpx.Client, deploy: Callable[..., Any]
) -> None:
    # One instance: key b can only overtake key a while a's call waits for its retry.
    deploy("async-ordered", {"main.py": FLAKY}, max_concurrency=1, max_retries=2, retry_delay_s=0.4)
    a = [
        submit(
            api, "async-ordered", {"n": n, "fail_times": 2 if n == 2 else 0}, **{"X-Wuzhao-Ordering-Key": "a"}
        )
        for n in range(1, 5)
    ]
    b = [submit(api, "async-ordered", {"n": n}, **{"X-Wuzhao-Ordering-Key": "b"}) for n in range(1, 5)]
    calls = {call_id: wait_for(api, call_id) for call_id in a + b}
    assert all(body["status"] == "succeeded" for body in calls.values())
    assert all(calls[call_id]["ordering_key"] == "a" for call_id in a)
    for key in (a, b):
        for before, after in itertools.pairwise(key):
            # The next call of a key starts only once the one before it is done, retries included.
            assert ended(calls[before]["attempts"][-1]) <= started(calls[after]["attempts"][0])
    assert [a["outcome"] for a in calls[a[1]]["attempts"]] == ["FunctionError", "FunctionError", "success"]
    # Key b did not wait for key a's retries.
    assert max(started(calls[call_id]["attempts"][0]) for call_id in b) < started(calls[a[1]]["attempts"][-1])


def test_a_dead_call_holds_its_key_when_the_function_says_so(
    api: httpx.Client, deploy: Callable[..., Any]
) -> None:
    deploy("async-hold", {"main.py": FLAKY}, max_retries=0, ordering_hold=True)
    key = {"X-Wuzhao-Ordering-Key": "k"}
    dead = submit(api, "async-hold", {"n": 1, "fail_times": 1}, **key)
    held = submit(api, "async-hold", {"n": 2}, **key)
    free = submit(api, "async-hold", {"n": 3}, **{"X-Wuzhao-Ordering-Key": "other"})
    assert wait_for(api, dead)["status"] == "dead"
    assert wait_for(api, free)["status"] == "succeeded"
    time.sleep(0.5)
    assert api.get(f"/v1/invocations/{held}").json()["status"] == "queued"  # held behind the dead one
    assert api.delete(f"/v1/functions/async-hold/dead-letters/{dead}").status_code == 204
    assert wait_for(api, held)["status"] == "succeeded"


SINK = """
import json

def handler(event, context):
    print(json.dumps(event))
    return None
"""


def records(api: httpx.Client, function: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """The destination records function received (it prints each), once there are ``count``."""
    deadline = time.monotonic() + timeout
    while True:
        lines = api.get(f"/v1/functions/{function}/logs", params={"limit": 1000}).json()["logs"]
        found = [json.loads(line["message"]) for line in lines if line["message"].startswith("{")]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{function} got {len(found)} records, not {count}"
        time.sleep(0.1)


def test_destinations_get_the_record_of_each_success_and_final_failure(
    api: httpx.Client, deploy: Callable[..., Any]
) -> None:
    deploy("async-sink", {"main.py": SINK})
    deploy("async-src-ok", {"main.py": ECHO}, on_success="async-sink", on_failure="async-sink")
    deploy("async-src-fail", {"main.py": FAILS}, on_failure="async-sink", max_retries=1, retry_delay_s=0.1)
    ok = submit(api, "async-src-ok", {"order": 1})
    failed = submit(api, "async-src-fail", {"order": 2})
    wait_for(api, ok)
    wait_for(api, failed)
    got = {r["requestContext"]["requestId"]: r for r in records(api, "async-sink", 2)}
    assert set(got) == {ok, failed}
    success, failure = got[ok], got[failed]
    assert success["version"] == "1.0"
    assert success["requestContext"] == {
        "requestId": ok,
        "functionArn": "wuzhao:function:default:async-src-ok:$LATEST",
        "condition": "Success",
        "approximateInvokeCount": 1,
    }
    assert success["requestPayload"] == {"order": 1}
    assert success["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert success["responsePayload"] == {"event": {"order": 1}, "request_id": ok}
    assert failure["requestContext"]["condition"] == "RetriesExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 2
    assert failure["requestPayload"] == {"order": 2}
    assert failure["responseContext"] == {
        "statusCode": 500,
        "executedVersion": "$LATEST",
        "functionError": "FunctionError",
    }
    assert failure["responsePayload"]["error_type"] == "ValueError"


SLOW_FAILURE = """
import time

def handler(event, context):
    time.sleep(0.3)
    raise RuntimeError("down")
"""


def overlap(intervals: list[tuple[float, float]], slack: float = 0.005) -> int:
    """The most intervals running at one moment (ends are exclusive, give or take ``slack``)."""
    return max(
        (sum(1 for other in intervals if other[0] <= start < other[1] - slack) for start, _ in intervals),
        default=0,
    )


def gauge(metrics: str, name: str, **labels: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_retries_of_a_failing_function_stay_within_the_retry_budget(
    api: httpx.Client, deploy: Callable[..., Any]
) -> None:
    # max_concurrency 10 and the server's budget of 20 %: 2 instances may run retries at once.
    deploy("async-storm", {"main.py": SLOW_FAILURE}, max_concurrency=10, max_retries=1, retry_delay_s=0.1)
    ids = [submit(api, "async-storm", {"n": n}) for n in range(12)]
    sampled_retries, sampled_busy = [], []
    deadline = time.monotonic() + 60
    while api.get(f"/v1/invocations/{ids[-1]}").json()["status"] != "dead" or any(
        api.get(f"/v1/invocations/{i}").json()["status"] != "dead" for i in ids
    ):
        metrics = api.get("/metrics").text
        retrying = gauge(metrics, "wuzhao_async_running", function="async-storm", kind="retry")
        first = gauge(metrics, "wuzhao_async_running", function="async-storm", kind="first")
        sampled_retries.append(retrying)
        if not first:
            sampled_busy.append(gauge(metrics, "wuzhao_instances", function="async-storm", state="busy"))
        assert time.monotonic() < deadline
        time.sleep(0.05)
    calls = [wait_for(api, i) for i in ids]
    assert all(len(c["attempts"]) == 2 for c in calls)  # every call got its retry, in the end
    attempts = [a for c in calls for a in c["attempts"]]
    first_attempts = [(started(a), ended(a)) for a in attempts if a["number"] == 1]
    retries = [(started(a), ended(a)) for a in attempts if a["number"] == 2]
    assert overlap(retries) == 2  # the budget, reached and never passed
    assert overlap(first_attempts) > 2  # first attempts are bounded by the concurrency only
    assert overlap(first_attempts + retries) <= 10
    assert max(sampled_retries) <= 2
    # While only retries ran, the failing function held no more busy instances than the budget.
    assert max(sampled_busy, default=0) <= 2


def test_an_event_too_old_goes_dead_unrun_and_its_record_says_so(
    api: httpx.Client, deploy: Callable[..., Any]
) -> None:
    deploy("async-age-sink", {"main.py": SINK})
    # Disabled: every attempt is throttled, which uses no retry, until the event is 2 s old.
    deploy(
        "async-aging", {"main.py": ECHO}, max_concurrency=0, max_event_age_s=2, on_failure="async-age-sink"
    )
    call_id = submit(api, "async-aging", {"late": True})
    body = wait_for(api, call_id, timeout=10)
    assert (body["status"], body["attempts"]) == ("dead", [])
    assert body["error"]["code"] == "EventAgeExceeded"  # no attempt says why: the dead letter does
    assert "max_event_age_s (2 s)" in body["error"]["message"]
    # Throttled, postponed about 1 s (no attempt used), then given up: the next try would be too late.
    waited = stamp(body["updated_at"]) - stamp(body["enqueued_at"])
    assert 0.8 <= waited <= 2.5, waited
    (record,) = records(api, "async-age-sink", 1)
    assert record["requestContext"]["condition"] == "EventAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 0
    assert record["requestPayload"] == {"late": True}


def test_calls_of_a_deleted_function_go_dead_and_stay_readable(
    api: httpx.Client, deploy: Callable[..., Any]
) -> None:
    deploy("async-doomed", {"main.py": ECHO}, max_concurrency=0)  # throttled: they wait
    ids = [submit(api, "async-doomed", {"n": n}) for n in range(3)]
    assert gauge(api.get("/metrics").text, "wuzhao_async_queue_depth", function="async-doomed") == 3
    assert api.delete("/v1/functions/async-doomed").status_code == 204
    dead = [wait_for(api, call_id, timeout=10) for call_id in ids]
    assert [(d["status"], d["error"]["code"]) for d in dead] == [("dead", "NotFound")] * 3
    page = api.get("/v1/functions/async-doomed/dead-letters").json()
    assert [d["id"] for d in page["dead_letters"]] == ids
    # Redriving to a function that is gone would only die again: 404 until it exists.
    assert api.post(f"/v1/functions/async-doomed/dead-letters/{ids[0]}/redrive").status_code == 404
    deploy("async-doomed", {"main.py": ECHO})
    assert api.post(f"/v1/functions/async-doomed/dead-letters/{ids[0]}/redrive").status_code == 202
    assert wait_for(api, ids[0])["result"]["event"] == {"n": 0}


SLOW = """
import time

def handler(event, context):
    time.sleep(event["sleep"])
    return event["sleep"]
"""


def test_a_shutdown_lets_attempts_finish_within_the_grace_and_gives_back_the_rest(
    start_server: Callable[..., Server], code: Callable[..., str]
) -> None:
    server = start_server(WUZHAO_SHUTDOWN_GRACE="1")
    api = server.client()
    assert api.put("/v1/functions/slow", json={"code": code({"main.py": SLOW})}).status_code == 201
    quick, long = submit(api, "slow", {"sleep": 0.5}), submit(api, "slow", {"sleep": 5})
    wait_for(api, quick, ("running",))
    wait_for(api, long, ("running",))
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(10) == 0
    assert "gave back 1 asynchronous calls interrupted by the shutdown" in server.log()

    api = start_server(data_dir=server.data_dir).client()
    finished = wait_for(api, quick, ("succeeded", "dead"))
    assert [a["outcome"] for a in finished["attempts"]] == ["success"]  # done before the grace ended
    again = wait_for(api, long, ("succeeded", "dead"))
    # Interrupted, it used no attempt: the one recorded is the run after the restart.
    assert [a["outcome"] for a in again["attempts"]] == ["success"]
    assert stamp(again["attempts"][0]["started_at"]) > stamp(finished["updated_at"])
