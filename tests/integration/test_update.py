"""Updating a function while it serves: no failed call, no instance serving two revisions."""

from __future__ import annotations

import threading
import time


def version(tag: str) -> dict[str, str]:
    return {
        "main.py": f"""
        import os, time
        def handler(event, context):
            time.sleep(0.05)
            return {{"version": "{tag}", "instance": os.environ["AWS_LAMBDA_FUNCTION_VERSION"]}}
        """
    }


def test_update_under_load_loses_no_call(server, code):
    client = server.client()
    assert client.put("/v1/functions/live", json={"code": code(version("v1"))}).status_code == 201
    results: list[tuple[float, int, str | None]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def caller() -> None:
        own = server.client()
        while not stop.is_set():
            started = time.monotonic()
            response = own.post("/v1/functions/live/invoke", json={})
            seen = response.json().get("version") if response.status_code == 200 else None
            with lock:
                results.append((started, response.status_code, seen))

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    updated = client.put("/v1/functions/live", json={"code": code(version("v2"))})
    updated_at = time.monotonic()
    assert updated.status_code == 200
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join(30)

    assert [r for r in results if r[1] != 200] == []
    assert {r[2] for r in results} == {"v1", "v2"}
    # every call that started after the update finished ran the new code
    assert {r[2] for r in results if r[0] > updated_at} == {"v2"}
    counts = client.get("/v1/functions/live").json()["instances"]
    assert counts["busy"] == 0
