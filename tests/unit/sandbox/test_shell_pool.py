"""The launcher's side of the shells, with a fake zygote and fake cgroups: what it asks for, and when."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, cast

from wuzhao.sandbox.cgroups import CgroupTree
from wuzhao.sandbox.shell_pool import MAX_FAILURES, REFILL_DELAY, ShellPool
from wuzhao.sandbox.zygote_control import ZygoteControl


class FakeZygote:
    def __init__(self) -> None:
        self.lost = False
        self.asked: list[dict[str, Any]] = []

    async def send(self, data: bytes, fds: list[int]) -> None:
        assert fds == []
        self.asked.append(json.loads(data))


class FakeCgroup:
    def __init__(self, name: str) -> None:
        self.name = name
        self.removed = False
        self.dirs: dict[str, Any] = {"memory": name}

    @property
    def tasks_files(self) -> list[str]:
        return [f"/cg/{controller}/{self.name}/tasks" for controller in ("memory", "pids")]

    def try_remove(self) -> bool:
        self.removed = True
        return True


class FakeTree:
    def __init__(self) -> None:
        self.made: dict[str, FakeCgroup] = {}

    def make(self, name: str) -> FakeCgroup:
        assert name not in self.made
        self.made[name] = FakeCgroup(name)
        return self.made[name]


def run(test: Callable[[ShellPool, FakeZygote, FakeTree], Awaitable[None]], size: int = 2) -> None:
    async def main() -> None:
        zygote, tree = FakeZygote(), FakeTree()
        pool = ShellPool(cast(ZygoteControl, zygote), cast(CgroupTree, tree), size)
        try:
            await test(pool, zygote, tree)
        finally:
            await pool.close()

    asyncio.run(main())


async def settle(seconds: float = 0.0) -> None:
    await asyncio.sleep(seconds)
    for _ in range(10):  # the tasks the timers started, and their hops to a thread
        await asyncio.sleep(0.001)


def test_start_asks_for_a_full_pool_each_in_a_cgroup_of_its_own() -> None:
    async def test(pool: ShellPool, zygote: FakeZygote, tree: FakeTree) -> None:
        pool.start()
        await settle()
        assert [m["op"] for m in zygote.asked] == ["shell", "shell"]
        names = [m["id"] for m in zygote.asked]
        assert len(set(names)) == 2 and all("." in name for name in names)  # never an instance id
        assert [m["cgroups"] for m in zygote.asked] == [tree.made[name].tasks_files for name in names]
        assert pool.ready == [] and pool.take() is None  # asked for is not ready

    run(test)


def test_a_ready_shell_is_taken_once_and_replaced_after_the_delay() -> None:
    async def test(pool: ShellPool, zygote: FakeZygote, tree: FakeTree) -> None:
        pool.start()
        await settle()
        first, second = (m["id"] for m in zygote.asked)
        pool.on_ready(first, 101)
        assert pool.ready == [101]
        shell = pool.take()
        assert shell is not None and (shell.name, shell.pid) == (first, 101)
        assert shell.cgroup is tree.made[first]
        assert pool.take() is None and pool.ready == []  # the other is not ready yet
        await asyncio.sleep(REFILL_DELAY / 2)
        assert len(zygote.asked) == 2  # not at once: the instance just started has the CPU
        await settle(REFILL_DELAY * 3)
        assert len(zygote.asked) == 3 and zygote.asked[2]["id"] not in (first, second)
        pool.on_ready(first, 102)  # a stale word about a shell already taken changes nothing
        assert pool.ready == []

    run(test)


def test_a_lost_shell_is_replaced_and_its_cgroup_removed() -> None:
    async def test(pool: ShellPool, zygote: FakeZygote, tree: FakeTree) -> None:
        pool.start()
        await settle()
        name = zygote.asked[0]["id"]
        pool.on_ready(name, 101)
        pool.on_lost(name)
        await settle(REFILL_DELAY * 3)
        assert pool.ready == [] and tree.made[name].removed
        assert len(zygote.asked) == 3

    run(test)


def test_shells_that_keep_failing_stop_the_pool() -> None:
    async def test(pool: ShellPool, zygote: FakeZygote, tree: FakeTree) -> None:
        pool.start()
        await settle()
        for _ in range(MAX_FAILURES):
            pool.on_lost(zygote.asked[-1]["id"])  # never ready
            await settle(REFILL_DELAY * 3)
        assert len(zygote.asked) == MAX_FAILURES  # no more asking: instances are forked directly
        assert all(cgroup.removed for cgroup in tree.made.values())

    run(test, size=1)


def test_a_shell_ready_in_between_forgives_earlier_failures() -> None:
    async def test(pool: ShellPool, zygote: FakeZygote, tree: FakeTree) -> None:
        pool.start()
        await settle()
        for _ in range(MAX_FAILURES - 1):
            pool.on_lost(zygote.asked[-1]["id"])
            await settle(REFILL_DELAY * 3)
        pool.on_ready(zygote.asked[-1]["id"], 7)
        pool.take()
        await settle(REFILL_DELAY * 3)
        for _ in range(MAX_FAILURES - 1):
            pool.on_lost(zygote.asked[-1]["id"])
            await settle(REFILL_DELAY * 3)
        assert zygote.asked[-1]["id"] in tree.made and not tree.made[zygote.asked[-1]["id"]].removed

    run(test, size=1)


def test_close_removes_the_cgroups_of_the_shells_not_taken_and_asks_no_more() -> None:
    async def test(pool: ShellPool, zygote: FakeZygote, tree: FakeTree) -> None:
        pool.start()
        await settle()
        taken_name = zygote.asked[0]["id"]
        pool.on_ready(taken_name, 101)
        taken = pool.take()
        await pool.close()
        await settle(REFILL_DELAY * 3)
        assert len(zygote.asked) == 2
        assert taken is not None and not tree.made[taken_name].removed  # the instance's now
        assert tree.made[zygote.asked[1]["id"]].removed

    run(test)


def test_a_lost_zygote_is_asked_nothing() -> None:
    async def test(pool: ShellPool, zygote: FakeZygote, tree: FakeTree) -> None:
        zygote.lost = True
        pool.start()
        await settle()
        assert zygote.asked == [] and tree.made == {}

    run(test)
