"""Namespaces, API keys with roles, quotas and per-function limits, against a real server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

NS_HEADER = "X-Wuzhao-Namespace"

SLOW = """
import time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    print("slept", event.get("sleep", 0))
    return "ok"
"""


def error(response: httpx.Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code, body
    if field is not None:
        assert body.get("field") == field, body
    return body


def create_namespace(api: httpx.Client, name: str, **quotas: int) -> dict[str, Any]:
    response = api.post("/v1/namespaces", json={"name": name, **quotas})
    assert response.status_code == 201, response.text
    return response.json()


def create_key(api: httpx.Client, namespace: str, role: str) -> dict[str, Any]:
    response = api.post("/v1/keys", json={"namespace": namespace, "role": role, "description": f"{role} key"})
    assert response.status_code == 201, response.text
    return response.json()


def in_namespace(server, namespace: str) -> httpx.Client:
    """An admin client acting in ``namespace``."""
    client = server.client()
    client.headers[NS_HEADER] = namespace
    return client


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> float:
    """Poll until ``predicate`` holds; returns the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


class Background:
    """A call running in a thread, on its own connection."""

    def __init__(self, client: httpx.Client, path: str, event: Any) -> None:
        self.response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._run, args=(client, path, event))
        self._thread.start()

    def _run(self, client: httpx.Client, path: str, event: Any) -> None:
        self.response = client.post(path, json=event)

    def result(self) -> httpx.Response:
        self._thread.join(60)
        assert self.response is not None
        return self.response


def test_namespaces_are_created_listed_changed_and_deleted(server, code):
    api = server.client()
    created = create_namespace(api, "ns-life", max_instances=3)
    assert {k: created[k] for k in ("name", "max_instances", "max_memory_mb", "usage")} == {
        "name": "ns-life",
        "max_instances": 3,
        "max_memory_mb": None,
        "usage": {"instances": 0, "memory_mb": 0},
    }
    assert created["created_at"].endswith("Z")
    error(api.post("/v1/namespaces", json={"name": "ns-life"}), 409, "Conflict")
    for bad in ("Bad", "-x", "", "a" * 65, "a b", "a/b", "$LATEST"):
        error(api.post("/v1/namespaces", json={"name": bad}), 400, "BadRequest", "name")
    error(api.post("/v1/namespaces", json={}), 400, "BadRequest", "name")
    error(api.post("/v1/namespaces", json={"name": 7}), 400, "BadRequest", "name")
    error(api.post("/v1/namespaces", json={"name": "ns-q", "max_instances": -1}), 400, "BadRequest")
    error(api.post("/v1/namespaces", json={"name": "ns-q", "max_memory_mb": "1"}), 400, "BadRequest")
    error(api.post("/v1/namespaces", json={"name": "ns-q", "owner": "me"}), 400, "BadRequest", "owner")
    error(api.post("/v1/namespaces", content=b"{"), 400, "InvalidJSON")

    names = [ns["name"] for ns in api.get("/v1/namespaces").json()["namespaces"]]
    assert "default" in names and "ns-life" in names and "ns-q" not in names
    assert names == sorted(names)
    assert api.get("/v1/namespaces/ns-life").json()["max_instances"] == 3
    error(api.get("/v1/namespaces/ns-none"), 404, "NotFound")

    # quotas are replaced as a whole: null (or absent) means no limit
    changed = api.put("/v1/namespaces/ns-life", json={"max_memory_mb": 512})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["max_instances"], changed.json()["max_memory_mb"]) == (None, 512)
    assert api.get("/v1/namespaces/ns-life").json()["max_memory_mb"] == 512
    error(api.put("/v1/namespaces/ns-none", json={}), 404, "NotFound")
    error(api.put("/v1/namespaces/ns-life", json={"max_instances": -2}), 400, "BadRequest", "max_instances")

    # the default namespace stays
    error(api.delete("/v1/namespaces/default"), 400, "BadRequest", "name")
    assert api.get("/v1/namespaces/default").status_code == 200

    # a namespace that holds a function or a key cannot be deleted
    life = in_namespace(server, "ns-life")
    assert life.put("/v1/functions/fn", json={"code": code()}).status_code == 201
    conflict = error(api.delete("/v1/namespaces/ns-life"), 409, "Conflict")
    assert "function" in conflict["message"]
    assert life.delete("/v1/functions/fn").status_code == 204
    key = create_key(api, "ns-life", "invoker")
    conflict = error(api.delete("/v1/namespaces/ns-life"), 409, "Conflict")
    assert "key" in conflict["message"]
    assert api.delete(f"/v1/keys/{key['key_id']}").status_code == 204

    # empty: deleted, and gone for everything that names it
    assert api.delete("/v1/namespaces/ns-life").status_code == 204
    error(api.get("/v1/namespaces/ns-life"), 404, "NotFound")
    error(api.delete("/v1/namespaces/ns-life"), 404, "NotFound")
    error(life.get("/v1/functions"), 404, "NotFound")
    error(api.post("/v1/keys", json={"namespace": "ns-life", "role": "developer"}), 404, "NotFound")
    assert "ns-life" not in [ns["name"] for ns in api.get("/v1/namespaces").json()["namespaces"]]


def test_keys_roles_and_visibility(server, code):
    admin = server.client()
    create_namespace(admin, "team-a")
    assert admin.put("/v1/functions/default-only", json={"code": code()}).status_code == 201

    developer = create_key(admin, "team-a", "developer")
    invoker = create_key(admin, "team-a", "invoker")
    for key, role in ((developer, "developer"), (invoker, "invoker")):
        assert key["key"].startswith(f"wz_{key['key_id']}_")
        assert (key["namespace"], key["role"], key["description"]) == ("team-a", role, f"{role} key")

    # the secret is in the create answer only
    listing = admin.get("/v1/keys")
    assert listing.status_code == 200
    listed = {k["key_id"]: k for k in listing.json()["keys"]}
    assert listed[developer["key_id"]] == {k: v for k, v in developer.items() if k != "key"}
    assert listed[invoker["key_id"]]["role"] == "invoker"
    assert all("key" not in k for k in listed.values())
    for key in (developer, invoker, server.key):
        secret = key["key"] if isinstance(key, dict) else key
        assert secret.rsplit("_", 1)[-1] not in listing.text

    dev = server.client(developer["key"])
    inv = server.client(invoker["key"])

    # the developer manages and invokes in team-a
    deployed = dev.put("/v1/functions/app", json={"code": code({"main.py": SLOW})})
    assert deployed.status_code == 201, deployed.text
    called = dev.post("/v1/functions/app/invoke", json={"sleep": 0})
    assert (called.status_code, called.json()) == (200, "ok")
    assert dev.get("/v1/functions/app").status_code == 200
    assert [f["name"] for f in dev.get("/v1/functions").json()["functions"]] == ["app"]
    assert dev.post("/v1/functions/app/versions", json={}).status_code == 201
    assert dev.get("/v1/functions/app/logs").status_code == 200
    assert dev.put("/v1/secrets/token", json={"value": "t"}).status_code == 200

    # the invoker invokes, and nothing else
    called = inv.post("/v1/functions/app/invoke", json={"sleep": 0})
    assert (called.status_code, called.json()) == (200, "ok")
    assert inv.post("/v1/functions/app/invoke?qualifier=1", json={}).status_code == 200
    invocation_id = called.headers["x-wuzhao-invocation-id"]
    forbidden = [
        inv.put("/v1/functions/app", json={"code": code()}),
        inv.put("/v1/functions/other", json={"code": code()}),
        inv.get("/v1/functions/app"),
        inv.get("/v1/functions"),
        inv.get("/v1/functions/app/logs"),
        inv.get(f"/v1/invocations/{invocation_id}"),
        inv.delete("/v1/functions/app"),
        inv.post("/v1/functions/app/versions", json={}),
        inv.get("/v1/functions/app/versions"),
        inv.put("/v1/functions/app/aliases/prod", json={"version": 1}),
        inv.put("/v1/secrets/token", json={"value": "x"}),
        inv.get("/v1/secrets"),
        inv.get("/v1/layers"),
    ]
    for response in forbidden:
        error(response, 403, "Forbidden")
    assert dev.get("/v1/functions/app").json()["revision"] == 1  # nothing changed

    # neither sees the default namespace's functions: they do not exist for them
    for client in (dev, inv):
        error(client.post("/v1/functions/default-only/invoke", json={}), 404, "NotFound")
        error(
            client.post("/v1/functions/app/invoke", json={}, headers={NS_HEADER: "default"}), 404, "NotFound"
        )
        error(client.get("/v1/functions", headers={NS_HEADER: "default"}), 404, "NotFound")
        error(client.get("/v1/functions", headers={NS_HEADER: "no-such-ns"}), 404, "NotFound")
        # naming their own namespace is fine
        own = client.post("/v1/functions/app/invoke", json={}, headers={NS_HEADER: "team-a"})
        assert own.status_code == 200
    error(dev.get("/v1/functions/default-only"), 404, "NotFound")
    error(dev.get("/v1/functions/default-only/logs"), 404, "NotFound")
    error(dev.delete("/v1/functions/default-only"), 404, "NotFound")
    error(dev.get("/v1/functions/default-only", headers={NS_HEADER: "default"}), 404, "NotFound")

    # nor the administration
    for client in (dev, inv):
        for response in (
            client.get("/v1/namespaces"),
            client.get("/v1/namespaces/team-a"),
            client.post("/v1/namespaces", json={"name": "mine"}),
            client.delete("/v1/namespaces/team-a"),
            client.get("/v1/keys"),
            client.post("/v1/keys", json={"namespace": "team-a", "role": "admin"}),
            client.delete(f"/v1/keys/{developer['key_id']}"),
        ):
            error(response, 403, "Forbidden")

    # the admin sees team-a's function only when it names the namespace
    error(admin.get("/v1/functions/app"), 404, "NotFound")
    error(admin.post("/v1/functions/app/invoke", json={}), 404, "NotFound")
    assert admin.get("/v1/functions/app", headers={NS_HEADER: "team-a"}).status_code == 200
    listed_a = admin.get("/v1/functions", headers={NS_HEADER: "team-a"}).json()["functions"]
    assert [f["name"] for f in listed_a] == ["app"]
    assert "app" not in [f["name"] for f in admin.get("/v1/functions").json()["functions"]]
    error(admin.get("/v1/functions", headers={NS_HEADER: "no-such-ns"}), 404, "NotFound")

    # a revoked key is refused at once
    assert admin.delete(f"/v1/keys/{invoker['key_id']}").status_code == 204
    error(inv.post("/v1/functions/app/invoke", json={}), 401, "Unauthorized")
    error(server.client(invoker["key"]).get("/v1/functions"), 401, "Unauthorized")
    error(admin.delete(f"/v1/keys/{invoker['key_id']}"), 404, "NotFound")
    assert invoker["key_id"] not in [k["key_id"] for k in admin.get("/v1/keys").json()["keys"]]
    assert dev.post("/v1/functions/app/invoke", json={}).status_code == 200  # the other key still works

    # bad key requests
    error(admin.post("/v1/keys", json={"namespace": "team-a", "role": "root"}), 400, "BadRequest", "role")
    error(admin.post("/v1/keys", json={"namespace": "team-a", "role": "Admin"}), 400, "BadRequest", "role")
    error(admin.post("/v1/keys", json={"namespace": "team-a"}), 400, "BadRequest", "role")
    error(admin.post("/v1/keys", json={"namespace": "team-a", "role": 1}), 400, "BadRequest", "role")
    error(admin.post("/v1/keys", json={"namespace": "nowhere", "role": "developer"}), 404, "NotFound")
    error(admin.post("/v1/keys", json={"role": "invoker", "ttl": 5}), 400, "BadRequest", "ttl")
    error(admin.delete("/v1/keys/0000000000000000"), 404, "NotFound")

    # an admin key of team-a administers, and acts in other namespaces by naming them
    team_admin = server.client(create_key(admin, "team-a", "admin")["key"])
    assert team_admin.get("/v1/functions/app").status_code == 200
    assert team_admin.get("/v1/functions/default-only", headers={NS_HEADER: "default"}).status_code == 200
    error(team_admin.get("/v1/functions/default-only"), 404, "NotFound")


def test_records_and_logs_stay_in_their_namespace(server, code):
    admin = server.client()
    create_namespace(admin, "team-logs")
    dev = server.client(create_key(admin, "team-logs", "developer")["key"])
    assert dev.put("/v1/functions/talker", json={"code": code({"main.py": SLOW})}).status_code == 201
    called = dev.post("/v1/functions/talker/invoke", json={"sleep": 0.01})
    assert called.status_code == 200
    invocation_id = called.headers["x-wuzhao-invocation-id"]

    record = dev.get(f"/v1/invocations/{invocation_id}")
    assert record.status_code == 200
    assert (record.json()["function"], record.json()["status"]) == ("talker", "succeeded")
    assert any("slept 0.01" in line["message"] for line in record.json()["logs"])
    logs = dev.get("/v1/functions/talker/logs")
    assert any("slept 0.01" in line["message"] for line in logs.json()["logs"])

    # default's admin key, without naming the namespace, finds neither
    error(admin.get(f"/v1/invocations/{invocation_id}"), 404, "NotFound")
    error(admin.get("/v1/functions/talker/logs"), 404, "NotFound")
    # naming it, it does
    headers = {NS_HEADER: "team-logs"}
    assert admin.get(f"/v1/invocations/{invocation_id}", headers=headers).json() == record.json()
    named = admin.get("/v1/functions/talker/logs", headers=headers)
    assert named.json()["logs"] == logs.json()["logs"]

    # and a default-namespace invocation is invisible to the team's key
    assert admin.put("/v1/functions/talker", json={"code": code({"main.py": SLOW})}).status_code == 201
    mine = admin.post("/v1/functions/talker/invoke", json={"sleep": 0.02})
    error(dev.get(f"/v1/invocations/{mine.headers['x-wuzhao-invocation-id']}"), 404, "NotFound")
    assert all(
        "slept 0.02" not in line["message"] for line in dev.get("/v1/functions/talker/logs").json()["logs"]
    )


def test_instance_quota_refuses_a_second_cold_start(server, code):
    admin = server.client()
    create_namespace(admin, "quota-one", max_instances=1)
    team = in_namespace(server, "quota-one")
    assert team.put("/v1/functions/slow", json={"code": code({"main.py": SLOW})}).status_code == 201

    first = Background(in_namespace(server, "quota-one"), "/v1/functions/slow/invoke", {"sleep": 3})
    wait_for(
        lambda: admin.get("/v1/namespaces/quota-one").json()["usage"]["instances"] == 1,
        what="the first instance",
    )
    began = time.monotonic()
    second = team.post("/v1/functions/slow/invoke", json={"sleep": 0})
    body = error(second, 429, "QuotaExceeded")
    assert time.monotonic() - began < 1.0  # refused at once, not after a wait
    assert body["message"] == (
        "namespace 'quota-one' is at its quota of 1 instances: it runs 1 busy instances using 128 MB, "
        "a new one needs 128 MB"
    )
    assert "x-wuzhao-function-error" not in second.headers
    assert first.result().status_code == 200

    # the one instance is warm now: calls reuse it within the quota
    again = team.post("/v1/functions/slow/invoke", json={"sleep": 0})
    assert (again.status_code, again.headers["x-wuzhao-cold-start"]) == (200, "false")
    assert admin.get("/v1/namespaces/quota-one").json()["usage"] == {"instances": 1, "memory_mb": 128}
    # another namespace is not limited by it
    assert admin.put("/v1/functions/slow", json={"code": code({"main.py": SLOW})}).status_code in (200, 201)
    assert admin.post("/v1/functions/slow/invoke", json={}).status_code == 200

    # a raised quota applies to the next cold start
    assert admin.put("/v1/namespaces/quota-one", json={"max_instances": 2}).status_code == 200
    held = Background(in_namespace(server, "quota-one"), "/v1/functions/slow/invoke", {"sleep": 2})
    wait_for(lambda: team.get("/v1/functions/slow").json()["instances"]["busy"] == 1, what="a busy instance")
    extra = team.post("/v1/functions/slow/invoke", json={"sleep": 0})
    assert (extra.status_code, extra.headers["x-wuzhao-cold-start"]) == (200, "true")
    assert held.result().status_code == 200


def test_memory_quota_counts_instance_memory(server, code):
    admin = server.client()
    create_namespace(admin, "quota-mem", max_memory_mb=256)
    team = in_namespace(server, "quota-mem")
    deployed = team.put("/v1/functions/slow", json={"code": code({"main.py": SLOW}), "memory_mb": 128})
    assert deployed.status_code == 201

    running = [Background(in_namespace(server, "quota-mem"), "/v1/functions/slow/invoke", {"sleep": 3})]
    wait_for(lambda: team.get("/v1/functions/slow").json()["instances"]["busy"] == 1, what="one instance")
    running.append(Background(in_namespace(server, "quota-mem"), "/v1/functions/slow/invoke", {"sleep": 3}))
    wait_for(lambda: team.get("/v1/functions/slow").json()["instances"]["busy"] == 2, what="two instances")
    assert admin.get("/v1/namespaces/quota-mem").json()["usage"] == {"instances": 2, "memory_mb": 256}

    third = team.post("/v1/functions/slow/invoke", json={"sleep": 0})
    body = error(third, 429, "QuotaExceeded")
    assert body["message"] == (
        "namespace 'quota-mem' is at its quota of 256 MB: it runs 2 busy instances using 256 MB, "
        "a new one needs 128 MB"
    )
    assert [call.result().status_code for call in running] == [200, 200]

    # a function bigger than the whole quota never starts
    big = team.put("/v1/functions/big", json={"code": code({"main.py": SLOW}), "memory_mb": 512})
    assert big.status_code == 201
    error(team.post("/v1/functions/big/invoke", json={}), 429, "QuotaExceeded")
    assert team.get("/v1/functions/big").json()["instances"] == {"idle": 0, "busy": 0}


def test_max_concurrency_zero_throttles_every_call_at_once(api, deploy):
    created = deploy("disabled", {"main.py": SLOW}, max_concurrency=0)
    assert created["max_concurrency"] == 0
    for _ in range(5):
        began = time.monotonic()
        response = api.post("/v1/functions/disabled/invoke", json={})
        # at once: the server's throttle wait (1 s) is not spent on a disabled function
        assert time.monotonic() - began < 0.5
        body = error(response, 429, "Throttled")
        assert "max_concurrency is 0" in body["message"]
    assert api.get("/v1/functions/disabled").json()["instances"] == {"idle": 0, "busy": 0}

    enabled = api.put("/v1/functions/disabled", json={"max_concurrency": 1})
    assert (enabled.status_code, enabled.json()["max_concurrency"]) == (200, 1)
    assert api.post("/v1/functions/disabled/invoke", json={}).status_code == 200

    for bad in ({"max_concurrency": -1}, {"max_concurrency": 10_001}, {"max_concurrency": "0"}):
        error(api.put("/v1/functions/disabled", json=bad), 400, "BadRequest", "max_concurrency")
    for bad in ({"idle_timeout_s": 0}, {"idle_timeout_s": 86_401}, {"idle_timeout_s": 1.5}):
        error(api.put("/v1/functions/disabled", json=bad), 400, "BadRequest", "idle_timeout_s")


def test_per_function_idle_timeout_scales_to_zero(api, deploy):
    brief = deploy("brief", {"main.py": SLOW}, idle_timeout_s=1)
    assert brief["idle_timeout_s"] == 1
    assert deploy("lasting", {"main.py": SLOW})["idle_timeout_s"] is None  # the server's 300 s
    for name in ("brief", "lasting"):
        assert api.post(f"/v1/functions/{name}/invoke", json={}).status_code == 200
    called = time.monotonic()
    assert api.get("/v1/functions/brief").json()["instances"] == {"idle": 1, "busy": 0}

    wait_for(
        lambda: api.get("/v1/functions/brief").json()["instances"] == {"idle": 0, "busy": 0},
        timeout=10,
        what="brief to scale to zero",
    )
    assert time.monotonic() - called >= 0.9  # not before its idle timeout
    assert api.get("/v1/functions/lasting").json()["instances"] == {"idle": 1, "busy": 0}
    again = api.post("/v1/functions/brief/invoke", json={})
    assert (again.status_code, again.headers["x-wuzhao-cold-start"]) == (200, "true")
    warm = api.post("/v1/functions/lasting/invoke", json={})
    assert (warm.status_code, warm.headers["x-wuzhao-cold-start"]) == (200, "false")


def test_a_deleted_namespace_takes_its_records_and_logs_with_it(server, code):
    """A namespace made again under the same name (another team, perhaps) inherits nothing."""
    admin = server.client()
    create_namespace(admin, "reborn")
    first_key = create_key(admin, "reborn", "developer")
    first = server.client(first_key["key"])
    assert first.put("/v1/functions/fn", json={"code": code({"main.py": SLOW})}).status_code == 201
    called = first.post("/v1/functions/fn/invoke", json={"sleep": 0.03})
    assert called.status_code == 200
    invocation_id = called.headers["x-wuzhao-invocation-id"]
    assert first.get(f"/v1/invocations/{invocation_id}").status_code == 200
    assert first.delete("/v1/functions/fn").status_code == 204
    assert admin.delete(f"/v1/keys/{first_key['key_id']}").status_code == 204
    assert admin.delete("/v1/namespaces/reborn").status_code == 204

    create_namespace(admin, "reborn")
    second = server.client(create_key(admin, "reborn", "developer")["key"])
    assert second.put("/v1/functions/fn", json={"code": code({"main.py": SLOW})}).status_code == 201
    error(second.get(f"/v1/invocations/{invocation_id}"), 404, "NotFound")
    assert second.get("/v1/functions/fn/logs").json()["logs"] == []


def test_an_idle_instance_makes_room_for_another_function_within_the_quota(server, code):
    admin = server.client()
    create_namespace(admin, "quota-evict", max_instances=1)
    team = in_namespace(server, "quota-evict")
    for name in ("first", "second"):
        assert team.put(f"/v1/functions/{name}", json={"code": code({"main.py": SLOW})}).status_code == 201
    assert team.post("/v1/functions/first/invoke", json={"sleep": 0}).status_code == 200
    assert team.get("/v1/functions/first").json()["instances"] == {"idle": 1, "busy": 0}
    # the idle instance of `first` is stopped (least recently used) so `second` can start
    started = team.post("/v1/functions/second/invoke", json={"sleep": 0})
    assert (started.status_code, started.headers["x-wuzhao-cold-start"]) == (200, "true")
    assert team.get("/v1/functions/first").json()["instances"] == {"idle": 0, "busy": 0}
    assert admin.get("/v1/namespaces/quota-evict").json()["usage"]["instances"] == 1
