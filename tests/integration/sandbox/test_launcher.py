"""Real sandboxes from a real zygote: the guarantees of ``wuzhao.sandbox.api``, checked.

Every test starts its own ZygoteLauncher (a unique server id, a temp state
dir) and ends by closing it and checking that nothing is left on the host: no
zygote, no shell, no cgroup under the server's prefix, no new mount. The
guarantees are checked twice: on instances the zygote forks when asked
(``forked``), and on instances made from its prepared shells (``shell``).
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from wuzhao.errors import SandboxUnavailable
from wuzhao.runtimes import protocol
from wuzhao.sandbox.api import ExitStatus, SandboxSpec
from wuzhao.sandbox.cgroups import CGROUP_ROOT, CONTROLLERS, CgroupTree
from wuzhao.sandbox.zygote_launcher import (
    SETUP_FAILED,
    ZygoteLauncher,
    ZygoteProcess,
    check_host,
)

try:
    check_host()
    UNAVAILABLE = ""
except SandboxUnavailable as exc:
    UNAVAILABLE = str(exc)

pytestmark = [pytest.mark.sandbox, pytest.mark.skipif(bool(UNAVAILABLE), reason=UNAVAILABLE)]

UID = 61234
STEP = 20.0  # seconds any single exchange may take

APP = """
import errno, os, socket, sys, time

calls = 0

def hello(event, context):
    print("hello from", event["name"])
    print("to stderr", file=sys.stderr)
    return {"hello": event["name"]}

def counter(event, context):
    global calls
    calls += 1
    return calls

def context_fields(event, context):
    names = ["aws_request_id", "request_id", "function_name", "function_version",
             "memory_limit_in_mb", "invoked_function_arn", "log_group_name", "log_stream_name"]
    fields = {name: getattr(context, name) for name in names}
    fields["remaining"] = context.get_remaining_time_in_millis()
    return fields

def boom(event, context):
    raise ValueError("no thumbnails today")

def unserialisable(event, context):
    return {1, 2}

def view(event, context):
    def is_open(fd):
        try:
            os.fstat(fd)
            return True
        except OSError:
            return False
    return {
        "uid": os.getuid(), "gid": os.getgid(), "euid": os.geteuid(),
        "pid": os.getpid(),
        "procs": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "hostname": socket.gethostname(),
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "fds": [fd for fd in range(1024) if is_open(fd)],
        "interfaces": [name for _, name in socket.if_nameindex()],
        "sys": os.path.exists("/sys/kernel"),
        "root": sorted(os.listdir("/")),
        "cmdline": open("/proc/1/cmdline").read(),
        "argv": sys.argv,
    }

def writes(event, context):
    result = {}
    for path in event["paths"]:
        try:
            with open(path, "w") as f:
                f.write("x")
            result[path] = 0
        except OSError as exc:
            result[path] = exc.errno
    return result

def fill_tmp(event, context):
    try:
        with open("/tmp/big", "wb") as f:
            f.write(b"x" * event["bytes"])
            f.flush()
        return 0
    except OSError as exc:
        return exc.errno

def network(event, context):
    out = {}
    try:
        socket.create_connection(("127.0.0.1", event["host_port"]), timeout=2).close()
        out["host"] = 0
    except OSError as exc:
        out["host"] = exc.errno
    # listen() is filtered (a function serves only on its channel): UDP shows loopback works.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(2)
        peer.sendto(b"ping", peer.getsockname())
        out["loopback"] = "ok" if peer.recv(4) == b"ping" else "lost"
    return out

def hog(event, context):
    blob = b"x" * (event["mb"] * 1024 * 1024)
    return len(blob)

def fork_bomb(event, context):
    children = 0
    while True:
        try:
            pid = os.fork()
        except OSError as exc:
            return {"children": children, "errno": exc.errno}
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children += 1

def stdlib(event, context):
    import decimal, email.mime.text, sqlite3, ssl, zoneinfo
    with sqlite3.connect(":memory:") as db:
        answer = db.execute("select 6 * 7").fetchone()[0]
    return {
        "sqlite": answer,
        "decimal": str(decimal.Decimal("0.1") + decimal.Decimal("0.2")),
        "mime": email.mime.text.MIMEText("hi")["Content-Type"],
        "idna": "bücher.example".encode("idna").decode(),
        "certs": ssl.create_default_context().cert_store_stats()["x509_ca"] > 0,
        "tz": str(zoneinfo.ZoneInfo("Europe/Paris")),
        "path": sys.path,
        "executable": sys.executable,
    }

def leave_child(event, context):
    if os.fork() == 0:
        time.sleep(60)
        os._exit(0)
    return "left"
"""


def mountinfo() -> list[str]:
    # Mount ids and the optional fields change with nothing mounted: compare
    # what is mounted where.
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return sorted(" ".join(line.split()[3:5]) for line in lines)


def prefix_dirs(server_id: str) -> list[Path]:
    return [CGROUP_ROOT / c / "wuzhao" / server_id for c in CONTROLLERS]


def host_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[2])  # effective
    raise AssertionError("no Uid line")


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return not stat.rpartition(") ")[2].startswith("Z")


class Runtime:
    """The worker's half of the protocol, for one instance."""

    def __init__(self, proc: ZygoteProcess) -> None:
        self.proc = proc
        self.decoder = protocol.FrameDecoder(1 << 20, protocol.RUNTIME_KINDS)

    async def send(self, kind: str, header: dict[str, Any], body: bytes = b"") -> None:
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(self.proc.channel, protocol.encode(kind, header, body))

    async def receive(self) -> protocol.Frame | None:
        loop = asyncio.get_running_loop()
        frames: list[protocol.Frame] = []
        while not frames:
            data = await asyncio.wait_for(loop.sock_recv(self.proc.channel, 1 << 16), STEP)
            if not data:
                return None
            frames = self.decoder.feed(data)
        assert len(frames) == 1
        return frames[0]

    async def init(self, handler: str) -> protocol.Frame | None:
        header = {
            "handler": handler,
            "function_name": "thumbs",
            "function_version": "3",
            "memory_limit_in_mb": self.proc.spec.memory_mb,
        }
        await self.send(protocol.INIT, header)
        return await self.receive()

    async def invoke(self, event: Any, request_id: str = "req-1") -> protocol.Frame | None:
        header = {"id": request_id, "deadline_ms": int(time.time() * 1000) + 30_000}
        await self.send(protocol.INVOKE, header, json.dumps(event).encode())
        return await self.receive()

    async def call(self, handler: str, event: Any = None) -> Any:
        ready = await self.init(f"app.{handler}")
        assert ready is not None and ready.kind == protocol.READY, ready
        result = await self.invoke(event)
        assert result is not None and result.kind == protocol.RESULT, result
        return json.loads(result.body)


def read_pipe(fd: int) -> bytes:
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return b""


async def ready_shells(launcher: ZygoteLauncher, count: int = 1) -> list[int]:
    """The pids of the ready shells, once there are ``count``."""
    deadline = time.monotonic() + STEP
    while len(launcher.ready_shells()) < count:
        assert time.monotonic() < deadline, "the pool did not fill"
        await asyncio.sleep(0.01)
    return launcher.ready_shells()


@dataclass
class Rig:
    launcher: ZygoteLauncher
    spec: SandboxSpec
    server_id: str
    shells: int

    async def launch(self, **changes: Any) -> tuple[ZygoteProcess, Runtime]:
        """An instance, from a shell when the rig keeps some (the test says which way it came)."""
        if self.shells:
            await ready_shells(self.launcher)
        proc = await self.launcher.launch(replace(self.spec, **changes))
        assert proc.from_shell == bool(self.shells)
        return proc, Runtime(proc)


@asynccontextmanager
async def rig(tmp_path: Path, *, isolate: bool = True, shells: int = 0) -> AsyncIterator[Rig]:
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text(textwrap.dedent(APP))
    code.chmod(0o755)
    (code / "app.py").chmod(0o644)
    server_id = f"test-{uuid.uuid4().hex[:8]}"
    spec = SandboxSpec(
        instance_id="i-1",
        code_dir=str(code),
        uid=UID,
        memory_mb=128,
        cpu_shares=256,
        pids_max=32,
        tmp_size_mb=8,
        hostname="fn-test",
        env={"GREETING": "hi", "PATH": "/usr/bin:/bin"},
    )
    mounts = mountinfo()
    launcher = ZygoteLauncher(
        state_dir=tmp_path / "state", server_id=server_id, isolate=isolate, shells=shells
    )
    await launcher.start()
    zygote = launcher.zygote_pid
    assert zygote is not None
    try:
        yield Rig(launcher, spec, server_id, shells)
    finally:
        waiting = launcher.ready_shells()
        await launcher.close()
    assert not Path(f"/proc/{zygote}").exists()
    assert not any(alive(pid) for pid in waiting)
    assert [p for p in prefix_dirs(server_id) if p.exists()] == []
    assert mountinfo() == mounts


def run(
    tmp_path: Path, test: Callable[[Rig], Awaitable[None]], *, isolate: bool = True, shells: int = 0
) -> None:
    async def main() -> None:
        async with rig(tmp_path, isolate=isolate, shells=shells) as r:
            await test(r)

    asyncio.run(main())


def test_hello_round_trip_with_logs_before_the_result(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        proc, runtime = await r.launch()
        assert await runtime.call("hello", {"name": "ada"}) == {"hello": "ada"}
        # The runtime flushed its output before answering.
        assert read_pipe(proc.stdout_fd) == b"hello from ada\n"
        assert read_pipe(proc.stderr_fd) == b"to stderr\n"
        await proc.destroy()
        assert await proc.wait() == ExitStatus(None, signal.SIGKILL)

    run(tmp_path, test, shells=shells)


def test_module_state_survives_warm_calls(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        _, runtime = await r.launch()
        assert await runtime.call("counter") == 1
        for expected in (2, 3):
            frame = await runtime.invoke(None, request_id=f"req-{expected}")
            assert frame is not None and frame.header["id"] == f"req-{expected}"
            assert json.loads(frame.body) == expected

    run(tmp_path, test, shells=shells)


def test_channel_close_ends_the_runtime_cleanly(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        proc, runtime = await r.launch()
        assert await runtime.call("counter") == 1
        proc.channel.shutdown(socket.SHUT_WR)
        assert await asyncio.wait_for(proc.wait(), STEP) == ExitStatus(0, None)

    run(tmp_path, test, shells=shells)


def test_context_fields(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        _, runtime = await r.launch()
        fields = await runtime.call("context_fields")
        assert fields["aws_request_id"] == fields["request_id"] == "req-1"
        assert fields["function_name"] == "thumbs"
        assert fields["function_version"] == "3"
        assert fields["memory_limit_in_mb"] == 128
        assert fields["invoked_function_arn"].endswith(":function:thumbs")
        assert fields["log_group_name"] == "/wuzhao/functions/thumbs"
        assert "[3]" in fields["log_stream_name"]
        assert 25_000 < fields["remaining"] <= 30_000

    run(tmp_path, test, shells=shells)


def test_bad_import_is_an_init_error_and_the_runtime_exits(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        (Path(r.spec.code_dir) / "broken.py").write_text("import no_such_module\n")
        proc, runtime = await r.launch()
        frame = await runtime.init("broken.handler")
        assert frame is not None and frame.kind == protocol.INIT_ERROR
        assert frame.header["error_type"] == "Runtime.ImportModuleError"
        assert "no_such_module" in frame.header["message"]
        assert await asyncio.wait_for(proc.wait(), STEP) == ExitStatus(1, None)

        proc, runtime = await r.launch(instance_id="i-2")
        frame = await runtime.init("app.missing")
        assert frame is not None and frame.header["error_type"] == "Runtime.HandlerNotFound"

    run(tmp_path, test, shells=shells)


def test_handler_exception_is_an_error_frame_with_traceback(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        _, runtime = await r.launch()
        assert (await runtime.init("app.boom")) is not None
        frame = await runtime.invoke({})
        assert frame is not None and frame.kind == protocol.ERROR
        assert frame.header["id"] == "req-1"
        assert frame.header["error_type"] == "ValueError"
        assert frame.header["message"] == "no thumbnails today"
        trace = frame.header["traceback"]
        assert len(trace) == 1  # the handler's frame only, not the runtime's
        assert '"/var/task/app.py"' in trace[0] and "in boom" in trace[0]
        # The instance keeps serving after a failed call.
        frame = await runtime.invoke({}, request_id="req-2")
        assert frame is not None and frame.header["id"] == "req-2"

        _, runtime = await r.launch(instance_id="i-2")
        assert (await runtime.init("app.unserialisable")) is not None
        frame = await runtime.invoke({})
        assert frame is not None and frame.header["error_type"] == "Runtime.MarshalError"

    run(tmp_path, test, shells=shells)


def test_identity_hostname_environment_processes_and_fds(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        proc, runtime = await r.launch()
        seen = await runtime.call("view")
        assert (seen["uid"], seen["gid"], seen["euid"]) == (0, 0, 0)
        assert host_uid(proc.pid) == UID
        assert seen["pid"] == 1
        assert seen["procs"] == [1]
        assert seen["hostname"] == "fn-test"
        assert seen["env"] == {"GREETING": "hi", "PATH": "/usr/bin:/bin"}
        assert seen["cwd"] == "/var/task"
        assert seen["fds"] == [0, 1, 2, 3]
        assert seen["interfaces"] == ["lo"]
        assert seen["sys"] is False
        assert "root" not in seen["root"] and "work" not in seen["root"]
        # Nothing of the server's data dir or pid in what the process can read of itself.
        assert str(tmp_path) not in seen["cmdline"]
        assert str(os.getpid()) not in seen["cmdline"].split("\0")
        assert seen["argv"] == [""]

    run(tmp_path, test, shells=shells)


def test_the_standard_library_imports_lazily_inside(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        _, runtime = await r.launch()
        seen = await runtime.call("stdlib")
        assert seen["sqlite"] == 42
        assert seen["decimal"] == "0.3"
        assert seen["mime"].startswith("text/plain")
        assert seen["idna"] == "xn--bcher-kva.example"
        assert seen["certs"] is True
        assert seen["tz"] == "Europe/Paris"
        assert seen["path"][0] == "/var/task"
        # Only the task root, the installation's and the runtime's own paths: nothing of the host's.
        assert all(p.startswith(("/var/task", "/var/lang", "/var/runtime", "/usr")) for p in seen["path"])
        assert seen["executable"].startswith(("/var/lang/", "/usr/"))

    run(tmp_path, test, shells=shells)


def test_root_is_read_only_and_tmp_is_a_capped_tmpfs(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        _, runtime = await r.launch()
        paths = ["/x", "/usr/x", "/var/task/x", "/var/lang/x", "/etc/x", "/dev/x", "/tmp/x"]
        result = await runtime.call("writes", {"paths": paths})
        assert result == {**dict.fromkeys(paths, errno.EROFS), "/tmp/x": 0}
        _, runtime = await r.launch(instance_id="i-2")
        assert await runtime.call("fill_tmp", {"bytes": 16 * 1024 * 1024}) == errno.ENOSPC

    run(tmp_path, test, shells=shells)


def test_no_mount_reaches_the_host(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        before = mountinfo()
        _, runtime = await r.launch()
        assert await runtime.call("counter") == 1
        assert mountinfo() == before

    run(tmp_path, test, shells=shells)


def test_network_is_loopback_only(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            _, runtime = await r.launch()
            port = listener.getsockname()[1]
            result = await runtime.call("network", {"host_port": port})
        assert result == {"host": errno.ECONNREFUSED, "loopback": "ok"}

    run(tmp_path, test, shells=shells)


def test_memory_limit_oom_kills_the_instance(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        proc, runtime = await r.launch(memory_mb=64)
        assert (await runtime.init("app.hog")) is not None
        assert await runtime.invoke({"mb": 256}) is None  # killed mid-call
        assert await asyncio.wait_for(proc.wait(), STEP) == ExitStatus(None, signal.SIGKILL)
        assert proc.oom_killed()
        await proc.destroy()
        assert proc.oom_killed()  # still known once the cgroup is gone

    run(tmp_path, test, shells=shells)


def test_pids_limit_contains_a_fork_bomb(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        proc, runtime = await r.launch(pids_max=8)
        result = await runtime.call("fork_bomb")
        assert result == {"children": 7, "errno": errno.EAGAIN}
        assert proc.cgroup is not None and len(proc.cgroup.pids()) == 8
        assert not proc.oom_killed()
        proc.kill()
        assert await asyncio.wait_for(proc.wait(), STEP) == ExitStatus(None, signal.SIGKILL)
        assert proc.cgroup.pids() == []

    run(tmp_path, test, shells=shells)


def test_freezer_stops_and_resumes_an_instance(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        proc, runtime = await r.launch()
        assert await runtime.call("counter") == 1
        assert proc.cgroup is not None
        proc.cgroup.freeze()
        deadline = time.monotonic() + STEP
        while proc.cgroup.freezer_state() != "FROZEN" and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert proc.cgroup.freezer_state() == "FROZEN"
        header = {"id": "req-2", "deadline_ms": int(time.time() * 1000) + 30_000}
        await runtime.send(protocol.INVOKE, header, b"null")
        answer = asyncio.ensure_future(runtime.receive())
        done, _ = await asyncio.wait({answer}, timeout=0.3)
        assert not done  # a frozen instance does not answer
        proc.cgroup.thaw()
        frame = await answer
        assert frame is not None and json.loads(frame.body) == 2

    run(tmp_path, test, shells=shells)


def test_kill_takes_the_processes_the_function_left_behind(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        proc, runtime = await r.launch()
        assert await runtime.call("leave_child") == "left"
        assert proc.cgroup is not None
        pids = proc.cgroup.pids()
        assert len(pids) == 2 and proc.pid in pids
        proc.kill()
        proc.kill()  # idempotent
        await asyncio.wait_for(proc.wait(), STEP)
        assert not any(alive(pid) for pid in pids)
        await proc.destroy()
        await proc.destroy()  # idempotent
        assert not any(d.exists() for d in proc.cgroup.dirs.values())

    run(tmp_path, test, shells=shells)


def test_destroy_completes_when_a_descriptor_was_closed_elsewhere(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        proc, runtime = await r.launch()
        assert await runtime.call("counter") == 1
        os.close(proc.stdout_fd)  # as a careless owner might
        await proc.destroy()
        assert proc.cgroup is not None
        assert not any(d.exists() for d in proc.cgroup.dirs.values())

    run(tmp_path, test, shells=shells)


def test_instances_die_with_the_zygote(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        proc, runtime = await r.launch()
        assert await runtime.call("leave_child") == "left"
        assert proc.cgroup is not None
        pids = proc.cgroup.pids()
        if r.shells:  # the pool refilled: the shells waiting die too
            pids += await ready_shells(r.launcher, r.shells)
        assert r.launcher.zygote_pid is not None
        os.kill(r.launcher.zygote_pid, signal.SIGKILL)
        # Blocking on purpose: the launcher must not get to clean up, so that
        # only the kernel's parent-death signal can have killed the instance.
        deadline = time.monotonic() + STEP
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not any(alive(pid) for pid in pids)
        assert await asyncio.wait_for(proc.wait(), STEP) == ExitStatus(None, signal.SIGKILL)
        assert r.launcher.ready_shells() == []
        with pytest.raises(SandboxUnavailable):
            await r.launcher.launch(replace(r.spec, instance_id="i-2"))

    run(tmp_path, test, shells=shells)


WORKER = """
import asyncio, json, pathlib, sys, time
from wuzhao.sandbox.api import SandboxSpec
from wuzhao.sandbox.zygote_launcher import ZygoteLauncher

async def main(state, server_id, code, uid, shells):
    launcher = ZygoteLauncher(state_dir=pathlib.Path(state), server_id=server_id, shells=int(shells))
    await launcher.start()
    spec = SandboxSpec(instance_id="orphan", code_dir=code, uid=int(uid), memory_mb=64, cpu_shares=64)
    proc = await launcher.launch(spec)
    while len(launcher.ready_shells()) < int(shells):
        await asyncio.sleep(0.01)
    pids = {"zygote": launcher.zygote_pid, "instance": proc.pid}
    pids.update({f"shell-{i}": pid for i, pid in enumerate(launcher.ready_shells())})
    print(json.dumps(pids), flush=True)
    await asyncio.sleep(600)

asyncio.run(main(*sys.argv[1:]))
"""


def test_zygote_and_instances_die_with_the_worker(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        server_id = f"{r.server_id}-w"
        args = [str(tmp_path / "w"), server_id, r.spec.code_dir, str(UID), str(shells)]
        with subprocess.Popen([sys.executable, "-c", WORKER, *args], stdout=subprocess.PIPE) as worker:
            assert worker.stdout is not None
            pids = json.loads(worker.stdout.readline())
            assert len(pids) == 2 + shells
            assert all(alive(pid) for pid in pids.values())
            worker.kill()
        deadline = time.monotonic() + STEP
        while any(alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not any(alive(pid) for pid in pids.values())
        # What a dead worker cannot remove, the next start sweeps.
        CgroupTree(f"wuzhao/{server_id}").sweep()

    run(tmp_path, test, shells=shells)


@pytest.mark.parametrize(
    "change",
    [
        {"instance_id": "../escape"},
        {"instance_id": "i-1\n"},
        {"uid": 0},
        {"hostname": "fn\n10.0.0.1 evil"},
    ],
)
def test_specs_that_would_reach_paths_or_files_are_refused(tmp_path: Path, change: dict[str, Any]) -> None:
    async def test(r: Rig) -> None:
        with pytest.raises(ValueError):
            await r.launch(**change)
        groups = [p for d in prefix_dirs(r.server_id) for p in d.iterdir() if p.is_dir()]
        assert groups == []  # refused before anything was made

    run(tmp_path, test)


def test_setup_failure_exits_with_its_own_code(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        if r.shells:
            await ready_shells(r.launcher)
        proc = await r.launcher.launch(replace(r.spec, code_dir=str(tmp_path / "no-such-dir")))
        # A shell that fails hands the spawn back: the zygote forks it, and that child fails the same.
        assert not proc.from_shell
        assert await Runtime(proc).receive() is None
        assert await asyncio.wait_for(proc.wait(), STEP) == ExitStatus(SETUP_FAILED, None)

    run(tmp_path, test, shells=shells)


def test_close_kills_live_instances(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        proc, runtime = await r.launch()
        assert await runtime.call("leave_child") == "left"
        assert proc.cgroup is not None
        pids = proc.cgroup.pids()
        await r.launcher.close()
        assert not any(alive(pid) for pid in pids)

    run(tmp_path, test, shells=shells)


@pytest.mark.parametrize("frozen", [False, True], ids=["running", "frozen"])
def test_start_sweeps_the_leftovers_of_a_crashed_server(tmp_path: Path, frozen: bool) -> None:
    # A server killed with -9 leaves its idle instances frozen: a kill lands only once they thaw.
    async def test(r: Rig) -> None:
        stale = CgroupTree(f"wuzhao/{r.server_id}").create("stale", memory_mb=64, cpu_shares=2, pids_max=4)
        with subprocess.Popen(["sleep", "60"]) as sleeper:
            for procs in stale.procs_files:
                Path(procs).write_text(str(sleeper.pid))
            if frozen:
                stale.freeze()
            # A second launcher with the same server id plays the restarted server.
            second = ZygoteLauncher(state_dir=tmp_path / "state2", server_id=r.server_id)
            await second.start()
            try:
                assert sleeper.wait(STEP) == -signal.SIGKILL
                assert not any(d.exists() for d in stale.dirs.values())
            finally:
                await second.close()

    run(tmp_path, test)


def test_without_isolation_the_process_model_still_holds(tmp_path: Path) -> None:
    async def test(r: Rig) -> None:
        proc, runtime = await r.launch()
        seen = await runtime.call("view")
        assert seen["env"] == {"GREETING": "hi", "PATH": "/usr/bin:/bin"}
        assert seen["fds"] == [0, 1, 2, 3]
        assert seen["cwd"] == r.spec.code_dir
        assert seen["pid"] == proc.pid

        proc, runtime = await r.launch(instance_id="i-2")
        assert await runtime.call("leave_child") == "left"
        assert proc.cgroup is not None
        pids = proc.cgroup.pids()
        assert len(pids) == 2
        proc.kill()
        await asyncio.wait_for(proc.wait(), STEP)
        deadline = time.monotonic() + STEP
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert not any(alive(pid) for pid in pids)

    run(tmp_path, test, isolate=False)
