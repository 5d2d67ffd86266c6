"""The promise of asynchronous calls: an accepted call is never lost, not even by a kill -9.

2,000 calls are accepted (some with ordering keys, some failing by design),
the server is killed with SIGKILL at a random moment while it works through
them, and started again on the same data directory. Every accepted call must
end ``succeeded`` (or ``dead``, for those that fail by design), each key's
calls must have run one after the other in their order, and the calls that
ran twice (at-least-once: those whose attempt the kill interrupted before its
ack) are counted and reported. A call the killed server held costs one retry
(a ``LeaseExpired`` attempt), never more, and never its success.
"""

from __future__ import annotations

import collections
import concurrent.futures
import datetime
import itertools
import random
import re
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
from tests.integration.conftest import Server

CALLS = 2000
KEYS = 20  # ordering keys, each with KEYED calls
KEYED = 20
FAIL_EVERY = 50  # every 50th call fails by design (max_retries 1: two attempts, then dead)
SETTINGS = {"WUZHAO_ASYNC_CONCURRENCY": "32"}

HANDLER = """
import time

def handler(event, context):
    print("run", event["seq"], context.aws_request_id)
    time.sleep(0.02)
    if event.get("fail"):
        raise RuntimeError("fails by design")
    return {"seq": event["seq"]}
"""


def depth(api: httpx.Client) -> int:
    metrics = api.get("/metrics").text
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in metrics.splitlines()
        if line.startswith("wuzhao_async_queue_depth{")
    )


def started(attempt: dict[str, Any]) -> float:
    return datetime.datetime.fromisoformat(attempt["started_at"]).timestamp()


def accept_all(server: Server, events: list[dict[str, Any]]) -> list[str]:
    def submit(chunk: list[dict[str, Any]]) -> list[str]:
        ids = []
        with server.client() as client:
            for event in chunk:
                headers = {"X-Wuzhao-Invocation-Type": "Event"}
                if "key" in event:
                    headers["X-Wuzhao-Ordering-Key"] = event["key"]
                response = client.post("/v1/functions/crash/invoke", json=event, headers=headers)
                assert response.status_code == 202, response.text
                ids.append(response.json()["invocation_id"])
        return ids

    # Keyed calls go in one chunk each key, so each key's calls are accepted in their order.
    chunks: list[list[dict[str, Any]]] = [[] for _ in range(8)]
    for event in events:
        chunks[hash(event.get("key", event["seq"])) % len(chunks)].append(event)
    with concurrent.futures.ThreadPoolExecutor(len(chunks)) as pool:
        results = list(pool.map(submit, chunks))
    by_seq = {}
    for chunk, ids in zip(chunks, results, strict=True):
        for event, call_id in zip(chunk, ids, strict=True):
            by_seq[event["seq"]] = call_id
    return [by_seq[seq] for seq in range(len(events))]


def runs_in_logs(api: httpx.Client) -> collections.Counter[str]:
    """How many times each call's handler printed its line (a run the kill cut short may not have)."""
    runs: collections.Counter[str] = collections.Counter()
    after = None
    while True:
        params: dict[str, Any] = {"limit": 1000} | ({"after": after} if after is not None else {})
        page = api.get("/v1/functions/crash/logs", params=params).json()
        for line in page["logs"]:
            match = re.match(r"run \d+ (\S+)", line["message"])
            if match:
                runs[match.group(1)] += 1
        if not page["logs"]:
            return runs
        after = page["next"]


def test_no_accepted_call_is_lost_when_the_server_is_killed(
    start_server: Callable[..., Server], code: Callable[..., str]
) -> None:
    began = time.monotonic()
    rng = random.Random()
    server = start_server(**SETTINGS)
    api = server.client()
    response = api.put(
        "/v1/functions/crash",
        json={
            "code": code({"main.py": HANDLER}),
            "max_concurrency": 8,
            "max_retries": 1,
            "retry_delay_s": 0.1,
        },
    )
    assert response.status_code == 201, response.text
    events: list[dict[str, Any]] = []
    for seq in range(CALLS):
        event: dict[str, Any] = {"seq": seq}
        if seq < KEYS * KEYED:
            event["key"] = f"key-{seq % KEYS}"
        if seq % FAIL_EVERY == FAIL_EVERY - 1:
            event["fail"] = True
        events.append(event)
    ids = accept_all(server, events)
    assert len(set(ids)) == CALLS
    accepted_in = time.monotonic() - began

    # Kill it at a random moment while it works through the backlog.
    threshold = rng.randint(CALLS // 10, CALLS // 2)
    while (left := depth(api)) > threshold:
        time.sleep(0.01)
    time.sleep(rng.uniform(0, 0.05))
    assert server.process is not None
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    killed_at = time.monotonic() - began

    restarted = start_server(data_dir=server.data_dir, **SETTINGS)
    api = restarted.client()
    deadline = time.monotonic() + 60
    while depth(api) > 0:
        assert time.monotonic() < deadline, restarted.log()
        time.sleep(0.1)

    calls = {}
    for seq, call_id in enumerate(ids):
        response = api.get(f"/v1/invocations/{call_id}")
        assert response.status_code == 200, response.text
        calls[seq] = response.json()
    lost = 0
    for seq, body in calls.items():
        outcomes = [a["outcome"] for a in body["attempts"]]
        assert outcomes.count("LeaseExpired") <= 1, body  # one kill: one lost lease at most
        lost += "LeaseExpired" in outcomes
        if events[seq].get("fail"):
            # Two attempts (max_retries 1), one of which the kill may have lost instead.
            assert body["status"] == "dead", body
            assert len(outcomes) == 2 and set(outcomes) <= {"FunctionError", "LeaseExpired"}, body
        else:
            # It had a retry left: the lost lease cost that, not the call.
            assert body["status"] == "succeeded", body
            assert body["result"] == {"seq": seq}
            assert outcomes in (["success"], ["LeaseExpired", "success"]), body
    # Every lease the killed server held, and only those, became a LeaseExpired attempt.
    log = restarted.log_path.read_text(errors="replace")
    given_back = re.search(r"queue: (\d+) calls were running when the last process ended", log)
    assert lost == (int(given_back.group(1)) if given_back else 0), restarted.log()
    # Each key ran its calls one after the other, in the order they were accepted.
    by_key: dict[str, list[int]] = collections.defaultdict(list)
    for event in events:
        if "key" in event:
            by_key[event["key"]].append(event["seq"])
    for seqs in by_key.values():
        for before, after in itertools.pairwise(seqs):
            last_before = max(started(a) for a in calls[before]["attempts"])
            first_after = min(started(a) for a in calls[after]["attempts"])
            assert last_before < first_after, (before, after)

    # At least once: a call whose attempt the kill cut short (or whose ack it lost) ran again.
    # Counted from the handlers' log lines, so a lower bound: the kill also loses the lines
    # of its last 50 ms (the recorder's batch).
    runs = runs_in_logs(api)
    recorded = {body["id"]: len(body["attempts"]) for body in calls.values()}
    duplicates = sum(max(0, runs[call_id] - attempts) for call_id, attempts in recorded.items())
    print(
        f"\n{CALLS} calls accepted in {accepted_in:.1f} s; killed at {killed_at:.1f} s with {left} "
        f"unfinished; all done at {time.monotonic() - began:.1f} s; duplicates seen: {duplicates}; "
        f"leases lost: {lost}"
    )
