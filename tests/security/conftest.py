"""The hostile-function suite: one real server for the whole folder, and the tools to attack it.

Every function deployed here ships ``hostile.py`` (:data:`PRELUDE`) next to
its ``main.py``: small helpers that try something and report the errno's name
("EPERM", "EROFS"...) or "ok", run a dangerous attempt in a forked child so
that a success cannot change the runtime itself, and make raw syscalls through
ctypes.

After every test :func:`platform_unharmed` checks that the attack did not
hurt the platform: the server is alive and healthy, and the canary function,
deployed once, still answers with its warm instance's module state intact.

The server gets a uid range of its own (``WUZHAO_UID_BASE``) so that the
tests can find the host processes of an instance by uid, a small ``/tmp``
(``WUZHAO_TMP_SIZE_MB``) so that filling it is quick, and a small pids limit
so that a fork bomb hits it quickly.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from tests.conftest import zip_files
from tests.integration.conftest import (  # noqa: F401  (fixtures re-exported to this folder)
    Server,
    _base_env,
    api,
    deploy,
    free_port,
    start_server,
)

from wuzhao.errors import SandboxUnavailable
from wuzhao.sandbox.zygote_launcher import check_host

try:
    check_host()
    UNAVAILABLE = ""
except SandboxUnavailable as exc:
    UNAVAILABLE = str(exc)

# Every module of the suite: ``pytestmark = NEEDS_SANDBOX``.
NEEDS_SANDBOX = [pytest.mark.sandbox, pytest.mark.skipif(bool(UNAVAILABLE), reason=UNAVAILABLE)]

MB = 1024 * 1024
# A uid range no other test server uses (they default to 200000 + 65536).
UID_COUNT = 256
UID_BASE = 300_000 + (os.getpid() % 2000) * UID_COUNT
TMP_SIZE_MB = 8
PIDS_MAX = 64
MAX_CODE_BYTES = 1 * MB  # the deploy body limit is then about 1.4 MB: over-limit bodies stay cheap
SETTINGS = {
    "WUZHAO_UID_BASE": str(UID_BASE),
    "WUZHAO_UID_COUNT": str(UID_COUNT),
    "WUZHAO_TMP_SIZE_MB": str(TMP_SIZE_MB),
    "WUZHAO_PIDS_MAX": str(PIDS_MAX),
    "WUZHAO_MAX_CODE_BYTES": str(MAX_CODE_BYTES),
}

PRELUDE = r'''
"""Helpers of the hostile functions (shipped as hostile.py next to main.py)."""
import ctypes, errno, json, os, signal, socket, struct, sys, time

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def errname(code):
    return errno.errorcode.get(code, str(code))


def attempt(action, *args):
    """Run action(*args): "ok", or the name of the errno it failed with."""
    try:
        action(*args)
        return "ok"
    except OSError as exc:
        return errname(exc.errno)


def _arg(value):
    if isinstance(value, int):
        return ctypes.c_long(value)
    if isinstance(value, (bytes, str)):
        return ctypes.c_char_p(value.encode() if isinstance(value, str) else value)
    return value  # a ctypes object or None


def syscall(number, *args):
    """A raw syscall: "ok" when it returned >= 0, else the errno's name."""
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(number), *[_arg(a) for a in args])
    if result == 0 and number in (56, 435):  # clone / clone3 that succeeded: we are the child
        os._exit(0)
    return errname(ctypes.get_errno()) if result == -1 else "ok"


def in_child(action):
    """Run action() in a forked child; its JSON-able result, or how it died."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.write(write_end, json.dumps(action()).encode())
        except BaseException as exc:
            os.write(write_end, json.dumps("raised " + repr(exc)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    while True:
        data = os.read(read_end, 65536)
        if not data:
            break
        chunks.append(data)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return "killed by " + signal.Signals(os.WTERMSIG(status)).name
    return json.loads(b"".join(chunks) or b'"no answer"')


def host_uid():
    return int(open("/proc/self/uid_map").read().split()[1])


def status_fields(text):
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
'''

CANARY = """
calls = 0

def handler(event, context):
    global calls
    calls += 1
    return {"canary": "alive", "calls": calls}
"""


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the whole suite, with the settings above."""
    base = tmp_path_factory.mktemp("wuzhao-hostile")
    srv = Server(
        data_dir=base / "data",
        port=free_port(),
        env=_base_env(**SETTINGS),
        log_path=base / "server.log",
    )
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="package")
def canary(server: Server) -> Iterator[dict[str, int]]:
    """A function deployed once whose warm instance must survive every attack."""
    client = server.client()
    code = base64.b64encode(zip_files({"main.py": CANARY})).decode()
    response = client.put("/v1/functions/canary", json={"code": code})
    assert response.status_code in (200, 201), response.text
    first = client.post("/v1/functions/canary/invoke")
    assert first.status_code == 200, first.text
    yield {"calls": first.json()["calls"]}
    client.close()


@pytest.fixture(autouse=True)
def platform_unharmed(server: Server, canary: dict[str, int]) -> Iterator[None]:
    """After each attack: the server lives, is healthy, and another function still answers."""
    yield
    assert server.process is not None and server.process.poll() is None, server.log()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/healthz").status_code == 200
        response = client.post(
            "/v1/functions/canary/invoke", headers={"Authorization": f"Bearer {server.key}"}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    expected = canary["calls"] + 1
    canary["calls"] = body.get("calls", expected)  # one harmed test must not fail the next ones
    # The same warm instance answers (the idle timeout is far longer than the suite):
    # no attack killed or replaced it.
    assert body == {"canary": "alive", "calls": expected}
    assert response.headers["x-wuzhao-cold-start"] == "false"


@pytest.fixture
def hostile(deploy: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:  # noqa: F811
    """Factory: ``hostile("name", MAIN, **config)`` deploys main.py plus the helpers."""

    def make(name: str, main: str, **config: Any) -> dict[str, Any]:
        return deploy(name, {"main.py": main, "hostile.py": PRELUDE}, **config)

    return make


# Looking at instances from the host.


def processes_of(uid: int) -> list[int]:
    """Host pids of every process (zombies included) whose real uid is ``uid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as status:
                for line in status:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            pids.append(int(entry))
                        break
        except OSError:  # gone meanwhile
            pass
    return pids


def cpu_ticks(pids: list[int]) -> int:
    """utime + stime of these processes, in clock ticks (a vanished process counts 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return total


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


class PeakRss:
    """Samples a process's RSS every few milliseconds while the block runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = rss_kb(pid)
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kb(self.pid))
            time.sleep(0.01)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_kb(self.pid))


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])
