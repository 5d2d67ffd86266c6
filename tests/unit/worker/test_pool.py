import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from wuzhao.domain.functions import FunctionConfig
from wuzhao.domain.instances import InstanceState, can_transition
from wuzhao.domain.versions import Executable
from wuzhao.errors import Throttled
from wuzhao.worker.pool import FunctionPool, PoolRetired

RECORD = Executable("default", "hello", "$LATEST", 1, FunctionConfig(), "ab" * 32)
_ids = itertools.count(1)


class FakeInstance:
    """Just what the pool touches; moves are checked against the real transition table."""

    def __init__(self) -> None:
        self.id = f"i{next(_ids)}"
        self.state = InstanceState.STARTING
        self.idle_since = 0.0
        self.moves: list[InstanceState] = []

    def move(self, new: InstanceState) -> None:
        assert can_transition(self.state, new), f"{self.state} -> {new}"
        self.state = new
        self.moves.append(new)
        if new is InstanceState.IDLE:
            self.idle_since = asyncio.get_running_loop().time()

    def __repr__(self) -> str:
        return self.id


@dataclass
class Lifecycle:
    """Fake start and stop: records calls; a start can be held open or made to fail."""

    started: list[FakeInstance] = field(default_factory=list)
    stopped: list[FakeInstance] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    gate: asyncio.Event | None = None
    failures: list[BaseException] = field(default_factory=list)

    async def start(self, record: Executable, invocation_id: str) -> Any:
        assert record is RECORD
        self.calls.append(invocation_id)
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)
        instance = FakeInstance()
        self.started.append(instance)
        return instance

    def stop(self, instance: Any) -> None:
        instance.move(InstanceState.STOPPED)
        self.stopped.append(instance)


MakePool = Callable[..., tuple[FunctionPool, Lifecycle]]


@pytest.fixture
def make_pool() -> MakePool:
    def make(max_concurrency: int = 10) -> tuple[FunctionPool, Lifecycle]:
        life = Lifecycle()
        pool = FunctionPool(RECORD, start=life.start, stop=life.stop, max_concurrency=max_concurrency)
        return pool, life

    return make


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_cold_start_then_lifo_reuse(make_pool: MakePool) -> None:
    async def main() -> None:
        pool, life = make_pool()
        got = [await pool.acquire(f"c{n}", wait_s=1) for n in range(3)]
        assert [cold for _, cold in got] == [True, True, True]
        assert life.calls == ["c0", "c1", "c2"]
        a, b, c = (instance for instance, _ in got)
        assert pool.busy == {a, b, c}
        for instance in (a, b, c):
            pool.release(instance, healthy=True)
        assert pool.idle == [a, b, c]
        assert all(i.state is InstanceState.IDLE for i in (a, b, c))
        # most recently used first, so the others can go cold and expire
        assert await pool.acquire("w1", wait_s=1) == (c, False)
        assert await pool.acquire("w2", wait_s=1) == (b, False)
        assert c.state is InstanceState.BUSY
        assert pool.idle == [a]
        assert len(life.started) == 3
        assert life.stopped == []

    asyncio.run(main())


def test_starts_only_while_under_the_limit(make_pool: MakePool) -> None:
    async def main() -> None:
        pool, life = make_pool(max_concurrency=2)
        life.gate = asyncio.Event()
        first = asyncio.ensure_future(pool.acquire("a", wait_s=5))
        second = asyncio.ensure_future(pool.acquire("b", wait_s=5))
        third = asyncio.ensure_future(pool.acquire("c", wait_s=5))
        await settle()
        assert pool.starting == 2  # starting instances count against the limit
        assert life.calls == ["a", "b"]
        assert not third.done()
        life.gate.set()
        (one, cold1), (_two, cold2) = await first, await second
        assert cold1 and cold2 and pool.starting == 0
        await settle()
        assert not third.done()  # still at the limit: two busy
        pool.release(one, healthy=True)
        assert await asyncio.wait_for(third, 5) == (one, False)
        assert len(life.started) == 2

    asyncio.run(main())


@pytest.mark.parametrize("wait_s", [0.0, 0.05])
def test_at_the_limit_a_call_waits_then_is_throttled(make_pool: MakePool, wait_s: float) -> None:
    async def main() -> None:
        pool, life = make_pool(max_concurrency=1)
        busy, _ = await pool.acquire("a", wait_s=1)
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(Throttled) as info:
            await pool.acquire("b", wait_s=wait_s)
        waited = loop.time() - began
        assert wait_s <= waited + 0.01 and waited < wait_s + 1
        assert "concurrency limit (1)" in info.value.message
        assert life.calls == ["a"]
        # the throttled call left nothing behind: a release still lands in idle
        pool.release(busy, healthy=True)
        assert pool.idle == [busy]
        assert await pool.acquire("c", wait_s=0) == (busy, False)

    asyncio.run(main())


def test_a_release_hands_the_instance_to_a_waiter(make_pool: MakePool) -> None:
    async def main() -> None:
        pool, life = make_pool(max_concurrency=1)
        instance, _ = await pool.acquire("a", wait_s=1)
        waiting = asyncio.ensure_future(pool.acquire("b", wait_s=5))
        await settle()
        assert not waiting.done()
        pool.release(instance, healthy=True)
        assert await asyncio.wait_for(waiting, 5) == (instance, False)
        assert instance.state is InstanceState.BUSY
        assert life.calls == ["a"]

    asyncio.run(main())


def test_waiters_are_served_in_turn(make_pool: MakePool) -> None:
    async def main() -> None:
        pool, _life = make_pool(max_concurrency=1)
        instance, _ = await pool.acquire("a", wait_s=1)
        waiters = [asyncio.ensure_future(pool.acquire(f"w{n}", wait_s=5)) for n in range(3)]
        await settle()
        for n, waiter in enumerate(waiters):
            pool.release(instance, healthy=True)
            got, cold = await asyncio.wait_for(waiter, 5)
            assert (got, cold) == (instance, False)
            assert all(not w.done() for w in waiters[n + 1 :])

    asyncio.run(main())


def test_an_unhealthy_release_stops_the_instance_and_a_waiter_starts_anew(make_pool: MakePool) -> None:
    async def main() -> None:
        pool, life = make_pool(max_concurrency=1)
        broken, _ = await pool.acquire("a", wait_s=1)
        waiting = asyncio.ensure_future(pool.acquire("b", wait_s=5))
        await settle()
        pool.release(broken, healthy=False)
        assert life.stopped == [broken] and broken.state is InstanceState.STOPPED
        fresh, cold = await asyncio.wait_for(waiting, 5)
        assert cold is True and fresh is not broken
        assert pool.idle == [] and pool.busy == {fresh}

    asyncio.run(main())


def test_retire_stops_idle_and_wakes_waiters_with_pool_retired(make_pool: MakePool) -> None:
    async def main() -> None:
        pool, life = make_pool(max_concurrency=2)
        a, _ = await pool.acquire("a", wait_s=1)
        b, _ = await pool.acquire("b", wait_s=1)
        waiting = asyncio.ensure_future(pool.acquire("e", wait_s=5))
        await settle()
        pool.release(a, healthy=True)  # a goes idle ... and the waiter would take it
        pool.retire()  # ... but the retire comes first
        assert life.stopped == [a]
        assert pool.idle == []
        with pytest.raises(PoolRetired):
            await asyncio.wait_for(waiting, 5)
        with pytest.raises(PoolRetired):
            await pool.acquire("f", wait_s=5)
        # the busy one finishes its call, then stops instead of going idle
        pool.release(b, healthy=True)
        assert life.stopped == [a, b]
        assert b.state is InstanceState.STOPPED
        assert pool.empty

    asyncio.run(main())


def test_retire_wakes_every_waiter(make_pool: MakePool) -> None:
    async def main() -> None:
        pool, _life = make_pool(max_concurrency=1)
        await pool.acquire("a", wait_s=1)
        waiters = [asyncio.ensure_future(pool.acquire(f"w{n}", wait_s=30)) for n in range(5)]
        await settle()
        pool.retire()
        results = await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), 5)
        assert all(isinstance(r, PoolRetired) for r in results)

    asyncio.run(main())


def test_a_start_failure_frees_its_slot_and_wakes_a_waiter(make_pool: MakePool) -> None:
    async def main() -> None:
        pool, life = make_pool(max_concurrency=1)
        life.gate = asyncio.Event()
        life.failures.append(RuntimeError("sandbox failed"))
        first = asyncio.ensure_future(pool.acquire("a", wait_s=5))
        await settle()
        second = asyncio.ensure_future(pool.acquire("b", wait_s=5))
        await settle()
        assert pool.starting == 1 and not second.done()  # waits: the start counts
        life.gate.set()
        with pytest.raises(RuntimeError, match="sandbox failed"):
            await first
        instance, cold = await asyncio.wait_for(second, 5)
        assert cold is True and life.calls == ["a", "b"]
        assert pool.starting == 0
        assert pool.busy == {instance}

    asyncio.run(main())


def test_a_start_failure_without_waiters_leaves_the_pool_empty(make_pool: MakePool) -> None:
    async def main() -> None:
        pool, life = make_pool(max_concurrency=1)
        life.failures.append(OSError("no uids"))
        with pytest.raises(OSError):
            await pool.acquire("a", wait_s=1)
        assert pool.starting == 0 and pool.empty
        _, cold = await pool.acquire("b", wait_s=0)  # the slot is free again at once
        assert cold is True

    asyncio.run(main())


def test_take_expired_removes_only_the_named_idle_instances(make_pool: MakePool) -> None:
    async def main() -> None:
        pool, _life = make_pool()
        instances = [(await pool.acquire(str(n), wait_s=1))[0] for n in range(3)]
        for instance in instances:
            pool.release(instance, healthy=True)
        a, b, c = instances
        assert pool.take_expired({a.id, c.id, "unknown"}) == [a, c]
        assert pool.idle == [b]
        assert pool.take_expired(set()) == []
        assert not pool.empty
        assert pool.take_expired({b.id}) == [b]
        assert pool.empty

    asyncio.run(main())


class FakeCapacity:
    """Stands in for the node: refuses until ``room`` is set, records what it was asked."""

    def __init__(self, room: bool) -> None:
        self.room = room
        self.asked = 0
        self.freed = asyncio.Event()

    def admit(self, target: Executable) -> bool:
        self.asked += 1
        return self.room

    async def wait(self, target: Executable, deadline: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.freed.wait(), max(0.0, deadline - time.monotonic()))


def test_a_full_node_makes_the_call_wait_then_throttles() -> None:
    async def scenario() -> None:
        life = Lifecycle()
        capacity = FakeCapacity(room=False)
        pool = FunctionPool(RECORD, start=life.start, stop=life.stop, max_concurrency=10, capacity=capacity)
        began = time.monotonic()
        with pytest.raises(Throttled, match="no memory free"):
            await pool.acquire("a", wait_s=0.2)
        assert time.monotonic() - began >= 0.19
        assert life.started == [] and pool.starting == 0

    asyncio.run(scenario())


def test_room_freed_while_waiting_lets_the_call_start() -> None:
    async def scenario() -> None:
        life = Lifecycle()
        capacity = FakeCapacity(room=False)
        pool = FunctionPool(RECORD, start=life.start, stop=life.stop, max_concurrency=10, capacity=capacity)
        waiting = asyncio.ensure_future(pool.acquire("a", wait_s=5))
        await settle()
        assert not waiting.done()
        capacity.room = True
        capacity.freed.set()
        instance, cold = await asyncio.wait_for(waiting, 2)
        assert cold and instance is life.started[0]
        assert capacity.asked >= 2

    asyncio.run(scenario())
