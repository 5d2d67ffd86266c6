"""min_instances: instances kept started with no calls, never reaped below the minimum."""

from __future__ import annotations

import time


def wait_for_instances(client, name, expected, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = client.get(f"/v1/functions/{name}").json()["instances"]
        if counts == expected:
            return counts
        time.sleep(0.1)
    raise AssertionError(f"{name}: {counts} after {timeout}s, expected {expected}")


def test_min_instances_are_started_kept_warm_and_released(start_server, code):
    server = start_server(WUZHAO_IDLE_TIMEOUT="1")
    client = server.client()
    created = client.put("/v1/functions/ready", json={"code": code(), "min_instances": 2})
    assert created.status_code == 201
    assert created.json()["min_instances"] == 2
    wait_for_instances(client, "ready", {"idle": 2, "busy": 0})  # started with no call at all

    first = client.post("/v1/functions/ready/invoke", json={"name": "x"})
    assert (first.status_code, first.headers["x-wuzhao-cold-start"]) == (200, "false")
    time.sleep(2.5)  # past the idle timeout: the provisioned instances stay
    assert client.get("/v1/functions/ready").json()["instances"] == {"idle": 2, "busy": 0}

    assert client.put("/v1/functions/ready", json={"min_instances": 0}).status_code == 200
    wait_for_instances(client, "ready", {"idle": 0, "busy": 0})  # then it scales to zero


def test_min_instances_over_max_concurrency_is_refused(api, code):
    response = api.put("/v1/functions/odd", json={"code": code(), "min_instances": 3, "max_concurrency": 2})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "min_instances"
