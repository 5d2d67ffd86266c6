"""The node's memory budget: idle instances make room least recently used first, a full node
answers 429 after a bounded wait, and it recovers when calls finish."""

from __future__ import annotations

import concurrent.futures
import time

SLOW = """
import time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return context.function_name
"""


def instances(client, name):
    return client.get(f"/v1/functions/{name}").json()["instances"]


def test_budget_evicts_lru_idle_then_throttles_when_full_then_recovers(start_server, code):
    server = start_server(WUZHAO_NODE_MEMORY_MB="384", WUZHAO_THROTTLE_WAIT="0.5")
    client = server.client()
    for name, memory in (("old", 128), ("mid", 128), ("big", 256)):
        body = {"code": code({"main.py": SLOW}), "memory_mb": memory}
        assert client.put(f"/v1/functions/{name}", json=body).status_code == 201

    # 128 + 128 idle; then 256 more does not fit: the least recently used idle one goes
    assert client.post("/v1/functions/old/invoke", json={}).status_code == 200
    time.sleep(0.05)
    assert client.post("/v1/functions/mid/invoke", json={}).status_code == 200
    assert client.post("/v1/functions/big/invoke", json={}).status_code == 200
    assert instances(client, "old") == {"idle": 0, "busy": 0}
    assert instances(client, "mid") == {"idle": 1, "busy": 0}
    assert instances(client, "big") == {"idle": 1, "busy": 0}

    # keep 384 MB busy: a new instance has nothing idle to stop, waits its 0.5 s, gets 429
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        busy = [
            pool.submit(server.client().post, f"/v1/functions/{name}/invoke", json={"sleep": 2.5})
            for name in ("mid", "big")
        ]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (
            instances(client, "mid")["busy"] != 1 or instances(client, "big")["busy"] != 1
        ):
            time.sleep(0.05)
        began = time.monotonic()
        refused = client.post("/v1/functions/old/invoke", json={})
        waited = time.monotonic() - began
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "Throttled"
        assert "no memory free" in refused.json()["error"]["message"]
        assert 0.4 <= waited < 2.0
        assert [f.result().status_code for f in busy] == [200, 200]

    # the busy calls ended: their instances are idle again and make room
    recovered = client.post("/v1/functions/old/invoke", json={})
    assert (recovered.status_code, recovered.headers["x-wuzhao-cold-start"]) == (200, "true")
    metrics = client.get("/metrics").text
    assert 'wuzhao_evictions_total{function="old",namespace="default",reason="node"} 1.0' in metrics


def test_a_call_waiting_for_room_gets_it_when_a_busy_instance_is_released(start_server, code):
    server = start_server(WUZHAO_NODE_MEMORY_MB="128", WUZHAO_THROTTLE_WAIT="5")
    client = server.client()
    for name in ("first", "second"):
        assert client.put(f"/v1/functions/{name}", json={"code": code({"main.py": SLOW})}).status_code == 201
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        holder = pool.submit(server.client().post, "/v1/functions/first/invoke", json={"sleep": 1})
        time.sleep(0.5)
        began = time.monotonic()
        waited_for = client.post("/v1/functions/second/invoke", json={})  # waits, then evicts `first`
        assert waited_for.status_code == 200
        assert 0.2 < time.monotonic() - began < 4
        assert holder.result().status_code == 200
    assert instances(client, "first") == {"idle": 0, "busy": 0}
