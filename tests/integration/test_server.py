"""The server process: authentication, restarts, graceful shutdown and cleanup."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import threading
import time
from pathlib import Path

import httpx
from tests.integration.conftest import Server

SLOW = (
    "import time\n\ndef handler(event, context):\n    time.sleep(event.get('s', 0))\n    return 'finished'\n"
)


def test_healthz_needs_no_key_and_reveals_nothing(server: Server):
    response = httpx.get(f"{server.url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "server" not in response.headers


def test_every_v1_route_needs_a_valid_key(server: Server):
    routes = [
        ("GET", "/v1/functions"),
        ("GET", "/v1/functions/x"),
        ("PUT", "/v1/functions/x"),
        ("DELETE", "/v1/functions/x"),
        ("POST", "/v1/functions/x/invoke"),
        ("GET", "/v1/functions/x/logs"),
        ("GET", "/v1/invocations/x"),
        ("GET", "/v1/no-such-route"),
        ("GET", "/v1"),
    ]
    bad_headers = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer wz_0000000000000000_wrong"},
        {"Authorization": f"Bearer {server.key}x"},
        {"Authorization": f"Basic {server.key}"},
        {"Authorization": "garbage"},
    ]
    for method, path in routes:
        for headers in bad_headers:
            response = httpx.request(method, f"{server.url}{path}", headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["error"]["code"] == "Unauthorized"
    ok = httpx.get(f"{server.url}/v1/functions", headers={"Authorization": f"Bearer {server.key}"})
    assert ok.status_code == 200


def test_admin_key_file_is_private_and_only_its_hash_is_stored(server: Server):
    key_file = server.data_dir / "admin.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = server.key
    assert key.startswith("wz_")
    stored = b"".join(p.read_bytes() for p in server.data_dir.glob("wuzhao.db*"))
    assert key.encode() not in stored
    assert key.rsplit("_", 1)[1].encode() not in stored
    assert hashlib.sha256(key.encode()).hexdigest().encode() in stored


def test_restart_keeps_functions_and_key(start_server, code):
    first = start_server()
    client = first.client()
    assert client.put("/v1/functions/survivor", json={"code": code(), "memory_mb": 192}).status_code == 201
    key = first.key
    assert first.stop() == 0

    second = start_server(data_dir=first.data_dir)
    assert second.key == key
    client = second.client()
    assert client.get("/v1/functions/survivor").json()["memory_mb"] == 192
    response = client.post("/v1/functions/survivor/invoke", json={"name": "again"})
    assert response.json() == {"hello": "again"}


def test_sigterm_lets_in_flight_calls_finish_then_leaves_nothing_behind(start_server, code):
    uid_base = 310000
    server = start_server(WUZHAO_UID_BASE=str(uid_base), WUZHAO_UID_COUNT="1000")
    client = server.client()
    assert client.put("/v1/functions/slow", json={"code": code({"main.py": SLOW})}).status_code == 201
    # a daemon left behind by a warm instance must die too
    daemon = (
        "import subprocess\n\n"
        "def handler(event, context):\n    subprocess.Popen(['sleep', '1000'])\n    return 'left'\n"
    )
    assert client.put("/v1/functions/daemon", json={"code": code({"main.py": daemon})}).status_code == 201
    assert client.post("/v1/functions/daemon/invoke").json() == "left"
    assert client.post("/v1/functions/slow/invoke", json={}).status_code == 200
    assert _sandbox_processes(uid_base, 1000), "instances should be running before shutdown"
    assert server.process is not None
    children = _children(server.process.pid)
    assert any("wuzhao.runtimes.python.zygote" in cmd for _, cmd in children)

    result: dict[str, httpx.Response] = {}

    def slow_call() -> None:
        result["response"] = client.post("/v1/functions/slow/invoke", json={"s": 2})

    caller = threading.Thread(target=slow_call)
    caller.start()
    time.sleep(0.7)
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    caller.join(30)
    assert result["response"].status_code == 200
    assert result["response"].json() == "finished"
    assert server.process.wait(60) == 0

    assert _sandbox_processes(uid_base, 1000) == []
    server_id = hashlib.sha256(str(server.data_dir).encode()).hexdigest()[:12]
    for controller in ("memory", "cpu", "pids", "freezer"):
        assert not Path(f"/sys/fs/cgroup/{controller}/wuzhao/{server_id}").exists(), controller
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(server.data_dir) not in mounts
    still_there = {pid for pid, _, _ in _processes()}
    assert [c for c in children if c[0] in still_there] == []


def test_new_calls_are_refused_once_shutdown_begins(start_server, code):
    server = start_server()
    client = server.client()
    assert client.put("/v1/functions/slow", json={"code": code({"main.py": SLOW})}).status_code == 201
    caller = threading.Thread(target=lambda: client.post("/v1/functions/slow/invoke", json={"s": 2}))
    caller.start()
    time.sleep(0.7)
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    try:
        late = httpx.post(
            f"{server.url}/v1/functions/slow/invoke",
            json={},
            headers={"Authorization": f"Bearer {server.key}"},
            timeout=5,
        )
        assert late.status_code == 503
    except httpx.TransportError:
        pass  # the listening socket is already closed: refused, as it should be
    caller.join(30)
    assert server.process.wait(60) == 0


def _processes() -> list[tuple[int, int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        found.append((int(entry.name), uid, cmdline))
    return found


def _children(parent: int) -> list[tuple[int, str]]:
    found = []
    for pid, _, cmdline in _processes():
        try:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent:
            found.append((pid, cmdline))
    return found


def _sandbox_processes(uid_base: int, count: int) -> list[tuple[int, int, str]]:
    return [p for p in _processes() if uid_base <= p[1] < uid_base + count and p[0] != os.getpid()]
