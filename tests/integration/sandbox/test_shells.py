"""The zygote's shells: children prepared before they have a function (``wuzhao.sandbox.shell_pool``).

That an instance made from a shell is isolated like a forked one is checked by
``test_launcher`` and ``test_hardening``, which run their guarantees both
ways. Here: the pool itself (it fills, refills, never hands a shell out
twice), that a shell holds nothing of another function, and that a shell
that fails leaves its spawn to the zygote.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import time
from pathlib import Path

import pytest
from tests.integration.sandbox.test_launcher import (
    STEP,
    UNAVAILABLE,
    Rig,
    Runtime,
    alive,
    read_pipe,
    ready_shells,
    run,
)

from wuzhao.sandbox.zygote_launcher import ZygoteProcess

pytestmark = [pytest.mark.sandbox, pytest.mark.skipif(bool(UNAVAILABLE), reason=UNAVAILABLE)]


def occurrences(pid: int, needle: bytes) -> int:
    """How many times ``needle`` is in the memory of process ``pid`` (read from the host, as root)."""
    found = 0
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            low, high = (int(x, 16) for x in fields[0].split("-"))
            if "r" not in fields[1] or fields[-1] in ("[vvar]", "[vsyscall]"):
                continue
            try:
                mem.seek(low)
                found += mem.read(high - low).count(needle)
            except OSError:  # a mapping that cannot be read (a guard page)
                continue
    return found


def descriptors(pid: int) -> dict[int, str]:
    fds = Path(f"/proc/{pid}/fd")
    return {int(fd.name): os.readlink(fd) for fd in fds.iterdir()}


def memory_limit(proc: ZygoteProcess) -> int:
    assert proc.cgroup is not None
    return int((proc.cgroup.dirs["memory"] / "memory.limit_in_bytes").read_text())


def test_the_pool_fills_then_refills_with_new_shells(tmp_path: Path) -> None:
    async def test(r: Rig) -> None:
        first = await ready_shells(r.launcher, 2)
        proc, runtime = await r.launch()
        assert proc.pid in first
        # The shell's cgroup is the instance's now, with the instance's limits.
        assert proc.cgroup is not None and proc.pid in proc.cgroup.pids()
        assert memory_limit(proc) == 128 * 1024 * 1024
        assert await runtime.call("counter") == 1
        refilled = await ready_shells(r.launcher, 2)
        assert proc.pid not in refilled
        assert len(set(first) & set(refilled)) == 1  # the one not taken, still waiting

    run(tmp_path, test, shells=2)


def test_two_functions_never_share_a_shell(tmp_path: Path) -> None:
    async def test(r: Rig) -> None:
        used: list[int] = []
        namespaces: set[str] = set()
        for n in range(4):
            proc, runtime = await r.launch(instance_id=f"i-{n}", uid=r.spec.uid + n)
            assert await runtime.call("counter") == 1
            used.append(proc.pid)
            namespaces.add(os.readlink(f"/proc/{proc.pid}/ns/pid"))
            namespaces.add(os.readlink(f"/proc/{proc.pid}/ns/mnt"))
            # No shell still waiting is one that made an instance.
            assert not set(r.launcher.ready_shells()) & set(used)
        assert len(set(used)) == 4
        assert len(namespaces) == 8

    run(tmp_path, test, shells=2)


def test_a_shell_holds_nothing_of_another_function(tmp_path: Path) -> None:
    async def test(r: Rig) -> None:
        secret = secrets.token_hex(16)
        proc, runtime = await r.launch(env={"SECRET": secret})
        assert await runtime.call("counter") == 1
        assert occurrences(proc.pid, secret.encode()) > 0  # the search finds what is there
        # Shells made after that instance, and the zygote they are forked from: none has its
        # environment (the zygote never reads a request), nor any descriptor but their own.
        waiting = await ready_shells(r.launcher, 2)
        assert r.launcher.zygote_pid is not None
        for pid in (r.launcher.zygote_pid, *waiting):
            assert occurrences(pid, secret.encode()) == 0, pid
        for pid in waiting:
            fds = descriptors(pid)
            assert sorted(fds) == [0, 1, 2, max(fds)]
            assert fds[0] == fds[1] == "/dev/null"
            assert fds[max(fds)].startswith("socket:")  # its own, to the zygote
        # Nor has the next function's instance, made from one of them.
        other, runtime = await r.launch(instance_id="i-2", uid=r.spec.uid + 1)
        assert other.pid in waiting
        assert await runtime.call("counter") == 1
        assert occurrences(other.pid, secret.encode()) == 0

    run(tmp_path, test, shells=2)


def test_a_shell_that_died_leaves_its_spawn_to_the_zygote(tmp_path: Path) -> None:
    async def test(r: Rig) -> None:
        waiting = await ready_shells(r.launcher, 2)
        for pid in waiting:
            os.kill(pid, signal.SIGKILL)
        # At once, before the launcher hears of it: it still takes one of them.
        proc = await r.launcher.launch(r.spec)
        assert not proc.from_shell and proc.pid not in waiting
        assert await Runtime(proc).call("hello", {"name": "ada"}) == {"hello": "ada"}
        assert read_pipe(proc.stdout_fd) == b"hello from ada\n"
        # The pool replaces the dead ones.
        refilled = await ready_shells(r.launcher, 2)
        assert not set(refilled) & set(waiting)

    run(tmp_path, test, shells=2)


def test_a_shell_that_does_not_take_its_spawn_in_time_is_killed_and_the_zygote_forks(tmp_path: Path) -> None:
    async def test(r: Rig) -> None:
        waiting = await ready_shells(r.launcher, 2)
        for pid in waiting:
            os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        proc = await asyncio.wait_for(r.launcher.launch(r.spec), STEP)
        assert 1.5 < time.monotonic() - started < STEP  # the zygote's deadline, 2 s
        assert not proc.from_shell and proc.pid not in waiting
        assert await Runtime(proc).call("counter") == 1
        # The one handed the spawn was killed; the other is still there (stopped), until close.
        deadline = time.monotonic() + STEP
        while all(alive(pid) for pid in waiting) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert [alive(pid) for pid in waiting].count(True) == 1

    run(tmp_path, test, shells=2)


def test_a_shell_is_the_function_s_only_once_it_has_one(tmp_path: Path) -> None:
    async def test(r: Rig) -> None:
        waiting = await ready_shells(r.launcher, 2)
        for pid in waiting:
            # Root of the host, in namespaces of its own but the user's, its root not yet pivoted to.
            status = Path(f"/proc/{pid}/status").read_text()
            assert "Uid:\t0\t0\t0\t0" in status
            assert os.readlink(f"/proc/{pid}/ns/user") == os.readlink("/proc/self/ns/user")
            for ns in ("pid", "mnt", "net", "ipc", "uts", "cgroup"):
                assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
            # Its cgroups: one the launcher made for it, with no limit yet.
            cgroup = Path(f"/proc/{pid}/cgroup").read_text()
            assert f"memory:/wuzhao/{r.server_id}/shell." in cgroup
            assert "Seccomp:\t0" in status
        proc, runtime = await r.launch()
        assert proc.pid in waiting
        assert await runtime.call("counter") == 1
        status = Path(f"/proc/{proc.pid}/status").read_text()
        assert f"Uid:\t{r.spec.uid}\t{r.spec.uid}" in status and "Seccomp:\t2" in status
        assert os.readlink(f"/proc/{proc.pid}/ns/user") != os.readlink("/proc/self/ns/user")
        assert memory_limit(proc) == 128 * 1024 * 1024

    run(tmp_path, test, shells=2)


def test_an_outbound_instance_from_a_shell_gets_its_network(tmp_path: Path) -> None:
    if shutil.which("slirp4netns") is None:
        pytest.skip("slirp4netns is not installed")

    async def test(r: Rig) -> None:
        proc, runtime = await r.launch(network="outbound")
        assert proc.slirp is not None
        seen = await runtime.call("view")
        assert sorted(seen["interfaces"]) == ["lo", "tap0"]
        await proc.destroy()

    run(tmp_path, test, shells=2)


def test_close_leaves_no_shell_and_no_shell_cgroup(tmp_path: Path) -> None:
    # The rig checks after close that no cgroup is left under the server's prefix.
    async def test(r: Rig) -> None:
        await ready_shells(r.launcher, 2)
        proc, runtime = await r.launch()
        assert await runtime.call("counter") == 1
        waiting = await ready_shells(r.launcher, 2)
        await r.launcher.close()
        assert not any(alive(pid) for pid in (*waiting, proc.pid))
        assert r.launcher.ready_shells() == []

    run(tmp_path, test, shells=2)


def test_without_a_pool_every_instance_is_forked(tmp_path: Path) -> None:
    async def test(r: Rig) -> None:
        await asyncio.sleep(0.2)  # a pool would have filled by now
        assert r.launcher.ready_shells() == []
        proc, runtime = await r.launch()
        assert not proc.from_shell
        assert await runtime.call("counter") == 1
        assert memory_limit(proc) == 128 * 1024 * 1024

    run(tmp_path, test, shells=0)
