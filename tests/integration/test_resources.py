"""CPU follows memory: weight always, and a hard cap when the operator asks for it."""

from __future__ import annotations

SPIN = """
import time

def handler(event, context):
    started = time.monotonic()
    while time.monotonic() - started < event["seconds"]:
        pass
    return time.process_time()
"""


def test_hard_cpu_limit_caps_a_small_function(start_server, code):
    server = start_server(WUZHAO_CPU_HARD_LIMIT="true")
    client = server.client()
    assert (
        client.put("/v1/functions/spin", json={"code": code({"main.py": SPIN}), "memory_mb": 128}).status_code
        == 201
    )
    client.post("/v1/functions/spin/invoke", json={"seconds": 0})  # cold start outside the measure
    cpu_seconds = client.post("/v1/functions/spin/invoke", json={"seconds": 1.0}).json()
    # 128 MB buys ~7 % of a core: a second of spinning gets well under a quarter of a CPU second
    assert cpu_seconds < 0.25
