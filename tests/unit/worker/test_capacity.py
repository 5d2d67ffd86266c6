"""NodeCapacity: quotas, the memory budget and fairness, over real pools of stand-in instances."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from wuzhao.domain.functions import FunctionConfig
from wuzhao.domain.instances import InstanceState
from wuzhao.domain.versions import Executable
from wuzhao.errors import QuotaExceeded
from wuzhao.store.api import NamespaceRecord
from wuzhao.worker.capacity import NodeCapacity
from wuzhao.worker.pool import FunctionPool

_ids = itertools.count()


class Stub:
    """Stands in for an instance: the capacity reads only id, idle_since, target and state."""

    def __init__(self, target: Executable, idle_since: float = 0.0) -> None:
        self.id = f"i{next(_ids)}"
        self.target = target
        self.idle_since = idle_since
        self.state = InstanceState.IDLE


def target(namespace: str, name: str, memory_mb: int = 128) -> Executable:
    return Executable(namespace, name, "$LATEST", 1, FunctionConfig(memory_mb=memory_mb), "ab" * 32)


def pool_of(executable: Executable, *, busy: int = 0, idle: list[float] = ()) -> FunctionPool:
    async def start(target: Executable, invocation_id: str | None) -> Any:
        raise AssertionError("not started in these tests")

    pool = FunctionPool(executable, start=start, stop=lambda instance: None, max_concurrency=10)
    pool.busy = {Stub(executable) for _ in range(busy)}  # type: ignore[misc]
    pool.idle = [Stub(executable, since) for since in idle]  # type: ignore[misc]
    return pool


def capacity(
    pools: list[FunctionPool], budget: int, **quotas: NamespaceRecord
) -> tuple[NodeCapacity, list[Any]]:
    stopped: list[Any] = []
    node = NodeCapacity(
        pools=lambda: pools,
        quotas=lambda ns: quotas.get(ns, NamespaceRecord(ns, 0.0)),
        node_memory_mb=budget,
        stop=stopped.append,
    )
    return node, stopped


def test_room_left_admits_and_a_full_node_evicts_the_least_recently_used_idle() -> None:
    a = pool_of(target("a", "f"), busy=1, idle=[20.0, 10.0])
    node, stopped = capacity([a], budget=512)
    assert node.admit(target("a", "g")) is True and stopped == []  # 384 + 128 fits 512
    node.node_memory_mb = 384
    assert node.admit(target("a", "g")) is True
    assert [s.idle_since for s in stopped] == [10.0]  # the longest idle went


def test_a_full_node_with_nothing_idle_refuses_without_stopping_anything() -> None:
    node, stopped = capacity([pool_of(target("a", "f"), busy=3)], budget=384)
    assert node.admit(target("a", "g")) is False
    assert stopped == []


def test_a_quota_that_can_never_fit_is_refused_at_once() -> None:
    pools = [pool_of(target("a", "f"), busy=1)]
    node, _ = capacity(pools, budget=4096, a=NamespaceRecord("a", 0.0, max_instances=1))
    with pytest.raises(QuotaExceeded):
        node.admit(target("a", "g"))


def test_while_another_namespace_waits_a_namespace_over_its_share_yields() -> None:
    async def scenario() -> None:
        pools = [pool_of(target("a", "f"), busy=2, idle=[1.0])]  # a holds 384 of 512
        node, stopped = capacity(pools, budget=512)
        waiting = asyncio.ensure_future(node.wait(target("b", "g"), time.monotonic() + 5))
        await asyncio.sleep(0)
        assert node.admit(target("a", "h")) is False  # b waits: a is over half the node
        assert stopped == []
        assert node.admit(target("b", "g")) is True  # b fits its half (128 free)
        pools.append(pool_of(target("b", "g"), busy=1))  # b's instance now runs: 512 of 512 used
        node.freed()
        await waiting
        assert node.admit(target("a", "h")) is True  # nobody waits now: a may grow again
        assert len(stopped) == 1  # ...stopping its own idle instance to fit

    asyncio.run(scenario())
