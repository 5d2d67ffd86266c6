"""Function output: captured outside the sandbox, attributed to its call, bounded."""

from __future__ import annotations

import time

PRINTER = """
import sys

def handler(event, context):
    print("hello from", event["tag"])
    print("to stderr", event["tag"], file=sys.stderr)
    if event.get("flood"):
        sys.stdout.write("z" * event["flood"])
    return event["tag"]
"""


def test_logs_carry_invocation_id_stream_and_timestamp(api, deploy):
    deploy("printer", {"main.py": PRINTER})
    first = api.post("/v1/functions/printer/invoke", json={"tag": "one"})
    second = api.post("/v1/functions/printer/invoke", json={"tag": "two"})
    first_id = first.headers["x-wuzhao-invocation-id"]
    second_id = second.headers["x-wuzhao-invocation-id"]

    logs = api.get("/v1/functions/printer/logs").json()["logs"]
    lines = [(line["invocation_id"], line["stream"], line["message"]) for line in logs]
    assert (first_id, "stdout", "hello from one") in lines
    assert (first_id, "stderr", "to stderr one") in lines
    assert (second_id, "stdout", "hello from two") in lines
    assert all(line["timestamp"].endswith("Z") for line in logs)
    seqs = [line["seq"] for line in logs]
    assert seqs == sorted(seqs)


def test_invocation_record_has_status_and_log_tail(api, deploy):
    deploy("printer2", {"main.py": PRINTER})
    response = api.post("/v1/functions/printer2/invoke", json={"tag": "rec"})
    invocation_id = response.headers["x-wuzhao-invocation-id"]
    record = api.get(f"/v1/invocations/{invocation_id}").json()
    assert record["id"] == invocation_id
    assert record["function"] == "printer2"
    assert record["status"] == "succeeded"
    assert record["cold_start"] is True
    assert record["duration_ms"] > 0
    assert record["error"] is None
    # stdout and stderr are two pipes: their relative order is not defined
    assert sorted(line["message"] for line in record["logs"]) == ["hello from rec", "to stderr rec"]

    failing = api.post("/v1/functions/printer2/invoke", json={"no": "tag"})
    failed = api.get(f"/v1/invocations/{failing.headers['x-wuzhao-invocation-id']}").json()
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "FunctionError"
    assert failed["error"]["error_type"] == "KeyError"

    assert api.get("/v1/invocations/not-an-id").status_code == 404


def test_follow_with_after_cursor_and_since(api, deploy):
    deploy("printer3", {"main.py": PRINTER})
    api.post("/v1/functions/printer3/invoke", json={"tag": "a"})
    page = api.get("/v1/functions/printer3/logs").json()
    cursor = page["next"]
    api.post("/v1/functions/printer3/invoke", json={"tag": "b"})
    newer = api.get("/v1/functions/printer3/logs", params={"after": cursor}).json()["logs"]
    assert sorted(line["message"] for line in newer) == ["hello from b", "to stderr b"]

    assert api.get("/v1/functions/printer3/logs", params={"since": "1h"}).json()["logs"]
    future = time.time() + 3600
    assert api.get("/v1/functions/printer3/logs", params={"since": str(future)}).json()["logs"] == []
    bad = api.get("/v1/functions/printer3/logs", params={"since": "yesterday-ish"})
    assert bad.status_code == 400
    assert bad.json()["error"]["field"] == "since"
    assert api.get("/v1/functions/printer3/logs", params={"limit": "0"}).status_code == 400
    assert api.get("/v1/functions/printer3/logs", params={"limit": "1"}).json()["logs"][0]["message"]
    assert api.get("/v1/functions/nobody/logs").status_code == 404


def test_output_past_the_cap_is_cut_with_a_marker(start_server, code):
    server = start_server(WUZHAO_LOG_BYTES_PER_CALL="4096")
    client = server.client()
    assert client.put("/v1/functions/loud", json={"code": code({"main.py": PRINTER})}).status_code == 201
    response = client.post("/v1/functions/loud/invoke", json={"tag": "x", "flood": 5_000_000})
    assert response.status_code == 200
    record = client.get(f"/v1/invocations/{response.headers['x-wuzhao-invocation-id']}").json()
    messages = [line["message"] for line in record["logs"]]
    assert any(m.startswith("[wuzhao] output truncated:") for m in messages)
    kept = sum(len(m) for m in messages if not m.startswith("[wuzhao]"))
    assert kept <= 4096
