"""Deliveries on the real embedded queue: chains started or continued, loops recorded dead."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from wuzhao.config import Settings
from wuzhao.domain import chains
from wuzhao.domain.chains import Chain
from wuzhao.domain.functions import FunctionConfig
from wuzhao.domain.versions import Executable
from wuzhao.errors import NotFound
from wuzhao.observe.metrics import Metrics
from wuzhao.queue.sqlite import SqliteQueue
from wuzhao.worker.deliveries import LONGEST_TIMEOUT_S, Deliveries, lease_seconds

CONFIGS = {
    "fn": FunctionConfig(timeout_s=12),
    "few": FunctionConfig(max_chain_calls=2),
    "free": FunctionConfig(max_chain_calls=1, recursive_loop="allow"),
}


def resolve(namespace: str, function: str, qualifier: str | None) -> Executable:
    if function not in CONFIGS or qualifier == "gone":
        raise NotFound(f"function {function!r} does not exist")
    return Executable(namespace, function, "$LATEST", 1, CONFIGS[function], "ab" * 32)


Scenario = Callable[[SqliteQueue, Deliveries, list[str]], Awaitable[None]]


def run(tmp_path: Path, scenario: Scenario, metrics: Metrics | None = None) -> None:
    async def main() -> None:
        queue = SqliteQueue(tmp_path / "queue.db")
        await queue.open()
        woken: list[str] = []
        settings = Settings.load({}, data_dir=tmp_path)
        deliveries = Deliveries(
            queue,
            settings,
            resolve=resolve,
            metrics=metrics,
            wake=lambda: woken.append("wake"),
            clock=lambda: 1e9,
        )
        try:
            await scenario(queue, deliveries, woken)
        finally:
            await queue.close()

    asyncio.run(main())


def test_without_a_cause_a_delivery_starts_a_chain(tmp_path: Path) -> None:
    async def scenario(queue: SqliteQueue, deliveries: Deliveries, woken: list[str]) -> None:
        sent = await deliveries.send(
            "default",
            "fn",
            b'{"a": 1}',
            idempotency_key="k1",
            cause=None,
            qualifier="live",
            origin={"trigger": "t"},
        )
        assert (sent.created, sent.stopped, woken) == (True, False, ["wake"])
        state = await queue.get(sent.call_id)
        assert state is not None and state.status == "queued"
        call = state.call
        assert (call.function, call.qualifier, call.event, call.idempotency_key) == (
            "fn",
            "live",
            b'{"a": 1}',
            "k1",
        )
        assert call.origin == {**chains.start("fn", sent.call_id).to_origin(), "trigger": "t"}
        assert call.lease_s == lease_seconds(Settings.load({}, data_dir=tmp_path), 12)

    run(tmp_path, scenario)


def test_a_cause_is_continued_and_a_repeat_makes_nothing(tmp_path: Path) -> None:
    async def scenario(queue: SqliteQueue, deliveries: Deliveries, woken: list[str]) -> None:
        cause = chains.start("writer", "c0")
        first = await deliveries.send("default", "fn", b"{}", idempotency_key="k", cause=cause)
        again = await deliveries.send("default", "fn", b"{}", idempotency_key="k", cause=cause)
        assert (again.call_id, again.created, woken) == (first.call_id, False, ["wake"])
        state = await queue.get(first.call_id)
        assert state is not None
        assert chains.from_origin(state.call.origin, state.call.id, "fn") == Chain(
            "c0", 1, {"writer": 1, "fn": 1}
        )

    run(tmp_path, scenario)


def test_a_loop_is_recorded_dead_logged_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()

    async def scenario(queue: SqliteQueue, deliveries: Deliveries, woken: list[str]) -> None:
        cause = Chain("c0", 5, {"few": 2, "other": 3})
        with caplog.at_level(logging.WARNING, logger="wuzhao.deliveries"):
            stopped = await deliveries.send("default", "few", b"{}", idempotency_key="k", cause=cause)
            again = await deliveries.send("default", "few", b"{}", idempotency_key="k", cause=cause)
        assert (stopped.created, stopped.stopped, woken) == (True, True, [])
        assert (again.call_id, again.created) == (stopped.call_id, False)
        state = await queue.get(stopped.call_id)
        assert state is not None
        assert (state.status, state.attempts) == ("dead", ())
        assert state.error is not None and state.error["code"] == "RecursiveLoop"
        assert (
            "'few' was called 2 times in one chain of calls (chain c0); the limit is 2"
            in state.error["message"]
        )
        assert state.call.origin == cause.to_origin()  # the chain that was stopped
        assert [d.call.id for d in await queue.dead_letters("default", "few")] == [stopped.call_id]
        # another branch of the same chain is not stopped
        branch = await deliveries.send(
            "default", "few", b"{}", idempotency_key="k2", cause=Chain("c0", 1, {"few": 1})
        )
        assert not branch.stopped

    run(tmp_path, scenario, metrics)
    assert len([r for r in caplog.records if "not made" in r.getMessage()]) == 1  # once, not per repeat
    exposition = metrics.exposition().decode()
    assert 'wuzhao_recursive_loops_total{function="few",namespace="default"} 1.0' in exposition
    assert 'wuzhao_async_outcomes_total{function="few",namespace="default",outcome="dead"} 1.0' in exposition


def test_a_function_that_opted_out_is_never_stopped(tmp_path: Path) -> None:
    async def scenario(queue: SqliteQueue, deliveries: Deliveries, woken: list[str]) -> None:
        cause = Chain("c0", 500, {"free": 500})
        sent = await deliveries.send("default", "free", b"{}", idempotency_key="k", cause=cause)
        assert not sent.stopped
        state = await queue.get(sent.call_id)
        assert state is not None and state.status == "queued"
        assert state.call.origin["counts"] == {"free": 501}

    run(tmp_path, scenario)


def test_a_function_that_does_not_resolve_gets_its_call_all_the_same(tmp_path: Path) -> None:
    async def scenario(queue: SqliteQueue, deliveries: Deliveries, woken: list[str]) -> None:
        gone = await deliveries.send("default", "nope", b"{}", idempotency_key="k", cause=None)
        state = await queue.get(gone.call_id)
        assert state is not None and state.status == "queued"  # it goes dead when leased, visibly
        assert state.call.lease_s == lease_seconds(Settings.load({}, data_dir=tmp_path), LONGEST_TIMEOUT_S)
        # with the default limit
        stopped = await deliveries.send(
            "default", "fn", b"{}", idempotency_key="k2", qualifier="gone", cause=Chain("c", 16, {"fn": 16})
        )
        assert stopped.stopped

    run(tmp_path, scenario)
