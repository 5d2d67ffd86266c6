"""Triggers on a real server: HTTP routes under /http/<namespace>/ and timers through the queue.

The HTTP tests share the module's server; each timer test starts (and restarts) a server
of its own, since a restart is what it checks.
"""

from __future__ import annotations

import base64
import calendar
import collections
import json
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from tests.conftest import zip_files
from tests.integration.conftest import Server

# Written for API Gateway (HTTP API, payload 2.0) and nothing else: it must work unchanged.
API_GATEWAY = """
import base64
import json

def handler(event, context):
    route = event["routeKey"]
    if route == "POST /echo":
        return {
            "statusCode": 200,
            "headers": {"content-type": event["headers"].get("content-type", "application/octet-stream")},
            "body": event.get("body", ""),
            "isBase64Encoded": event["isBase64Encoded"],
        }
    if route == "GET /plain":
        return ["just", "json"]
    params = event.get("queryStringParameters") or {}
    return {
        "statusCode": 201,
        "headers": {"Content-Type": "application/json", "X-User": event["pathParameters"]["id"]},
        "multiValueHeaders": {"X-Many": ["one", "two"]},
        "cookies": ["session=abc; Path=/", "theme=dark"],
        "body": json.dumps({
            "id": event["pathParameters"]["id"],
            "query": params,
            "rawQueryString": event["rawQueryString"],
            "rawPath": event["rawPath"],
            "method": event["requestContext"]["http"]["method"],
            "sourceIp": event["requestContext"]["http"]["sourceIp"],
            "requestId": event["requestContext"]["requestId"],
            "awsRequestId": context.aws_request_id,
            "cookies": event.get("cookies"),
            "authorization": event["headers"].get("authorization"),
            "version": event["version"],
        }),
    }
"""

FAILS = """
import time

def handler(event, context):
    if event["rawPath"] == "/broken/slow":
        time.sleep(5)
    raise RuntimeError("secret detail that must not reach the caller")
"""

# Prints one line per run: the tick it was fired for, by which trigger, and the call it ran as.
TICKS = """
import json

def handler(event, context):
    print("tick " + json.dumps({
        "time": event["time"], "id": event["id"], "call": context.aws_request_id, "source": event["source"],
        "detail-type": event["detail-type"], "detail": event["detail"], "trigger": event["resources"][0],
    }))
    return {"ok": True}
"""


def package(files: dict[str, str]) -> str:
    return base64.b64encode(zip_files(files)).decode()


def put_trigger(api: httpx.Client, name: str, **body: Any) -> dict[str, Any]:
    response = api.put(f"/v1/triggers/{name}", json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def routes(server: Server) -> Server:
    """Functions and HTTP triggers for the module's tests (made once)."""
    api = server.client()
    for name, files, extra in [
        ("apigw", {"main.py": API_GATEWAY}, {}),
        ("fails", {"main.py": FAILS}, {"timeout_s": 1}),
    ]:
        response = api.put(f"/v1/functions/{name}", json={"code": package(files), **extra})
        assert response.status_code in (200, 201), response.text
    put_trigger(api, "users", function="apigw", type="http", path="/users/{id}", methods=["GET"], auth="none")
    put_trigger(api, "echo", function="apigw", type="http", path="/echo", methods=["POST"], auth="none")
    put_trigger(api, "plain", function="apigw", type="http", path="/plain", methods=["GET"], auth="none")
    put_trigger(api, "private", function="apigw", type="http", path="/private/{id}", methods=["GET"])
    put_trigger(api, "broken", function="fails", type="http", path="/broken/{proxy+}", auth="none")
    return server


def test_an_api_gateway_handler_works_unchanged(routes: Server) -> None:
    response = httpx.get(
        f"{routes.url}/http/default/users/42?a=1&a=2&b=x%20y",
        headers={"Cookie": "c1=v1; c2=v2"},
    )
    assert response.status_code == 201, response.text
    assert response.headers["x-user"] == "42"
    assert response.headers.get_list("x-many") == ["one", "two"]
    assert response.headers.get_list("set-cookie") == ["session=abc; Path=/", "theme=dark"]
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["id"] == "42"
    assert body["query"] == {"a": "1,2", "b": "x y"}
    assert body["rawQueryString"] == "a=1&a=2&b=x%20y"
    assert body["rawPath"] == "/users/42"
    assert body["method"] == "GET"
    assert body["sourceIp"] == "127.0.0.1"
    assert body["cookies"] == ["c1=v1", "c2=v2"]
    assert body["version"] == "2.0"
    # One id for the request, the handler's context and the invocation record.
    assert body["requestId"] == body["awsRequestId"] == response.headers["x-wuzhao-invocation-id"]
    record = routes.client().get(f"/v1/invocations/{body['requestId']}")
    assert record.status_code == 200 and record.json()["function"] == "apigw"


def test_a_path_parameter_is_one_decoded_segment(routes: Server) -> None:
    response = httpx.get(f"{routes.url}/http/default/users/a%2Fb%20c")
    assert response.status_code == 201
    assert response.json()["id"] == "a/b c"
    assert response.json()["rawPath"] == "/users/a%2Fb%20c"


def test_binary_bodies_round_trip(routes: Server) -> None:
    blob = bytes(range(256)) * 64
    response = httpx.post(
        f"{routes.url}/http/default/echo", content=blob, headers={"Content-Type": "application/octet-stream"}
    )
    assert response.status_code == 200, response.text
    assert response.content == blob
    assert response.headers["content-type"] == "application/octet-stream"
    text = "héllo, wörld"
    response = httpx.post(
        f"{routes.url}/http/default/echo", content=text.encode(), headers={"Content-Type": "text/plain"}
    )
    assert response.text == text


def test_a_value_without_status_code_is_a_json_200(routes: Server) -> None:
    response = httpx.get(f"{routes.url}/http/default/plain")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == ["just", "json"]


def test_auth_key_needs_an_invoke_key_of_the_namespace(routes: Server) -> None:
    url = f"{routes.url}/http/default/private/7"
    anonymous = httpx.get(url)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert anonymous.json()["error"]["code"] == "Unauthorized"
    assert httpx.get(url, headers={"Authorization": "Bearer wz_0000_nope"}).status_code == 401

    admin = routes.client()
    invoker = admin.post("/v1/keys", json={"role": "invoker"}).json()["key"]
    response = httpx.get(url, headers={"Authorization": f"Bearer {invoker}"})
    assert response.status_code == 201, response.text
    assert response.json()["authorization"] is None  # the platform's key is not the function's business

    assert admin.post("/v1/namespaces", json={"name": "elsewhere"}).status_code == 201
    other = admin.post("/v1/keys", json={"role": "invoker", "namespace": "elsewhere"}).json()["key"]
    assert httpx.get(url, headers={"Authorization": f"Bearer {other}"}).status_code == 404

    # auth: none lets the Authorization header through, for the function's own scheme
    open_route = httpx.get(f"{routes.url}/http/default/users/1", headers={"Authorization": "Basic abc"})
    assert open_route.json()["authorization"] == "Basic abc"


def test_unknown_paths_and_methods(routes: Server) -> None:
    for path in ("/http/nope/users/1", "/http/default", "/http/Bad/users/1", "/http"):
        response = httpx.get(f"{routes.url}{path}")
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"]["code"] == "NotFound"
    for path in (
        "/http/default/users",
        "/http/default/users/1/more",
        "/http/default/users/1/",
        "/http/default/",
    ):
        assert httpx.get(f"{routes.url}{path}").status_code == 404, path
    wrong = httpx.delete(f"{routes.url}/http/default/users/1")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET"
    assert wrong.json()["error"] == {
        "code": "MethodNotAllowed",
        "message": "DELETE is not allowed on /http/default/users/1",
    }
    # /broken/{proxy+} answers any method, and takes one segment or more
    assert httpx.delete(f"{routes.url}/http/default/broken/x").status_code == 502
    assert httpx.get(f"{routes.url}/http/default/broken").status_code == 404


def test_a_function_error_is_a_502_and_a_timeout_a_504(routes: Server) -> None:
    failed = httpx.get(f"{routes.url}/http/default/broken/anything/at/all")
    assert failed.status_code == 502
    assert failed.json() == {"message": "Internal Server Error"}
    assert "secret detail" not in failed.text
    assert failed.headers["x-wuzhao-invocation-id"]
    slow = httpx.get(f"{routes.url}/http/default/broken/slow", timeout=30)
    assert slow.status_code == 504
    assert slow.json() == {"message": "Endpoint request timed out"}


def test_an_oversized_body_is_refused(start_server: Callable[..., Server], code: Callable[..., str]) -> None:
    server = start_server(WUZHAO_MAX_REQUEST_BYTES="1024")
    api = server.client()
    assert api.put("/v1/functions/apigw", json={"code": code({"main.py": API_GATEWAY})}).status_code == 201
    put_trigger(api, "echo", function="apigw", type="http", path="/echo", methods=["POST"], auth="none")
    response = httpx.post(f"{server.url}/http/default/echo", content=b"x" * 2048)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PayloadTooLarge"
    assert httpx.post(f"{server.url}/http/default/echo", content=b"x" * 1000).content == b"x" * 1000


def test_the_api_manages_triggers(routes: Server) -> None:
    api = routes.client()
    created = api.put(
        "/v1/triggers/managed",
        json={"function": "apigw", "type": "http", "path": "/managed/{proxy+}", "methods": ["get", "post"]},
    )
    assert created.status_code == 201, created.text
    trigger = created.json()
    assert trigger["url_path"] == "/http/default/managed/{proxy+}"
    assert (trigger["methods"], trigger["auth"]) == (["GET", "POST"], "key")
    again = api.put(
        "/v1/triggers/managed",
        json={"function": "apigw", "type": "http", "path": "/managed/{proxy+}", "methods": ["POST", "GET"]},
    )
    assert again.status_code == 200 and again.json() == trigger  # the same: nothing changed
    assert api.get("/v1/triggers/managed").json() == trigger
    assert "managed" in [
        t["name"] for t in api.get("/v1/triggers", params={"function": "apigw"}).json()["triggers"]
    ]
    assert api.get("/v1/triggers", params={"function": "fails"}).json()["triggers"][0]["name"] == "broken"
    clash = api.put("/v1/triggers/clash", json={"function": "apigw", "type": "http", "path": "/users/{uid}"})
    assert clash.status_code == 409 and clash.json()["error"]["field"] == "path"
    missing = api.put("/v1/triggers/x", json={"function": "nope", "type": "http", "path": "/x"})
    assert missing.status_code == 400 and missing.json()["error"]["field"] == "function"
    topic = api.put("/v1/triggers/x", json={"function": "apigw", "type": "topic", "topic": "t"})
    assert topic.status_code == 201 and topic.json()["filter"] == {}
    assert api.delete("/v1/triggers/x").status_code == 204
    bad = api.put("/v1/triggers/x", json={"function": "apigw", "type": "object", "bucket": "No"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "bucket"
    unknown = api.put("/v1/triggers/x", json={"function": "apigw", "type": "carrier-pigeon"})
    assert unknown.status_code == 400 and unknown.json()["error"]["field"] == "type"
    cron = put_trigger(
        api, "ticker", function="apigw", type="cron", schedule="0 3 * * *", timezone="Asia/Tokyo"
    )
    assert cron["next_tick"].endswith("T18:00:00Z") and cron["last_tick"] is None
    assert api.delete("/v1/triggers/managed").status_code == 204
    assert api.delete("/v1/triggers/ticker").status_code == 204
    assert api.get("/v1/triggers/managed").status_code == 404
    assert httpx.get(f"{routes.url}/http/default/managed/a").status_code == 404


def test_deleting_a_function_deletes_its_triggers(routes: Server, code: Callable[..., str]) -> None:
    api = routes.client()
    assert (
        api.put("/v1/functions/short-lived", json={"code": code({"main.py": API_GATEWAY})}).status_code == 201
    )
    put_trigger(api, "short", function="short-lived", type="http", path="/short/{id}", auth="none")
    assert httpx.get(f"{routes.url}/http/default/short/1").status_code == 201
    assert api.delete("/v1/functions/short-lived").status_code == 204
    assert api.get("/v1/triggers/short").status_code == 404
    assert httpx.get(f"{routes.url}/http/default/short/1").status_code == 404


# -- surviving restarts, and timers ------------------------------------------------


def ticks_in_logs(api: httpx.Client, function: str) -> list[dict[str, Any]]:
    """Every run's line, in order."""
    runs: list[dict[str, Any]] = []
    after = 0
    while True:
        page = api.get(f"/v1/functions/{function}/logs", params={"after": after, "limit": 1000}).json()
        runs += [
            json.loads(line["message"][5:]) for line in page["logs"] if line["message"].startswith("tick ")
        ]
        if not page["logs"]:
            return runs
        after = page["next"]


def wait_for_ticks(
    api: httpx.Client, function: str, count: int, timeout: float = 30.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(runs := ticks_in_logs(api, function)) < count:
        assert time.monotonic() < deadline, runs
        time.sleep(0.2)
    return runs


def epoch(iso: str) -> int:
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


def test_triggers_survive_a_restart_and_each_tick_fires_once(
    start_server: Callable[..., Server], code: Callable[..., str]
) -> None:
    server = start_server(WUZHAO_CRON_GRACE="60")  # the restart is well within it, even when slow
    api = server.client()
    assert api.put("/v1/functions/ticks", json={"code": code({"main.py": TICKS})}).status_code == 201
    assert api.put("/v1/functions/apigw", json={"code": code({"main.py": API_GATEWAY})}).status_code == 201
    put_trigger(api, "users", function="apigw", type="http", path="/users/{id}", auth="none")
    timer = put_trigger(api, "every-second", function="ticks", type="cron", schedule="rate(1 second)")
    before = {t["name"]: t for t in api.get("/v1/triggers").json()["triggers"]}
    wait_for_ticks(api, "ticks", 3)
    assert server.stop() == 0

    restarted = start_server(data_dir=server.data_dir, WUZHAO_CRON_GRACE="60")
    api = restarted.client()
    after = {t["name"]: t for t in api.get("/v1/triggers").json()["triggers"]}
    assert after.keys() == before.keys()
    assert after["users"] == before["users"]
    assert httpx.get(f"{restarted.url}/http/default/users/5").json()["id"] == "5"
    seen = len(ticks_in_logs(api, "ticks"))
    wait_for_ticks(api, "ticks", seen + 3)
    assert api.delete("/v1/triggers/every-second").status_code == 204
    time.sleep(1.5)  # a call already queued may still run
    runs = ticks_in_logs(api, "ticks")

    times = [epoch(run["time"]) for run in runs]
    assert len(set(times)) == len(times), f"a tick ran twice: {collections.Counter(times).most_common(3)}"
    # The restart took less than the grace: the ticks it was down for fired late, none was lost.
    assert sorted(times) == list(range(min(times), max(times) + 1)), times
    assert min(times) > epoch(timer["created_at"][:19] + "Z")
    assert len({run["call"] for run in runs}) == len(runs)
    assert len({run["id"] for run in runs}) == len(runs)
    assert {(run["source"], run["detail-type"]) for run in runs} == {("wuzhao.scheduler", "Scheduled Event")}


def test_a_killed_server_never_makes_two_calls_of_one_tick(
    start_server: Callable[..., Server], code: Callable[..., str]
) -> None:
    server = start_server()
    api = server.client()
    assert api.put("/v1/functions/ticks", json={"code": code({"main.py": TICKS})}).status_code == 201
    put_trigger(api, "every-second", function="ticks", type="cron", schedule="* * * * * *")  # seconds too
    for _ in range(2):
        seen = len(ticks_in_logs(api, "ticks"))
        wait_for_ticks(api, "ticks", seen + 2)
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        server = start_server(data_dir=server.data_dir)
        api = server.client()
    seen = len(ticks_in_logs(api, "ticks"))
    wait_for_ticks(api, "ticks", seen + 2)
    assert api.delete("/v1/triggers/every-second").status_code == 204
    time.sleep(1.5)
    runs = ticks_in_logs(api, "ticks")
    calls_by_tick: dict[str, set[str]] = collections.defaultdict(set)
    for run in runs:
        calls_by_tick[run["time"]].add(run["call"])
    # A kill can make a call run again (at least once), never a second call for its tick.
    assert all(len(calls) == 1 for calls in calls_by_tick.values()), calls_by_tick
    assert len(calls_by_tick) >= 6


def test_missed_ticks_are_skipped_or_caught_up_once(start_server: Callable[..., Server]) -> None:
    # A small grace: the ticks of the seconds the server is down are missed, not late.
    server = start_server(WUZHAO_CRON_GRACE="2")
    api = server.client()
    assert api.put("/v1/functions/ticks", json={"code": package({"main.py": TICKS})}).status_code == 201
    put_trigger(api, "skips", function="ticks", type="cron", schedule="rate(1 second)")
    put_trigger(
        api,
        "catches-up",
        function="ticks",
        type="cron",
        schedule="rate(1 second)",
        missed_ticks="catch_up_one",
    )
    wait_for_ticks(api, "ticks", 2)
    assert server.stop() == 0
    time.sleep(6)
    server = start_server(data_dir=server.data_dir, WUZHAO_CRON_GRACE="2")
    api = server.client()
    seen = len(ticks_in_logs(api, "ticks"))
    wait_for_ticks(api, "ticks", seen + 4)
    for name in ("skips", "catches-up"):
        assert api.delete(f"/v1/triggers/{name}").status_code == 204
    time.sleep(1.5)
    runs = ticks_in_logs(api, "ticks")

    by_trigger: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for run in runs:
        by_trigger[run["trigger"].rsplit(":", 1)[1]].append(run)
    for name, expected_catch_ups in (("skips", 0), ("catches-up", 1)):
        times = [epoch(run["time"]) for run in by_trigger[name]]
        assert len(set(times)) == len(times), (name, times)
        catch_ups = [epoch(run["time"]) for run in by_trigger[name] if run["detail"] == {"catchUp": True}]
        assert len(catch_ups) == expected_catch_ups, (name, by_trigger[name])
        # The seconds it was down: skipped, or one call for the last of them.
        gaps = [later - earlier for earlier, later in zip(sorted(times), sorted(times)[1:], strict=False)]
        assert max(gaps) >= 3, (name, times)
        if catch_ups:
            (caught,) = catch_ups
            assert caught - 1 not in times and caught + 1 in times, times
