"""Hostile functions against the platform's resources: memory, processes, CPU, output, response size.

Where the check is "no process left" or "no CPU while idle", the test looks
from the host: the instance's processes are the ones running as its host uid
(which the function reports), and their CPU time is in ``/proc/<pid>/stat``.
"""

from __future__ import annotations

import time

from tests.security.conftest import (
    NEEDS_SANDBOX,
    PIDS_MAX,
    PRELUDE,
    UID_BASE,
    UID_COUNT,
    PeakRss,
    cpu_ticks,
    error_code,
    processes_of,
    wait_until,
)

pytestmark = NEEDS_SANDBOX

MB = 1024 * 1024


def function_error(response) -> str | None:
    return response.headers.get("x-wuzhao-function-error")


def test_allocating_twice_the_memory_limit_is_out_of_memory(api, hostile):
    hostile(
        "res-oom",
        """
def handler(event, context):
    if event.get("eat"):
        hoard = b"x" * (2 * context.memory_limit_in_mb * 1024 * 1024)  # touched, not just reserved
        return len(hoard)
    return "fine"
""",
        memory_mb=128,
    )
    response = api.post("/v1/functions/res-oom/invoke", json={"eat": True})
    assert response.status_code == 500, response.text
    assert function_error(response) == "OutOfMemory"
    assert error_code(response) == "OutOfMemory"
    again = api.post("/v1/functions/res-oom/invoke", json={})
    assert again.status_code == 200
    assert again.json() == "fine"
    assert again.headers["x-wuzhao-cold-start"] == "true"  # a new instance, the old one is gone


def test_fork_bomb_is_contained(api, hostile):
    hostile(
        "res-forkbomb",
        """
from hostile import *

def handler(event, context):
    children = []
    error = None
    while len(children) < 10000:
        try:
            pid = os.fork()
        except OSError as exc:
            error = errname(exc.errno)
            break
        if pid == 0:
            while True:  # every child tries to multiply too, then waits to be killed
                try:
                    if os.fork() == 0:
                        continue
                except OSError:
                    time.sleep(3600)
        children.append(pid)
    count = len(children)
    os.kill(-1, signal.SIGKILL)  # everyone in this pid namespace but pid 1, which is us
    reaped = 0
    while True:
        try:
            os.wait()
            reaped += 1
        except ChildProcessError:
            break
    return {"error": error, "forked": count}
""",
    )
    response = api.post("/v1/functions/res-forkbomb/invoke")
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["error"] == "EAGAIN"  # the pids limit answered, not the host's
    assert result["forked"] < PIDS_MAX
    # the instance itself recovered: the same one answers again, and can fork again
    again = api.post("/v1/functions/res-forkbomb/invoke")
    assert again.status_code == 200, again.text
    assert again.json()["error"] == "EAGAIN"
    assert again.headers["x-wuzhao-cold-start"] == "false"


LOOPER = """
from hostile import *

def handler(event, context):
    print("host uid", host_uid(), flush=True)
    if os.fork() == 0:
        while True:  # a child spinning too: the whole tree must go
            pass
    while True:
        pass
"""


def reported_uid(api, invocation_id: str) -> int:
    logs = api.get(f"/v1/invocations/{invocation_id}").json()["logs"]
    lines = [line["message"] for line in logs if line["message"].startswith("host uid ")]
    assert lines, logs
    return int(lines[0].split()[-1])


def test_infinite_loop_times_out_and_leaves_no_process(api, hostile):
    hostile("res-loop", LOOPER, timeout_s=1)
    started = time.monotonic()
    response = api.post("/v1/functions/res-loop/invoke")
    assert response.status_code == 504, response.text
    assert function_error(response) == "Timeout"
    assert error_code(response) == "Timeout"
    assert time.monotonic() - started < 5
    uid = reported_uid(api, response.headers["x-wuzhao-invocation-id"])
    assert UID_BASE <= uid < UID_BASE + UID_COUNT
    assert wait_until(lambda: not processes_of(uid), timeout=5), processes_of(uid)


DAEMON = """
from hostile import *

def handler(event, context):
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() == 0:
            while True:  # a daemon that spins forever, detached from the call
                pass
        os._exit(0)
    os.waitpid(pid, 0)
    return host_uid()
"""


def assert_idle_daemon_uses_no_cpu(uid: int) -> list[int]:
    time.sleep(0.3)  # the instance is frozen shortly after its call
    pids = processes_of(uid)
    assert len(pids) >= 2, pids  # the runtime and the daemon are there...
    before = cpu_ticks(pids)
    time.sleep(1.0)
    used = cpu_ticks(pids) - before
    assert used <= 2, f"{used} ticks of CPU in a second of idleness"  # ...and get no CPU
    return pids


def test_daemon_left_after_return_uses_no_cpu_and_dies_with_the_instance(api, hostile):
    hostile("res-daemon", DAEMON)
    response = api.post("/v1/functions/res-daemon/invoke")
    assert response.status_code == 200, response.text
    uid = response.json()
    assert UID_BASE <= uid < UID_BASE + UID_COUNT
    assert_idle_daemon_uses_no_cpu(uid)
    assert api.delete("/v1/functions/res-daemon").status_code == 204
    assert wait_until(lambda: not processes_of(uid), timeout=5), processes_of(uid)


def test_daemon_dies_with_the_instance_at_idle_timeout(start_server, code):
    base = UID_BASE + UID_COUNT  # a range of its own, next to the suite's server
    server = start_server(
        WUZHAO_IDLE_TIMEOUT="2.5", WUZHAO_UID_BASE=str(base), WUZHAO_UID_COUNT=str(UID_COUNT)
    )
    client = server.client()
    deployed = client.put(
        "/v1/functions/daemon", json={"code": code({"main.py": DAEMON, "hostile.py": PRELUDE})}
    )
    assert deployed.status_code == 201, deployed.text
    response = client.post("/v1/functions/daemon/invoke")
    assert response.status_code == 200, response.text
    uid = response.json()
    assert base <= uid < base + UID_COUNT
    assert_idle_daemon_uses_no_cpu(uid)  # still within the idle timeout
    assert wait_until(lambda: not processes_of(uid), timeout=6), processes_of(uid)
    assert client.get("/v1/functions/daemon").json()["instances"] == {"idle": 0, "busy": 0}


def test_gigabyte_of_stdout_is_truncated_and_platform_memory_bounded(server, api, hostile):
    hostile(
        "res-stdout",
        """
import os

def handler(event, context):
    line = b"y" * 1023 + b"\\n"
    chunk = line * 1024  # 1 MB
    for _ in range(1024):  # 1 GB in all
        view = memoryview(chunk)
        while view:
            view = view[os.write(1, view):]
    os.write(1, b"no newline at the end: " + b"z" * 100000)
    return "printed"
""",
        timeout_s=120,
    )
    assert server.process is not None
    with PeakRss(server.process.pid) as rss:
        response = api.post("/v1/functions/res-stdout/invoke", timeout=180)
    assert response.status_code == 200, response.text
    assert response.json() == "printed"
    grew_mb = (rss.peak - rss.before) / 1024
    assert grew_mb < 100, f"the server grew by {grew_mb:.0f} MB while the function printed 1 GB"
    logs = api.get(f"/v1/invocations/{response.headers['x-wuzhao-invocation-id']}").json()["logs"]
    marker = logs[-1]["message"]
    assert marker.startswith("[wuzhao] output truncated: "), logs[-1]
    dropped = int(marker.split(": ", 1)[1].split()[0])
    assert dropped >= 1023 * MB  # all but about the per-call cap (1 MB by default) was dropped


def test_twenty_megabyte_response_is_response_too_large(api, hostile):
    hostile(
        "res-bigresponse",
        """
def handler(event, context):
    if event.get("big"):
        return "x" * (20 * 1024 * 1024)
    return "small"
""",
    )
    response = api.post("/v1/functions/res-bigresponse/invoke", json={"big": True})
    assert response.status_code == 413, response.text[:500]
    assert function_error(response) == "ResponseTooLarge"
    assert error_code(response) == "ResponseTooLarge"
    assert len(response.content) < 64 * 1024  # the refusal, not the payload
    again = api.post("/v1/functions/res-bigresponse/invoke", json={})
    assert again.status_code == 200
    assert again.json() == "small"
