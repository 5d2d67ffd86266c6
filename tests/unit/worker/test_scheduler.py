"""The scheduler over the real queue and store, with a clock of its own: what it enqueues, once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.unit.control.test_triggers import Clock, main_code

from wuzhao.config import Settings
from wuzhao.control.functions import FunctionRegistry
from wuzhao.control.packages import CodePackages
from wuzhao.control.triggers import Triggers
from wuzhao.control.versions import Versions
from wuzhao.domain.functions import FunctionUpdate
from wuzhao.domain.triggers import CronTrigger
from wuzhao.queue.api import AsyncCall
from wuzhao.queue.sqlite import SqliteQueue
from wuzhao.store.sqlite import SqliteStore
from wuzhao.worker.dispatcher import lease_seconds
from wuzhao.worker.scheduler import LONGEST_TIMEOUT_S, MAX_SLEEP_S, RETRY_S, Scheduler


@dataclass
class Node:
    """One process's worth: store, queue, triggers and a scheduler, on the same files each start."""

    scheduler: Scheduler
    triggers: Triggers
    registry: FunctionRegistry
    versions: Versions
    queue: SqliteQueue
    clock: Clock
    settings: Settings
    wakes: list[None]

    async def put(self, name: str, schedule: str, **changes: Any) -> None:
        fields: dict[str, Any] = {"function": "job", "schedule": schedule, **changes}
        await self.triggers.put("default", name, CronTrigger(**fields))

    async def calls(self) -> list[AsyncCall]:
        """Every call in the queue, oldest first (leased, so each is seen once)."""
        leased = await self.queue.lease(self.clock.now + 10**9, 1000, consumer="test")
        return [lease.call for lease in leased]


OpenNode = Callable[..., AbstractAsyncContextManager[Node]]


@pytest.fixture
def open_node(tmp_path: Path) -> OpenNode:
    @asynccontextmanager
    async def open_(now: float = 1000.0, **settings: Any) -> AsyncIterator[Node]:
        config = Settings.load({}, data_dir=tmp_path, **settings)
        store = SqliteStore(tmp_path / "wuzhao.db")
        queue = SqliteQueue(tmp_path / "queue.db")
        await store.open()
        await queue.open()
        clock = Clock(now)
        registry = FunctionRegistry(
            store, CodePackages(tmp_path / "data", max_bytes=1 << 20, max_unpacked_bytes=1 << 22), clock=clock
        )
        await registry.load()
        versions = Versions(store, registry, clock=clock)
        await versions.load()
        triggers = Triggers(store, registry, versions, clock=clock)
        await triggers.load()
        wakes: list[None] = []
        scheduler = Scheduler(
            triggers, queue, config, resolve=versions.resolve, wake=lambda: wakes.append(None), clock=clock
        )
        try:
            yield Node(scheduler, triggers, registry, versions, queue, clock, config, wakes)
        finally:
            await queue.close()
            await store.close()

    return open_


async def deploy(node: Node, name: str = "job", timeout_s: int = 30) -> None:
    await node.registry.put("default", name, FunctionUpdate(code=main_code(), timeout_s=timeout_s))


def times(calls: list[AsyncCall]) -> list[str]:
    return [json.loads(call.event)["time"][11:19] for call in calls]


def test_each_tick_is_one_asynchronous_call(open_node: OpenNode) -> None:
    async def main() -> None:
        async with open_node(now=1000.0) as node:
            await deploy(node, timeout_s=12)
            await node.put("every-minute", "rate(1 minute)")
            assert await node.scheduler.run_once() == 1060  # nothing yet: the next tick
            assert await node.calls() == []
            node.clock.now = 1060.05
            assert await node.scheduler.run_once() == 1120
            (call,) = await node.calls()
            assert (call.namespace, call.function, call.qualifier) == ("default", "job", None)
            assert call.idempotency_key == "cron:every-minute:1060"
            assert call.origin == {
                "chain": call.id,
                "hop": 0,
                "counts": {"job": 1},
                "trigger": "every-minute",
            }
            assert call.lease_s == lease_seconds(node.settings, 12)
            assert call.enqueued_at == 1060.05
            event = json.loads(call.event)
            assert (event["time"], event["detail"], event["source"]) == (
                "1970-01-01T00:17:40Z",
                {},
                "wuzhao.scheduler",
            )
            assert event["resources"] == ["wuzhao:trigger:default:every-minute"]
            assert node.triggers.last_tick("default", "every-minute") == 1060
            assert len(node.wakes) == 1  # the dispatcher looks at once
            node.clock.now = 1061.0
            assert await node.scheduler.run_once() == 1120  # the same tick is not fired again
            assert await node.calls() == []
            assert len(node.wakes) == 1

    asyncio.run(main())


def test_a_crash_between_enqueue_and_record_makes_no_second_call(
    open_node: OpenNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        async with open_node(now=1000.0) as node:
            await deploy(node)
            await node.put("tick", "rate(1 minute)")
            node.clock.now = 1060.0

            async def crash(namespace: str, name: str, tick: int) -> None:
                raise RuntimeError("the process died here")

            monkeypatch.setattr(node.triggers, "record_tick", crash)
            assert await node.scheduler.run_once() == 1060.0 + RETRY_S  # enqueued, not recorded
        async with open_node(now=1061.0) as restarted:  # the next start, on the same files
            assert restarted.triggers.last_tick("default", "tick") is None
            assert await restarted.scheduler.run_once() == 1120
            assert restarted.triggers.last_tick("default", "tick") == 1060
            (call,) = await restarted.calls()  # the queue kept the first call of that key
            assert call.idempotency_key == "cron:tick:1060"

    asyncio.run(main())


def test_after_downtime_missed_ticks_are_skipped_or_caught_up_once(open_node: OpenNode) -> None:
    async def main() -> None:
        async with open_node(now=1000.0, cron_grace_s=10.0) as node:
            await deploy(node)
            await node.put("skips", "rate(1 minute)")
            await node.put("catches-up", "rate(1 minute)", missed_ticks="catch_up_one")
            node.clock.now = 1060.0
            await node.scheduler.run_once()
            assert await node.queue.depth() == {("default", "job"): 2}
        # Down from 1060 to 1425: 1120 ... 1360 were missed, 1420 is 5 s late (within the grace).
        async with open_node(now=1425.0, cron_grace_s=10.0) as node:
            await node.scheduler.run_once()
            first = ("cron:skips:1060", "cron:catches-up:1060")  # fired before the downtime
            calls = [call for call in await node.calls() if call.idempotency_key not in first]
            by_trigger: dict[str, list[AsyncCall]] = {}
            for call in calls:
                by_trigger.setdefault(call.origin["trigger"], []).append(call)
            assert times(by_trigger["skips"]) == ["00:23:40"]  # 1420 only
            assert times(by_trigger["catches-up"]) == ["00:22:40", "00:23:40"]  # 1360 stands for all missed
            assert [json.loads(c.event)["detail"] for c in by_trigger["catches-up"]] == [
                {"catchUp": True},
                {},
            ]
            assert node.triggers.last_tick("default", "skips") == 1420

    asyncio.run(main())


def test_the_servers_setting_decides_unless_the_trigger_does(open_node: OpenNode) -> None:
    async def main() -> None:
        async with open_node(now=1000.0, cron_missed_ticks="catch_up_one") as node:
            await deploy(node)
            await node.put("default-policy", "rate(1 minute)")
            await node.put("skips", "rate(1 minute)", missed_ticks="skip")
            node.clock.now = 1300.0  # 1060 ... 1300: 1300 on time, the rest missed
            await node.scheduler.run_once()
            keys = sorted(call.idempotency_key or "" for call in await node.calls())
            assert keys == [
                "cron:default-policy:1240",
                "cron:default-policy:1300",
                "cron:skips:1300",
            ]

    asyncio.run(main())


def test_a_call_whose_qualifier_is_gone_is_enqueued_to_go_dead_visibly(open_node: OpenNode) -> None:
    async def main() -> None:
        async with open_node(now=1000.0) as node:
            await deploy(node)
            await node.versions.publish("default", "job")
            await node.versions.put_alias("default", "job", "live", version=1)
            await node.put("tick", "rate(1 minute)", qualifier="live")
            await node.versions.delete_alias("default", "job", "live")
            node.clock.now = 1060.0
            await node.scheduler.run_once()
            (call,) = await node.calls()
            assert call.qualifier == "live"
            assert call.lease_s == lease_seconds(node.settings, LONGEST_TIMEOUT_S)

    asyncio.run(main())


def test_a_failing_timer_does_not_hold_the_others_back(
    open_node: OpenNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        async with open_node(now=1000.0) as node:
            await deploy(node)
            await node.put("a-broken", "rate(1 minute)")
            await node.put("b-fine", "rate(1 minute)")
            real_enqueue = node.queue.enqueue

            async def enqueue(call: AsyncCall) -> tuple[str, bool]:
                if call.origin["trigger"] == "a-broken":
                    raise OSError("disk full")
                return await real_enqueue(call)

            monkeypatch.setattr(node.queue, "enqueue", enqueue)
            node.clock.now = 1060.0
            assert await node.scheduler.run_once() == 1060.0 + RETRY_S
            assert [call.origin["trigger"] for call in await node.calls()] == ["b-fine"]
            monkeypatch.setattr(node.queue, "enqueue", real_enqueue)
            node.clock.now = 1065.0  # retried: still within the grace
            await node.scheduler.run_once()
            assert [call.idempotency_key for call in await node.calls()] == ["cron:a-broken:1060"]

    asyncio.run(main())


def test_no_timers_sleep_long(open_node: OpenNode) -> None:
    async def main() -> None:
        async with open_node(now=1000.0) as node:
            assert await node.scheduler.run_once() == 1000.0 + MAX_SLEEP_S

    asyncio.run(main())


def test_the_loop_wakes_for_a_new_trigger_and_stops_promptly(tmp_path: Path, open_node: OpenNode) -> None:
    async def main() -> None:
        async with open_node() as node:
            node.scheduler._clock = time.time  # the real clock, for the real loop
            node.clock.now = time.time()
            await deploy(node)
            node.scheduler.start()
            await asyncio.sleep(0.1)  # asleep, with no timer: for up to a minute
            await node.put("fast", "* * * * * *")  # every second; the change wakes the loop
            deadline = time.monotonic() + 5
            while not await node.queue.depth():
                assert time.monotonic() < deadline, "no tick fired"
                await asyncio.sleep(0.05)
            began = time.monotonic()
            await node.scheduler.stop()
            assert time.monotonic() - began < 1

    asyncio.run(main())
