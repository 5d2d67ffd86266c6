"""The dispatcher on the real embedded queue, with a fake worker that only counts and waits."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from wuzhao.config import Settings
from wuzhao.domain import chains
from wuzhao.domain.chains import Chain
from wuzhao.domain.functions import FunctionConfig
from wuzhao.domain.versions import Executable
from wuzhao.errors import FunctionError, NotFound, Throttled, WuzhaoError
from wuzhao.observe.metrics import Metrics
from wuzhao.queue.api import AsyncCall, CallState
from wuzhao.queue.sqlite import SqliteQueue
from wuzhao.worker.dispatcher import Dispatcher
from wuzhao.worker.worker import Outcome

Behaviour = Callable[[str, bytes], Awaitable[bytes]]  # (call id, event) -> result, or raises


@dataclass
class FakeWorker:
    """Runs each attempt as ``behaviour`` says; records how many ran at once."""

    behaviour: Behaviour
    running: collections.Counter[str] = field(default_factory=collections.Counter)
    most: collections.Counter[str] = field(default_factory=collections.Counter)  # by function
    ran: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    chains: dict[str, Chain] = field(default_factory=dict)  # by call id: what each attempt ran in

    async def invoke(
        self,
        target: Executable,
        event: bytes,
        invocation_id: str | None = None,
        *,
        chain: Chain | None = None,
    ) -> Outcome:
        assert invocation_id is not None  # an attempt always runs under its call's id
        assert chain is not None  # and in its call's chain
        self.chains[invocation_id] = chain
        function = target.function
        self.running[function] += 1
        self.most[function] = max(self.most[function], self.running[function])
        self.ran.append(invocation_id)
        try:
            result = await self.behaviour(invocation_id, event)
        except WuzhaoError as error:
            return Outcome(invocation_id, False, 1.0, target.version, error=error)
        except asyncio.CancelledError:
            self.cancelled.append(invocation_id)
            raise
        finally:
            self.running[function] -= 1
        return Outcome(invocation_id, False, 1.0, target.version, result=result)


class CountingQueue(SqliteQueue):
    """The real queue, counting the calls given back unrun."""

    postponed = 0

    async def postpone(self, token: str, *, at: float) -> None:
        type(self).postponed += 1
        await super().postpone(token, at=at)


def functions(**configs: FunctionConfig) -> Callable[[str, str, str | None], Executable]:
    def resolve(namespace: str, function: str, qualifier: str | None) -> Executable:
        if function not in configs:
            raise NotFound(f"function {function!r} does not exist")
        return Executable(namespace, function, "$LATEST", 1, configs[function], "ab" * 32)

    return resolve


def call(call_id: str, function: str = "fn", **changes: Any) -> AsyncCall:
    return AsyncCall(call_id, "default", function, b"{}", time.time(), **changes)


async def until(
    queue: SqliteQueue, ids: list[str], statuses: set[str], timeout: float = 10
) -> list[CallState]:
    deadline = time.monotonic() + timeout
    while True:
        states = [await queue.get(call_id) for call_id in ids]
        if all(state is not None and state.status in statuses for state in states):
            return [state for state in states if state is not None]
        assert time.monotonic() < deadline, [s and s.status for s in states]
        await asyncio.sleep(0.01)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.load({}, data_dir=tmp_path, async_concurrency=8, retry_budget=0.5)


def run(
    settings: Settings,
    behaviour: Behaviour,
    scenario: Callable[[SqliteQueue, Dispatcher, FakeWorker], Awaitable[None]],
    *,
    prepare: Callable[[SqliteQueue], Awaitable[None]] | None = None,
    **configs: FunctionConfig,
) -> FakeWorker:
    """Run ``scenario`` with a started dispatcher; ``prepare`` sets up the queue before it starts."""
    worker = FakeWorker(behaviour)

    async def main() -> None:
        CountingQueue.postponed = 0
        queue = CountingQueue(settings.data_dir / "queue.db")
        await queue.open()
        if prepare is not None:
            await prepare(queue)
        dispatcher = Dispatcher(
            queue,
            worker,
            settings,
            resolve=functions(**configs),
            metrics=Metrics(),
            draw=lambda: 0.5,  # type: ignore[arg-type]
        )
        dispatcher.start()
        try:
            await scenario(queue, dispatcher, worker)
        finally:
            await dispatcher.stop(0.1)
            await queue.close()

    asyncio.run(main())
    return worker


async def slow(call_id: str, event: bytes) -> bytes:
    await asyncio.sleep(0.02)
    return b"1"


def test_attempts_of_a_function_never_pass_its_concurrency(settings: Settings) -> None:
    async def scenario(queue: SqliteQueue, dispatcher: Dispatcher, worker: FakeWorker) -> None:
        ids = [f"c{i}" for i in range(20)]
        for call_id in ids:
            await queue.enqueue(call(call_id))
        dispatcher.wake()
        states = await until(queue, ids, {"succeeded"})
        assert all(len(state.attempts) == 1 for state in states)
        # Leased beyond its room, they waited here: none went back to the queue to be leased again.
        assert CountingQueue.postponed == 0

    worker = run(settings, slow, scenario, fn=FunctionConfig(max_concurrency=3))
    assert worker.most["fn"] == 3
    assert sorted(worker.ran) == sorted(f"c{i}" for i in range(20))


def test_past_the_bound_of_waiting_calls_the_rest_go_back_to_the_queue(settings: Settings) -> None:
    # async_concurrency 8: "a" runs 1 and keeps up to 7 waiting; "b" runs 1, keeps the rest of
    # the bound, and gives the others back.
    async def scenario(queue: SqliteQueue, dispatcher: Dispatcher, worker: FakeWorker) -> None:
        ids = [f"a{i}" for i in range(8)] + [f"b{i}" for i in range(8)]
        for call_id in ids:
            await queue.enqueue(call(call_id, function=call_id[0]))
        dispatcher.wake()
        states = await until(queue, ids, {"succeeded"})
        assert all(len(state.attempts) == 1 for state in states)
        assert CountingQueue.postponed >= 1

    one = FunctionConfig(max_concurrency=1)
    worker = run(settings, slow, scenario, a=one, b=one)
    assert (worker.most["a"], worker.most["b"]) == (1, 1)


def test_retries_are_held_to_the_budget_while_first_attempts_are_not(settings: Settings) -> None:
    # max_concurrency 4, budget 50 %: two retries at once at most.
    retrying: list[int] = []
    seen: set[str] = set()

    async def fails_once(call_id: str, event: bytes) -> bytes:
        retry = call_id in seen
        seen.add(call_id)
        retrying.append(retry)
        try:
            await asyncio.sleep(0.02)
        finally:
            retrying.remove(retry)
        if not retry:
            raise FunctionError("first attempts fail")
        return b"2"

    most_retries = 0

    async def scenario(queue: SqliteQueue, dispatcher: Dispatcher, worker: FakeWorker) -> None:
        nonlocal most_retries
        ids = [f"c{i}" for i in range(12)]
        for call_id in ids:
            await queue.enqueue(call(call_id))
        dispatcher.wake()
        deadline = time.monotonic() + 10
        while not all(s is not None and s.status == "succeeded" for s in [await queue.get(i) for i in ids]):
            most_retries = max(most_retries, sum(retrying))
            assert time.monotonic() < deadline
            await asyncio.sleep(0.001)

    config = FunctionConfig(max_concurrency=4, max_retries=1, retry_delay_s=0.1)
    worker = run(settings, fails_once, scenario, fn=config)
    assert worker.most["fn"] == 4
    assert most_retries == 2


def test_a_shutdown_interrupts_what_outlives_the_grace_and_gives_it_back_unused(settings: Settings) -> None:
    async def hangs(call_id: str, event: bytes) -> bytes:
        await asyncio.sleep(3600)
        return b"never"

    async def scenario(queue: SqliteQueue, dispatcher: Dispatcher, worker: FakeWorker) -> None:
        await queue.enqueue(call("stuck"))
        dispatcher.wake()
        await until(queue, ["stuck"], {"running"})
        await dispatcher.stop(0.05)
        (state,) = await until(queue, ["stuck"], {"queued"})
        assert state.attempts == ()  # no attempt used
        assert state.due_at <= time.time()  # due again at once

    worker = run(settings, hangs, scenario, fn=FunctionConfig())
    assert worker.cancelled == ["stuck"]


def test_throttled_calls_are_postponed_without_using_a_retry(settings: Settings) -> None:
    async def throttled(call_id: str, event: bytes) -> bytes:
        raise Throttled("busy")

    async def scenario(queue: SqliteQueue, dispatcher: Dispatcher, worker: FakeWorker) -> None:
        await queue.enqueue(call("t"))
        dispatcher.wake()
        while not worker.ran:
            await asyncio.sleep(0.01)
        (state,) = await until(queue, ["t"], {"queued"})
        assert (state.attempts, state.retries_used) == ((), 0)
        assert state.due_at >= state.call.enqueued_at + 1  # a throttled call waits a second at least

    run(settings, throttled, scenario, fn=FunctionConfig(max_retries=0))


def test_a_call_of_a_function_that_is_gone_goes_dead_unrun(settings: Settings) -> None:
    async def never(call_id: str, event: bytes) -> bytes:
        raise AssertionError("must not run")

    async def scenario(queue: SqliteQueue, dispatcher: Dispatcher, worker: FakeWorker) -> None:
        await queue.enqueue(call("orphan", function="gone"))
        dispatcher.wake()
        (state,) = await until(queue, ["orphan"], {"dead"})
        assert state.attempts == ()
        assert state.error == {"code": "NotFound", "message": "function 'gone' does not exist"}

    assert run(settings, never, scenario, fn=FunctionConfig()).ran == []


def test_a_call_leased_too_old_goes_dead_unrun_saying_why(settings: Settings) -> None:
    async def never(call_id: str, event: bytes) -> bytes:
        raise AssertionError("must not run")

    async def scenario(queue: SqliteQueue, dispatcher: Dispatcher, worker: FakeWorker) -> None:
        stale = AsyncCall("stale", "default", "fn", b"{}", time.time() - 100)
        await queue.enqueue(stale)
        dispatcher.wake()
        (state,) = await until(queue, ["stale"], {"dead"})
        assert state.attempts == ()
        assert state.error is not None and state.error["code"] == "EventAgeExceeded"
        assert "max_event_age_s (60 s)" in state.error["message"]

    assert run(settings, never, scenario, fn=FunctionConfig(max_event_age_s=60)).ran == []


async def lose_leases(queue: SqliteQueue, call_id: str, times: int) -> None:
    """Queue ``call_id`` and lease it ``times`` times to workers that die before their ack."""
    await queue.enqueue(call(call_id))
    for n in range(times):
        (leased,) = await queue.lease(time.time(), 1, consumer=f"dead-{n}")
        assert leased.call.id == call_id
        assert await queue.recover(f"dead-{n}") == 1


def test_a_call_whose_attempts_keep_killing_the_worker_goes_dead(settings: Settings) -> None:
    # max_retries 2: three attempts in all, and three were lost before this dispatcher began.
    async def never(call_id: str, event: bytes) -> bytes:
        raise AssertionError("must not run")

    async def scenario(queue: SqliteQueue, dispatcher: Dispatcher, worker: FakeWorker) -> None:
        dispatcher.wake()
        (state,) = await until(queue, ["poison"], {"dead"})
        assert [a.outcome for a in state.attempts] == ["LeaseExpired"] * 3
        assert state.error is not None and state.error["code"] == "LeaseExpired"
        assert "max_retries 2" in state.error["message"]
        assert state.deliveries == 4  # the fourth lease found no retry left

    worker = run(
        settings,
        never,
        scenario,
        prepare=lambda queue: lose_leases(queue, "poison", 3),
        fn=FunctionConfig(max_retries=2),
    )
    assert worker.ran == []


def test_a_call_killed_with_retries_left_runs_again_at_once(settings: Settings) -> None:
    async def scenario(queue: SqliteQueue, dispatcher: Dispatcher, worker: FakeWorker) -> None:
        dispatcher.wake()
        (state,) = await until(queue, ["survivor"], {"succeeded"}, timeout=5)
        assert [(a.number, a.outcome) for a in state.attempts] == [(1, "LeaseExpired"), (2, "success")]
        assert state.retries_used == 2

    # retry_delay_s 3600: it was not waited for, a lost lease has waited already.
    worker = run(
        settings,
        slow,
        scenario,
        prepare=lambda queue: lose_leases(queue, "survivor", 1),
        fn=FunctionConfig(max_retries=1, retry_delay_s=3600),
    )
    assert worker.ran == ["survivor"]


def test_a_destination_record_is_queued_once_before_the_ack(settings: Settings) -> None:
    async def echo(call_id: str, event: bytes) -> bytes:
        return b'{"ok": 1}'

    async def scenario(queue: SqliteQueue, dispatcher: Dispatcher, worker: FakeWorker) -> None:
        await queue.enqueue(call("src", function="fn", origin=chains.start("fn", "src").to_origin()))
        dispatcher.wake()
        await until(queue, ["src"], {"succeeded"})
        deadline = time.monotonic() + 10
        while len(worker.ran) < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        destination = worker.ran[1]
        (state,) = await until(queue, [destination], {"succeeded"})
        assert state.call.function == "sink"
        # The record continues the chain of the call it tells of.
        assert state.call.origin == {"chain": "src", "hop": 1, "counts": {"fn": 1, "sink": 1}, "from": "src"}
        assert worker.chains["src"] == chains.start("fn", "src")
        assert worker.chains[destination] == Chain("src", 1, {"fn": 1, "sink": 1})
        assert state.call.idempotency_key == "wuzhao-destination:src:Success:1"
        # The same record again (a re-run after a crash before the ack) is not queued twice.
        again, created = await queue.enqueue(
            call("dup", function="sink", idempotency_key="wuzhao-destination:src:Success:1")
        )
        assert (again, created) == (destination, False)

    run(settings, echo, scenario, fn=FunctionConfig(on_success="sink"), sink=FunctionConfig())


def test_succeeded_calls_are_forgotten_after_their_retention(tmp_path: Path) -> None:
    settings = Settings.load({}, data_dir=tmp_path, async_retention_s=0.3)

    async def echo(call_id: str, event: bytes) -> bytes:
        return b"1"

    async def scenario(queue: SqliteQueue, dispatcher: Dispatcher, worker: FakeWorker) -> None:
        await queue.enqueue(call("old"))
        dispatcher.wake()
        await until(queue, ["old"], {"succeeded"})
        deadline = time.monotonic() + 5  # the purge runs every second at most
        while await queue.get("old") is not None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)

    run(settings, echo, scenario, fn=FunctionConfig())


def test_a_destination_naming_its_own_function_stops_at_its_limit(settings: Settings) -> None:
    metrics = Metrics()

    async def echo(call_id: str, event: bytes) -> bytes:
        return b"{}"

    async def scenario(queue: SqliteQueue, dispatcher: Dispatcher, worker: FakeWorker) -> None:
        await queue.enqueue(call("first", function="loop"))  # no origin: older data starts a chain
        dispatcher.wake()
        deadline = time.monotonic() + 10
        while len(worker.ran) < 3 or len(await queue.dead_letters("default", "loop")) < 1:
            assert time.monotonic() < deadline, worker.ran
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # and nothing more comes
        assert len(worker.ran) == 3  # max_chain_calls: the first call and two records
        (stopped,) = await queue.dead_letters("default", "loop")
        assert stopped.error is not None and stopped.error["code"] == "RecursiveLoop"
        assert "called 3 times in one chain of calls (chain first)" in stopped.error["message"]
        assert stopped.attempts == ()
        assert stopped.call.origin["from"] == worker.ran[-1]
        assert [worker.chains[i].hop for i in worker.ran] == [0, 1, 2]

    worker = FakeWorker(echo)

    async def main() -> None:
        queue = SqliteQueue(settings.data_dir / "queue.db")
        await queue.open()
        resolve = functions(loop=FunctionConfig(on_success="loop", max_chain_calls=3))
        dispatcher = Dispatcher(queue, worker, settings, resolve=resolve, metrics=metrics)
        dispatcher.start()
        try:
            await scenario(queue, dispatcher, worker)
        finally:
            await dispatcher.stop(0.1)
            await queue.close()

    asyncio.run(main())
    exposition = metrics.exposition().decode()
    assert 'wuzhao_recursive_loops_total{function="loop",namespace="default"} 1.0' in exposition
