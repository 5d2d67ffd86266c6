"""The async-call queue contract (``wuzhao.queue.api``), run against every implementation.

To add one (NATS JetStream, PostgreSQL), add an entry to ``IMPLEMENTATIONS``: a
function that, given a fresh temporary directory, returns a ``QueueFactory``:
``make()`` builds an unopened queue over one empty store (each call a new
queue over the same data, for close and reopen), and ``child`` is Python
source that builds the same queue as ``queue`` in another process (the kill
test).

Times are made up (around ``T0``) wherever the contract takes them as
arguments; ``purge`` compares with when calls finished, which the queue takes
from the wall clock, so its tests use real times.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from wuzhao.errors import LeaseLost
from wuzhao.queue.api import (
    IDEMPOTENCY_WINDOW_S,
    LEASE_EXPIRED,
    AsyncCall,
    AsyncQueue,
    Attempt,
    CallState,
    Lease,
)
from wuzhao.queue.sqlite import SqliteQueue

T0 = 1_000_000.0


@dataclass(frozen=True)
class QueueFactory:
    make: Callable[[], AsyncQueue]
    child: str  # Python source that sets ``queue`` to an unopened queue over the same data

    @contextlib.asynccontextmanager
    async def opened(self) -> AsyncIterator[AsyncQueue]:
        queue = self.make()
        await queue.open()
        try:
            yield queue
        finally:
            await queue.close()

    def run(self, check: Callable[[AsyncQueue], Awaitable[None]]) -> None:
        """Run ``check`` against one freshly opened queue, in its own event loop."""

        async def main() -> None:
            async with self.opened() as queue:
                await check(queue)

        asyncio.run(main())


def sqlite_queue(tmp_path: Path) -> QueueFactory:
    path = tmp_path / "data" / "queue.db"
    child = f"from wuzhao.queue.sqlite import SqliteQueue\nqueue = SqliteQueue({str(path)!r})\n"
    return QueueFactory(lambda: SqliteQueue(path), child)


IMPLEMENTATIONS: dict[str, Callable[[Path], QueueFactory]] = {"sqlite": sqlite_queue}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def make_queue(request: pytest.FixtureRequest, tmp_path: Path) -> QueueFactory:
    return IMPLEMENTATIONS[request.param](tmp_path)


def call(
    call_id: str,
    *,
    at: float = T0,
    function: str = "hello",
    namespace: str = "default",
    key: str | None = None,
    idempotency_key: str | None = None,
    lease_s: float = 60.0,
    **fields: Any,
) -> AsyncCall:
    return AsyncCall(
        id=call_id,
        namespace=namespace,
        function=function,
        event=fields.pop("event", b'{"n": 1}'),
        enqueued_at=at,
        ordering_key=key,
        idempotency_key=idempotency_key,
        lease_s=lease_s,
        **fields,
    )


def attempt(number: int = 1, outcome: str = "success", *, at: float = T0) -> Attempt:
    error = None if outcome == "success" else {"code": outcome, "message": f"attempt {number} failed"}
    return Attempt(number=number, started_at=at, duration_ms=12.5, outcome=outcome, error=error)


async def enqueue_all(queue: AsyncQueue, *calls: AsyncCall) -> None:
    for one in calls:
        assert await queue.enqueue(one) == (one.id, True)


async def lease(queue: AsyncQueue, now: float, limit: int = 100, **options: Any) -> dict[str, Lease]:
    """The calls leased, by id, in the order handed out (dicts keep it)."""
    leased = await queue.lease(now, limit, consumer=options.pop("consumer", "w1"), **options)
    return {one.call.id: one for one in leased}


async def ids(queue: AsyncQueue, now: float, limit: int = 100, **options: Any) -> list[str]:
    return list(await lease(queue, now, limit, **options))


async def state(queue: AsyncQueue, call_id: str) -> CallState:
    found = await queue.get(call_id)
    assert found is not None, call_id
    return found


# guarantee 1 and storage


def test_enqueue_stores_the_call_as_given(make_queue: QueueFactory) -> None:
    original = call(
        "c1",
        event=b'\x00\xff{"not": "json"}',
        qualifier="live",
        key="order-7",
        idempotency_key="idem-1",
        lease_s=123.5,
        origin={"source": "schedule", "chain": ["a", "b"], "depth": 2},
    )

    async def check(q: AsyncQueue) -> None:
        assert await q.get("c1") is None
        assert await q.enqueue(original) == ("c1", True)
        stored = await state(q, "c1")
        assert stored.call == original
        assert (stored.status, stored.attempts, stored.due_at) == ("queued", (), T0)
        assert (stored.result, stored.error, stored.retries_used, stored.hold_key) == (None, None, 0, False)
        assert await q.get("c2") is None

    make_queue.run(check)


def test_everything_survives_close_and_reopen(make_queue: QueueFactory) -> None:
    async def main() -> None:
        async with make_queue.opened() as q:
            await enqueue_all(q, call("done"), call("failed"), call("dead"), call("queued", at=T0 + 1))
            leased = await lease(q, T0, limit=3)
            await q.complete(leased["done"].token, attempt(), b'{"ok": true}')
            await q.retry(leased["failed"].token, attempt(outcome="Timeout"), at=T0 + 50)
            await q.dead_letter(leased["dead"].token, attempt(outcome="FunctionError"))
            before = {name: await state(q, name) for name in ("done", "failed", "dead", "queued")}
        async with make_queue.opened() as q:
            for name, was in before.items():
                assert await q.get(name) == was
            assert await q.depth() == {("default", "hello"): 2}
            assert await ids(q, T0 + 50) == ["failed", "queued"]

    asyncio.run(main())


def test_enqueued_calls_survive_a_kill(make_queue: QueueFactory) -> None:
    """A child enqueues from 8 concurrent producers, printing each id once enqueue returned, and is
    SIGKILLed mid-way: every printed id is in the queue when it is opened again."""
    script = make_queue.child + textwrap.dedent(
        """
        import asyncio, time
        from wuzhao.queue.api import AsyncCall

        async def producer(p):
            for i in range(1_000_000):
                call_id = f"p{p}-{i}"
                event = b'{"i": %d}' % i
                await queue.enqueue(AsyncCall(call_id, "default", "hello", event, time.time()))
                print(call_id, flush=True)

        async def main():
            await queue.open()
            await asyncio.gather(*(producer(p) for p in range(8)))

        asyncio.run(main())
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    printed = []
    for text in child.stdout:
        printed.append(text)
        if len(printed) == 400:
            break
    child.send_signal(signal.SIGKILL)
    rest, _ = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL  # killed mid-way, not finished
    printed += rest.splitlines(keepends=True)
    durable = [text.strip() for text in printed if text.endswith("\n")]
    assert len(durable) >= 400

    async def check(q: AsyncQueue) -> None:
        missing = [call_id for call_id in durable if await q.get(call_id) is None]
        assert missing == []
        assert sum((await q.depth()).values()) >= len(durable)

    make_queue.run(check)


def test_concurrent_enqueues_are_all_durable_and_distinct(make_queue: QueueFactory) -> None:
    calls = [call(f"c{i}", at=T0 + i / 1000, event=b'{"i": %d}' % i) for i in range(500)]

    async def main() -> None:
        async with make_queue.opened() as q:
            results = await asyncio.gather(*(q.enqueue(one) for one in calls))
            assert sorted(results) == sorted((one.id, True) for one in calls)
        async with make_queue.opened() as q:
            for one in calls:
                assert (await state(q, one.id)).call == one
            assert await q.depth() == {("default", "hello"): 500}
            leased = await q.lease(T0 + 1, 1000, consumer="w1")
            assert sorted(one.call.id for one in leased) == sorted(one.id for one in calls)

    asyncio.run(main())


# status transitions


def test_lease_then_complete(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(q, call("c1", lease_s=30.0))
        leased = (await lease(q, T0 + 5))["c1"]
        assert leased.call == call("c1", lease_s=30.0)
        assert (leased.deadline, leased.retries_used, leased.attempts) == (T0 + 35, 0, 0)
        assert (await state(q, "c1")).status == "running"
        assert await ids(q, T0 + 6) == []  # leased once at a time

        await q.complete(leased.token, attempt(at=T0 + 5), b'{"answer": 42}')
        done = await state(q, "c1")
        assert (done.status, done.result, done.error) == ("succeeded", b'{"answer": 42}', None)
        assert done.attempts == (attempt(at=T0 + 5),)
        assert await ids(q, T0 + 1000) == []  # finished: never again, not even past the deadline
        assert await q.depth() == {}

    make_queue.run(check)


def test_retry_makes_the_call_failed_and_due_at_its_time(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(q, call("c1"))
        first = (await lease(q, T0))["c1"]
        await q.retry(first.token, attempt(1, "FunctionError"), at=T0 + 30)
        failed = await state(q, "c1")
        assert (failed.status, failed.due_at, failed.retries_used) == ("failed", T0 + 30, 1)
        assert failed.error == attempt(1, "FunctionError").error
        assert failed.attempts == (attempt(1, "FunctionError"),)
        assert await q.next_due() == T0 + 30
        assert await ids(q, T0 + 29.9) == []

        second = (await lease(q, T0 + 30))["c1"]
        assert (second.retries_used, second.attempts) == (1, 1)
        await q.retry(second.token, attempt(2, "Timeout", at=T0 + 30), at=T0 + 90)
        third = (await lease(q, T0 + 90))["c1"]
        assert (third.retries_used, third.attempts) == (2, 2)
        await q.complete(third.token, attempt(3, at=T0 + 90), None)
        done = await state(q, "c1")
        assert (done.status, done.result) == ("succeeded", None)
        assert [a.outcome for a in done.attempts] == ["FunctionError", "Timeout", "success"]

    make_queue.run(check)


def test_postpone_queues_again_without_using_an_attempt(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(q, call("c1"))
        first = (await lease(q, T0))["c1"]
        await q.postpone(first.token, at=T0 + 10)
        waiting = await state(q, "c1")
        assert (waiting.status, waiting.due_at, waiting.attempts, waiting.retries_used) == (
            "queued", T0 + 10, (), 0,
        )  # fmt: skip
        assert await ids(q, T0 + 9) == []
        again = (await lease(q, T0 + 10))["c1"]
        assert (again.retries_used, again.attempts) == (0, 0)

    make_queue.run(check)


def test_dead_letter_with_and_without_an_attempt(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(q, call("ran"), call("never"))
        leased = await lease(q, T0)
        await q.dead_letter(leased["ran"].token, attempt(1, "OutOfMemory"))
        await q.dead_letter(leased["never"].token, None)
        ran, never = await state(q, "ran"), await state(q, "never")
        assert (ran.status, ran.attempts, ran.error) == ("dead", (attempt(1, "OutOfMemory"),), ran.error)
        assert ran.error == {"code": "OutOfMemory", "message": "attempt 1 failed"}
        assert (never.status, never.attempts, never.error) == ("dead", (), None)
        assert await ids(q, T0 + 10_000) == []
        assert await q.depth() == {}

    make_queue.run(check)


def test_dead_letter_says_why_a_call_died_without_an_attempt(make_queue: QueueFactory) -> None:
    gone = {"code": "NotFound", "message": "function 'hello' does not exist"}
    too_old = {"code": "EventAgeExceeded", "message": "the event is 7200.0 s old"}

    async def check(q: AsyncQueue) -> None:
        await enqueue_all(q, call("gone"), call("old"), call("quiet"), call("ran"))
        first = await lease(q, T0)
        await q.dead_letter(first["gone"].token, None, error=gone)
        await q.retry(first["old"].token, attempt(1, "FunctionError"), at=T0 + 10)
        await q.retry(first["quiet"].token, attempt(1, "Timeout"), at=T0 + 10)
        await q.dead_letter(first["ran"].token, attempt(1, "OutOfMemory"), error=too_old)
        again = await lease(q, T0 + 10)
        await q.dead_letter(again["old"].token, None, error=too_old, hold_key=True)
        await q.dead_letter(again["quiet"].token, None)

        dead = {name: await state(q, name) for name in ("gone", "old", "quiet", "ran")}
        assert {name: one.status for name, one in dead.items()} == dict.fromkeys(dead, "dead")
        assert (dead["gone"].error, dead["gone"].attempts) == (gone, ())
        # The reason replaces the failure before it; the attempts keep that one.
        assert (dead["old"].error, dead["old"].attempts) == (too_old, (attempt(1, "FunctionError"),))
        assert dead["quiet"].error == attempt(1, "Timeout").error  # nothing said: the last error stays
        assert dead["ran"].error == too_old  # given with an attempt, the reason wins
        assert dead["ran"].attempts == (attempt(1, "OutOfMemory"),)

    make_queue.run(check)


def test_redrive_queues_a_dead_call_again_with_its_retries_reset(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(q, call("c1"), call("other"))
        first = (await lease(q, T0, limit=1))["c1"]
        await q.retry(first.token, attempt(1, "FunctionError"), at=T0)
        second = (await lease(q, T0, limit=1))["c1"]
        await q.dead_letter(second.token, attempt(2, "FunctionError"))

        assert await q.redrive("default", "other", "c1", now=T0 + 100) is False  # not that function's
        assert await q.redrive("default", "hello", "other", now=T0 + 100) is False  # not dead
        assert await q.redrive("default", "hello", "nope", now=T0 + 100) is False
        assert await q.redrive("default", "hello", "c1", now=T0 + 100) is True
        back = await state(q, "c1")
        assert (back.status, back.retries_used, back.due_at, len(back.attempts)) == ("queued", 0, T0 + 100, 2)
        assert await q.redrive("default", "hello", "c1", now=T0 + 100) is False  # not dead any more

        again = (await lease(q, T0 + 100))["c1"]
        assert (again.retries_used, again.attempts) == (0, 2)

    make_queue.run(check)


def test_delete_dead_forgets_only_dead_calls(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(q, call("dead"), call("queued", at=T0 + 1))
        await q.dead_letter((await lease(q, T0, limit=1))["dead"].token, None)
        assert await q.delete_dead("default", "other", "dead") is False
        assert await q.delete_dead("default", "hello", "queued") is False
        assert await q.delete_dead("default", "hello", "dead") is True
        assert await q.get("dead") is None
        assert await q.delete_dead("default", "hello", "dead") is False
        assert (await state(q, "queued")).status == "queued"

    make_queue.run(check)


# guarantee 7: calls enqueued dead

LOOP = {"code": "RecursiveLoop", "message": "function 'hello' was called 16 times in one chain"}


def test_a_call_enqueued_dead_is_a_dead_letter_never_leased(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        origin = {"chain": "c0", "hop": 16, "counts": {"hello": 16}}
        assert await q.enqueue(call("stopped", origin=origin), dead=LOOP) == ("stopped", True)
        await enqueue_all(q, call("live", at=T0 + 1))
        stopped = await state(q, "stopped")
        assert (stopped.status, stopped.error, stopped.attempts) == ("dead", LOOP, ())
        assert stopped.call.origin == origin
        assert [one.call.id for one in await q.dead_letters("default", "hello")] == ["stopped"]
        assert await ids(q, T0 + 10_000) == ["live"]
        assert await q.depth() == {("default", "hello"): 1}  # the live one, leased
        assert await q.redrive("default", "hello", "stopped", now=T0 + 10_010) is True  # an operator's choice
        assert await ids(q, T0 + 10_010) == ["stopped"]

    make_queue.run(check)


def test_a_call_enqueued_dead_neither_holds_nor_waits_for_its_key(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(q, call("a1", key="a"))
        assert await q.enqueue(call("a2", key="a", at=T0 + 1), dead=LOOP) == ("a2", True)
        await enqueue_all(q, call("a3", key="a", at=T0 + 2))
        assert await ids(q, T0 + 5) == ["a1"]  # a3 waits for a1, not for the dead a2
        assert (await state(q, "a2")).status == "dead"

    make_queue.run(check)


def test_a_call_enqueued_dead_is_idempotent_like_any(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        assert await q.enqueue(call("first", idempotency_key="k"), dead=LOOP) == ("first", True)
        assert await q.enqueue(call("again", idempotency_key="k"), dead=LOOP) == ("first", False)
        assert await q.enqueue(call("live", idempotency_key="k")) == ("first", False)
        assert await q.get("again") is None and await q.get("live") is None

    make_queue.run(check)


# guarantees 2 and 3: leases, their loss and recovery


def test_an_expired_lease_is_leased_again(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(q, call("c1", lease_s=60.0))
        first = (await lease(q, T0, consumer="w1"))["c1"]
        assert await q.next_due() == T0 + 60  # the deadline: when it may be leased next
        assert await ids(q, T0 + 59.9, consumer="w2") == []
        second = (await lease(q, T0 + 60, consumer="w2"))["c1"]
        assert second.token != first.token
        assert second.deadline == T0 + 120
        with pytest.raises(LeaseLost):
            await q.complete(first.token, attempt(), b"1")
        await q.complete(second.token, attempt(2, at=T0 + 60), b"2")
        done = await state(q, "c1")
        assert (done.result, done.deliveries) == (b"2", 2)

    make_queue.run(check)


def test_a_lease_that_expired_counts_as_an_attempt(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(q, call("c1", lease_s=60.0))
        first = (await lease(q, T0 + 5))["c1"]
        assert (first.deliveries, first.lost) == (1, False)
        await q.retry(first.token, attempt(1, "FunctionError", at=T0 + 5), at=T0 + 10)
        second = (await lease(q, T0 + 10))["c1"]
        assert (second.deliveries, second.lost, second.retries_used, second.attempts) == (2, False, 1, 1)

        third = (await lease(q, T0 + 70))["c1"]  # the second lease ran out without an ack
        assert (third.deliveries, third.lost, third.retries_used, third.attempts) == (3, True, 2, 2)
        lost = await state(q, "c1")
        assert (lost.status, lost.deliveries, lost.retries_used) == ("running", 3, 2)
        assert lost.attempts[0] == attempt(1, "FunctionError", at=T0 + 5)
        synthetic = lost.attempts[1]
        assert (synthetic.number, synthetic.outcome, synthetic.started_at) == (2, LEASE_EXPIRED, T0 + 10)
        assert synthetic.duration_ms == pytest.approx(60_000)  # from its lease to its deadline
        assert synthetic.error is not None and synthetic.error["code"] == LEASE_EXPIRED
        assert lost.error == synthetic.error

        # Counted once: the call's next ack goes on from there.
        await q.dead_letter(third.token, None, error={"code": "RetriesExhausted", "message": "m"})
        dead = await state(q, "c1")
        assert (dead.status, [a.outcome for a in dead.attempts]) == ("dead", ["FunctionError", LEASE_EXPIRED])
        assert dead.error == {"code": "RetriesExhausted", "message": "m"}

    make_queue.run(check)


def test_a_lease_each_time_lost_counts_each_time(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(q, call("c1", lease_s=10.0))
        leases = [(await lease(q, T0 + 10 * n))["c1"] for n in range(4)]
        assert [(one.lost, one.retries_used, one.attempts) for one in leases] == [
            (False, 0, 0), (True, 1, 1), (True, 2, 2), (True, 3, 3),
        ]  # fmt: skip
        found = await state(q, "c1")
        assert [(a.number, a.outcome) for a in found.attempts] == [(n, LEASE_EXPIRED) for n in (1, 2, 3)]
        assert found.deliveries == 4

    make_queue.run(check)


def test_acks_end_a_lease_for_good_and_cost_nothing_more(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(q, call("given-back"), call("retried"), call("redriven"))
        first = await lease(q, T0)
        await q.postpone(first["given-back"].token, at=T0 + 1)
        await q.retry(first["retried"].token, attempt(1, "Timeout"), at=T0 + 1)
        await q.dead_letter(first["redriven"].token, None)
        assert await q.redrive("default", "hello", "redriven", now=T0 + 1)
        again = await lease(q, T0 + 1)
        assert {name: (one.lost, one.attempts) for name, one in again.items()} == {
            "given-back": (False, 0), "retried": (False, 1), "redriven": (False, 0),
        }  # fmt: skip
        assert (await state(q, "given-back")).deliveries == 2

    make_queue.run(check)


def test_an_expired_lease_still_acks_until_it_is_leased_again(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(q, call("c1", lease_s=10.0))
        late = (await lease(q, T0))["c1"]
        await q.retry(late.token, attempt(1, "Timeout"), at=T0 + 100)  # long past its deadline
        assert (await state(q, "c1")).status == "failed"
        assert await ids(q, T0 + 99) == []

    make_queue.run(check)


def test_stale_tokens_raise_lease_lost_and_change_nothing(make_queue: QueueFactory) -> None:
    acks: dict[str, Callable[[AsyncQueue, str], Awaitable[None]]] = {
        "complete": lambda q, token: q.complete(token, attempt(), b"stale"),
        "retry": lambda q, token: q.retry(token, attempt(1, "Timeout"), at=T0),
        "postpone": lambda q, token: q.postpone(token, at=T0),
        "dead_letter": lambda q, token: q.dead_letter(token, attempt(1, "Timeout"), hold_key=True),
    }

    async def check(q: AsyncQueue) -> None:
        await enqueue_all(q, call("expired", lease_s=10.0, key="k"), call("acked"))
        first = await lease(q, T0)
        await q.complete(first["acked"].token, attempt(), b"fine")
        current = (await lease(q, T0 + 10))["expired"]  # the first lease expired and was taken again
        stale = [first["expired"].token, first["acked"].token, "garbage", "", current.token + "x"]
        before = {name: await state(q, name) for name in ("expired", "acked")}
        for name, ack in acks.items():
            for token in stale:
                with pytest.raises(LeaseLost):
                    await ack(q, token)
                assert {n: await state(q, n) for n in before} == before, (name, token)
        await q.complete(current.token, attempt(), b"ok")  # the live lease was not disturbed
        with pytest.raises(LeaseLost):  # and an ack is final: a second one is stale too
            await q.retry(current.token, attempt(1, "Timeout"), at=T0)

    make_queue.run(check)


def test_a_lost_lease_does_not_spoil_the_writes_around_it(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(q, call("c0"))
        stale = (await lease(q, T0))["c0"]
        await q.complete(stale.token, attempt(), None)
        results = await asyncio.gather(
            *(q.enqueue(call(f"c{i}")) for i in range(1, 30)),
            *(q.complete(stale.token, attempt(), None) for _ in range(10)),
            return_exceptions=True,
        )
        assert results[:29] == [(f"c{i}", True) for i in range(1, 30)]
        assert all(isinstance(r, LeaseLost) for r in results[29:])
        assert await q.depth() == {("default", "hello"): 29}

    make_queue.run(check)


def test_recover_gives_back_the_leases_of_one_consumer(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(q, *(call(f"c{i}", at=T0 + i) for i in range(5)))
        dead_worker = await lease(q, T0 + 10, limit=3, consumer="w1")
        alive = await lease(q, T0 + 10, limit=3, consumer="w2")
        assert list(dead_worker) == ["c0", "c1", "c2"] and list(alive) == ["c3", "c4"]
        assert await q.recover("w1") == 3
        assert await q.recover("w1") == 0
        assert await q.recover("nobody") == 0
        assert [(await state(q, f"c{i}")).status for i in range(5)] == ["queued"] * 3 + ["running"] * 2
        with pytest.raises(LeaseLost):
            await q.complete(dead_worker["c0"].token, attempt(), None)
        again = await lease(q, T0 + 10, consumer="w3")
        assert list(again) == ["c0", "c1", "c2"]  # at once, not at the deadline
        # Each lease the dead worker held is an attempt now, counted like a crash.
        assert [(one.lost, one.retries_used, one.attempts) for one in again.values()] == [(True, 1, 1)] * 3
        recovered = (await state(q, "c0")).attempts
        assert [(a.number, a.outcome, a.started_at) for a in recovered] == [(1, LEASE_EXPIRED, T0 + 10)]
        assert recovered[0].error is not None and recovered[0].error["code"] == LEASE_EXPIRED
        await q.complete(alive["c3"].token, attempt(), None)
        assert (await state(q, "c3")).attempts == (attempt(),)  # the live lease owed nothing

    make_queue.run(check)


def test_reopening_gives_back_the_leases_of_the_previous_process(make_queue: QueueFactory) -> None:
    async def main() -> None:
        async with make_queue.opened() as q:
            await enqueue_all(q, call("c1", lease_s=900.0), call("c2", key="k"), call("c3", key="k"))
            before = await lease(q, T0)
            assert list(before) == ["c1", "c2"]
        async with make_queue.opened() as q:
            assert (await state(q, "c1")).status == "queued"
            with pytest.raises(LeaseLost):
                await q.complete(before["c1"].token, attempt(), None)
            again = await lease(q, T0 + 1)
            assert list(again) == ["c1", "c2"]  # long before the deadline; c3 still waits for c2
            assert [(one.lost, one.retries_used) for one in again.values()] == [(True, 1), (True, 1)]
            assert [a.outcome for a in (await state(q, "c2")).attempts] == [LEASE_EXPIRED]

    asyncio.run(main())


def test_concurrent_leases_never_hand_out_a_call_twice(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await asyncio.gather(*(q.enqueue(call(f"c{i}", at=T0 + i / 1000)) for i in range(200)))
        batches = await asyncio.gather(*(q.lease(T0 + 1, 7, consumer=f"w{i}") for i in range(40)))
        handed = [one.call.id for batch in batches for one in batch]
        assert sorted(handed) == sorted(f"c{i}" for i in range(200))
        assert await q.lease(T0 + 1, 0, consumer="w") == []

    make_queue.run(check)


# guarantee 4: per-key order


def test_a_key_hands_out_its_calls_one_at_a_time_in_order(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(
            q,
            call("a1", key="a"),
            call("a2", key="a", at=T0 + 1),
            call("b1", key="b", at=T0 + 2),
            call("free", at=T0 + 3),
            call("a1-other-fn", key="a", function="other", at=T0 + 4),
            call("a3", key="a", at=T0 + 5),
        )
        first = await lease(q, T0 + 10)
        assert list(first) == ["a1", "b1", "free", "a1-other-fn"]
        assert await ids(q, T0 + 10) == []  # a2 waits while a1 runs
        await q.complete(first["a1"].token, attempt(), None)
        second = await lease(q, T0 + 10)
        assert list(second) == ["a2"]
        await q.complete(second["a2"].token, attempt(), None)
        assert await ids(q, T0 + 10) == ["a3"]

    make_queue.run(check)


def test_a_key_waits_while_its_oldest_call_waits_for_a_retry(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(q, call("a1", key="a"), call("a2", key="a", at=T0 + 1), call("free", at=T0 + 2))
        first = await lease(q, T0 + 5)
        await q.retry(first["a1"].token, attempt(1, "FunctionError"), at=T0 + 60)
        assert await ids(q, T0 + 30) == []  # a2 waits for a1's retry; free was leased already
        assert await ids(q, T0 + 60) == ["a1"]

    make_queue.run(check)


def test_a_postponed_call_keeps_its_place_in_its_key(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(q, call("a1", key="a"), call("a2", key="a", at=T0 + 1))
        await q.postpone((await lease(q, T0))["a1"].token, at=T0 + 20)
        assert await ids(q, T0 + 10) == []
        assert await ids(q, T0 + 20) == ["a1"]

    make_queue.run(check)


def test_a_dead_call_lets_its_key_continue(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(q, call("a1", key="a"), call("a2", key="a", at=T0 + 1))
        await q.dead_letter((await lease(q, T0))["a1"].token, attempt(1, "FunctionError"))
        assert (await state(q, "a1")).hold_key is False
        assert await ids(q, T0 + 1) == ["a2"]

    make_queue.run(check)


def test_a_call_dead_with_hold_key_holds_it_until_redriven(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(q, call("a1", key="a"), call("a2", key="a", at=T0 + 1), call("b1", key="b"))
        first = await lease(q, T0)
        await q.dead_letter(first["a1"].token, attempt(1, "FunctionError"), hold_key=True)
        assert (await state(q, "a1")).hold_key is True
        await enqueue_all(q, call("a3", key="a", at=T0 + 2))  # arriving while held: waits too
        await q.complete(first["b1"].token, attempt(), None)
        assert await ids(q, T0 + 10_000) == []
        assert await q.depth() == {("default", "hello"): 2}  # a2, a3: the dead one is not unfinished

        assert await q.redrive("default", "hello", "a1", now=T0 + 100) is True
        assert (await state(q, "a1")).hold_key is False
        redriven = await lease(q, T0 + 100)
        assert list(redriven) == ["a1"]  # first, before the calls that waited for it
        await q.complete(redriven["a1"].token, attempt(2), None)
        assert await ids(q, T0 + 100) == ["a2"]

    make_queue.run(check)


def test_a_held_key_continues_when_its_dead_call_is_deleted(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(q, call("a1", key="a"), call("a2", key="a", at=T0 + 1))
        await q.dead_letter((await lease(q, T0))["a1"].token, None, hold_key=True)
        assert await ids(q, T0 + 1) == []
        assert await q.delete_dead("default", "hello", "a1") is True
        assert await ids(q, T0 + 1) == ["a2"]

    make_queue.run(check)


def test_hold_key_without_a_key_holds_nothing(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(q, call("c1"), call("c2", at=T0 + 1))
        await q.dead_letter((await lease(q, T0, limit=1))["c1"].token, None, hold_key=True)
        assert (await state(q, "c1")).hold_key is False
        assert await ids(q, T0 + 1) == ["c2"]

    make_queue.run(check)


def test_a_redriven_call_goes_before_the_younger_calls_of_its_key(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(q, *(call(f"a{i}", key="a", at=T0 + i) for i in range(1, 4)))
        await q.dead_letter((await lease(q, T0 + 5))["a1"].token, None)
        a2 = (await lease(q, T0 + 5))["a2"]
        assert await q.redrive("default", "hello", "a1", now=T0 + 6) is True
        assert await ids(q, T0 + 7) == []  # one call of a key at a time: a1 waits for the running a2
        await q.complete(a2.token, attempt(), None)
        a1 = await lease(q, T0 + 7)
        assert list(a1) == ["a1"]  # the oldest unfinished, before a3
        await q.complete(a1["a1"].token, attempt(), None)
        assert await ids(q, T0 + 7) == ["a3"]

    make_queue.run(check)


def test_a_redriven_call_goes_before_a_younger_one_waiting_for_its_retry(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(q, call("a1", key="a"), call("a2", key="a", at=T0 + 1))
        await q.dead_letter((await lease(q, T0 + 5))["a1"].token, None)
        await q.retry((await lease(q, T0 + 5))["a2"].token, attempt(1, "Timeout"), at=T0 + 10)
        assert await q.redrive("default", "hello", "a1", now=T0 + 6) is True
        assert await ids(q, T0 + 10) == ["a1"]  # a2 is due too, but a1 is older

    make_queue.run(check)


# guarantee 5: idempotency


def test_an_idempotent_repeat_returns_the_first_id_and_stores_nothing(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        assert await q.enqueue(call("c1", idempotency_key="k1")) == ("c1", True)
        assert await q.enqueue(call("c2", idempotency_key="k1", at=T0 + 60)) == ("c1", False)
        assert await q.get("c2") is None
        assert await q.enqueue(call("c3", idempotency_key="k2")) == ("c3", True)
        assert await q.enqueue(call("c4", idempotency_key="k1", function="other")) == ("c4", True)
        assert await q.enqueue(call("c5", idempotency_key="k1", namespace="team")) == ("c5", True)
        assert await q.enqueue(call("c6")) == ("c6", True)  # no key: never a repeat
        assert await q.depth() == {("default", "hello"): 3, ("default", "other"): 1, ("team", "hello"): 1}

    make_queue.run(check)


def test_an_idempotency_key_is_forgotten_after_its_window(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await q.enqueue(call("c1", idempotency_key="k"))
        late = T0 + IDEMPOTENCY_WINDOW_S
        assert await q.enqueue(call("c2", idempotency_key="k", at=late - 1)) == ("c1", False)
        assert await q.enqueue(call("c3", idempotency_key="k", at=late + 1)) == ("c3", True)
        assert await q.enqueue(call("c4", idempotency_key="k", at=late + 2)) == ("c3", False)

    make_queue.run(check)


def test_concurrent_repeats_store_one_call(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        results = await asyncio.gather(*(q.enqueue(call(f"c{i}", idempotency_key="k")) for i in range(30)))
        created = [call_id for call_id, new in results if new]
        assert len(created) == 1
        assert {call_id for call_id, _ in results} == set(created)
        assert await q.depth() == {("default", "hello"): 1}

    make_queue.run(check)


def test_a_key_outlives_its_finished_call_within_the_window(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        now = time.time()
        await q.enqueue(call("c1", idempotency_key="k", at=now))
        await q.complete((await lease(q, now))["c1"].token, attempt(at=now), None)
        assert await q.purge(finished_before=time.time() + 1) == 1
        assert await q.get("c1") is None
        assert await q.enqueue(call("c2", idempotency_key="k", at=now + 1)) == ("c1", False)
        assert await q.enqueue(call("c3", idempotency_key="k", at=now + IDEMPOTENCY_WINDOW_S + 1)) == (
            "c3", True,
        )  # fmt: skip

    make_queue.run(check)


# guarantee 6 and the lease's options


def test_lease_hands_out_due_calls_oldest_first(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(
            q,
            call("f1", function="f"),
            call("g1", function="g", at=T0 + 1),
            call("f2", function="f", at=T0 + 2),
            call("later", function="g", at=T0 + 50),  # enqueued ahead of time: not due yet
            call("h1", function="h", namespace="team", at=T0 + 3),
            call("g2", function="g", at=T0 + 4),
        )
        assert await ids(q, T0 + 10, limit=2) == ["f1", "g1"]
        assert await ids(q, T0 + 10, limit=10) == ["f2", "h1", "g2"]
        assert await ids(q, T0 + 50) == ["later"]

    make_queue.run(check)


def test_a_retry_due_later_lets_younger_calls_pass(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(q, call("old"), call("young", at=T0 + 1))
        await q.retry((await lease(q, T0, limit=1))["old"].token, attempt(1, "Timeout"), at=T0 + 60)
        assert await ids(q, T0 + 1) == ["young"]

    make_queue.run(check)


def test_exclude_leaves_those_functions_alone(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(
            q,
            *(call(f"f{i}", function="f", at=T0 + i) for i in range(3)),
            call("g1", function="g", at=T0 + 10),
            call("f-team", function="f", namespace="team", at=T0 + 11),
        )
        assert await ids(q, T0 + 20, exclude=[("default", "f")]) == ["g1", "f-team"]
        assert await ids(q, T0 + 20, exclude={("default", "f"), ("default", "g")}) == []
        assert await ids(q, T0 + 20) == ["f0", "f1", "f2"]

    make_queue.run(check)


def test_exclude_retries_holds_back_only_retries(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        await enqueue_all(q, call("f-retry", function="f"), call("g-retry", function="g"))
        for one in (await lease(q, T0)).values():
            await q.retry(one.token, attempt(1, "Timeout"), at=T0 + 1)
        await enqueue_all(q, call("f-redriven", function="f", at=T0 + 1))
        await q.dead_letter((await lease(q, T0 + 1, limit=1))["f-retry"].token, attempt(2, "Timeout"))
        await q.redrive("default", "f", "f-retry", now=T0 + 2)  # attempts made: still a retry
        await enqueue_all(q, call("f-first", function="f", at=T0 + 2))

        held = {("default", "f")}
        assert await ids(q, T0 + 5, exclude_retries=held) == ["g-retry", "f-redriven", "f-first"]
        assert await ids(q, T0 + 5) == ["f-retry"]

    make_queue.run(check)


# dead-letter pages, depth, next_due, purge


def test_dead_letters_page_oldest_first(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        names = [f"d{i}" for i in range(5)]
        await enqueue_all(
            q,
            *(call(name, at=T0 + i) for i, name in enumerate(names)),
            call("other-fn", function="g", at=T0 + 10),
            call("other-ns", namespace="team", at=T0 + 11),
            call("alive", at=T0 + 12),
        )
        leased = await lease(q, T0 + 20)
        # Dead-lettered in another order than they were enqueued: pages follow enqueue order.
        for name in [*reversed(names), "other-fn", "other-ns"]:
            await q.dead_letter(leased[name].token, attempt(1, "FunctionError"))
        assert await q.dead_letters("default", "hello") == [await state(q, name) for name in names]
        first = await q.dead_letters("default", "hello", limit=2)
        second = await q.dead_letters("default", "hello", limit=2, after=first[-1].call.id)
        third = await q.dead_letters("default", "hello", limit=2, after=second[-1].call.id)
        pages = [[s.call.id for s in page] for page in (first, second, third)]
        assert pages == [["d0", "d1"], ["d2", "d3"], ["d4"]]
        assert await q.dead_letters("default", "hello", after="d4") == []
        assert [s.call.id for s in await q.dead_letters("default", "g")] == ["other-fn"]
        assert [s.call.id for s in await q.dead_letters("team", "hello")] == ["other-ns"]
        assert await q.dead_letters("default", "nothing") == []

        await q.redrive("default", "hello", "d1", now=T0 + 30)
        await q.delete_dead("default", "hello", "d2")
        assert [s.call.id for s in await q.dead_letters("default", "hello", after="d1")] == ["d3", "d4"]

    make_queue.run(check)


def test_depth_counts_unfinished_calls_per_function(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        assert await q.depth() == {}
        await enqueue_all(
            q,
            *(call(f"f{i}", function="f", at=T0 + i) for i in range(4)),
            call("g1", function="g", namespace="team", at=T0 + 10),
        )
        leased = await lease(q, T0 + 10, limit=3)
        await q.complete(leased["f0"].token, attempt(), None)  # succeeded: gone from depth
        await q.retry(leased["f1"].token, attempt(1, "Timeout"), at=T0 + 99)  # failed: counts
        await q.dead_letter(leased["f2"].token, None)  # dead: gone
        assert await q.depth() == {("default", "f"): 1 + 1, ("team", "g"): 1}
        running = await lease(q, T0 + 10)
        assert list(running) == ["f3", "g1"]
        assert await q.depth() == {("default", "f"): 2, ("team", "g"): 1}  # running counts

    make_queue.run(check)


def test_next_due_is_the_earliest_due_time_or_deadline(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        assert await q.next_due() is None
        await enqueue_all(q, call("c1", at=T0 + 50, lease_s=10.0), call("c2", at=T0 + 70, key="k"))
        await enqueue_all(q, call("c3", at=T0 + 10, key="k"))  # waits behind c2: not due before it
        assert await q.next_due() == T0 + 50
        assert await ids(q, T0 + 55, exclude=[("default", "hello")]) == []
        assert await q.next_due() == T0 + 50  # due and not leased: still the earliest
        leased = await lease(q, T0 + 55, limit=1)
        assert await q.next_due() == T0 + 65  # c1's lease deadline
        await q.complete(leased["c1"].token, attempt(), None)
        assert await q.next_due() == T0 + 70
        await q.dead_letter((await lease(q, T0 + 70))["c2"].token, None, hold_key=True)
        assert await q.next_due() is None  # c3 waits for the held key, not for a time

    make_queue.run(check)


def test_purge_forgets_only_succeeded_calls_finished_before(make_queue: QueueFactory) -> None:
    async def check(q: AsyncQueue) -> None:
        now = time.time()
        await enqueue_all(q, *(call(name, at=now) for name in ("old", "new", "dead", "failed", "queued")))
        leased = await lease(q, now, limit=4)
        await q.complete(leased["old"].token, attempt(at=now), b"1")
        await q.dead_letter(leased["dead"].token, None)
        await q.retry(leased["failed"].token, attempt(1, "Timeout"), at=now + 3600)
        cut = time.time()
        while time.time() <= cut:  # finished strictly after the cut, even with a coarse clock
            await asyncio.sleep(0.001)
        await q.complete(leased["new"].token, attempt(at=now), b"2")

        assert await q.purge(finished_before=cut) == 1
        assert await q.get("old") is None
        assert [(await state(q, name)).status for name in ("new", "dead", "failed", "queued")] == [
            "succeeded", "dead", "failed", "queued",
        ]  # fmt: skip
        assert await q.purge(finished_before=cut) == 0
        assert await q.purge(finished_before=time.time() + 1) == 1
        assert await q.get("new") is None

    make_queue.run(check)
