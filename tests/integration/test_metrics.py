"""GET /metrics: Prometheus numbers of calls, durations, cold starts, throttles and instances."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

METERED = """
def handler(event, context):
    if event.get("fail"):
        raise ValueError("no")
    return 1
"""


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_count_calls_outcomes_and_instances(server, api, deploy):
    deploy("metered", {"main.py": METERED})
    for _ in range(3):
        assert api.post("/v1/functions/metered/invoke", json={}).status_code == 200
    assert api.post("/v1/functions/metered/invoke", json={"fail": True}).status_code == 500

    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    labels = (("function", "metered"), ("namespace", "default"))
    assert (
        found[("wuzhao_invocations_total", (*labels[:1], ("namespace", "default"), ("outcome", "success")))]
        == 3
    )
    assert (
        found[
            (
                "wuzhao_invocations_total",
                (*labels[:1], ("namespace", "default"), ("outcome", "FunctionError")),
            )
        ]
        == 1
    )
    assert found[("wuzhao_cold_starts_total", labels)] == 1
    assert found[("wuzhao_invocation_duration_seconds_count", labels)] == 4
    assert found[("wuzhao_instances", (*labels, ("state", "idle")))] == 1


def test_metrics_need_an_admin_key(server):
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    assert httpx.get(f"{server.url}/metrics", headers={"Authorization": "Bearer wz_0_bad"}).status_code == 401


def test_top_shows_each_function_with_its_instances(server, api, deploy):
    deploy("watched", {"main.py": METERED})
    assert api.post("/v1/functions/watched/invoke", json={}).status_code == 200
    shown = server.cli("top", "--once", "--interval", "0.3")
    assert shown.returncode == 0, shown.stderr
    header, *lines = shown.stdout.splitlines()
    assert header.split("\t") == [
        "NAMESPACE",
        "FUNCTION",
        "CALLS/S",
        "P50 MS",
        "P99 MS",
        "ERRORS/S",
        "IDLE",
        "BUSY",
    ]
    row = next(line.split("\t") for line in lines if line.split("\t")[1] == "watched")
    assert row[0] == "default"
    assert (row[6], row[7]) == ("1", "0")
