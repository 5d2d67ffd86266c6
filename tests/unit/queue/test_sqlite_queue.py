"""What the embedded queue adds to the contract: group commit, one owner per file, and leases whose
cost does not grow with the calls they cannot hand out."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from wuzhao.queue.api import AsyncCall, Attempt
from wuzhao.queue.sqlite import SqliteQueue, calls, leases
from wuzhao.queue.sqlite.schema import SCHEMA

T0 = 1_000_000.0


def call(call_id: str, *, function: str = "hello", key: str | None = None, at: float = T0) -> AsyncCall:
    return AsyncCall(call_id, "default", function, b"{}", at, ordering_key=key)


@pytest.fixture
def make_queue(tmp_path: Path) -> Callable[[], SqliteQueue]:
    return lambda: SqliteQueue(tmp_path / "queue.db")


def test_concurrent_enqueues_share_commits(make_queue: Callable[[], SqliteQueue]) -> None:
    async def main() -> None:
        queue = make_queue()
        await queue.open()
        before = queue.writer.batches
        await asyncio.gather(*(queue.enqueue(call(f"c{i}")) for i in range(300)))
        shared = queue.writer.batches - before
        await queue.close()
        assert shared < 30  # 300 callers, a handful of transactions

    asyncio.run(main())


def test_a_lone_caller_commits_alone_and_at_once(make_queue: Callable[[], SqliteQueue]) -> None:
    async def main() -> None:
        queue = make_queue()
        await queue.open()
        before = queue.writer.batches
        for i in range(20):
            await queue.enqueue(call(f"c{i}"))
        alone = queue.writer.batches - before
        await queue.close()
        assert alone == 20  # nobody waited for company

    asyncio.run(main())


def test_a_failing_job_leaves_its_batch_intact(make_queue: Callable[[], SqliteQueue]) -> None:
    async def main() -> None:
        queue = make_queue()
        await queue.open()

        def half_done(db: sqlite3.Connection) -> None:
            calls.enqueue(db, call("half"))
            raise OSError("boom after a write")

        results = await asyncio.gather(
            *(queue.enqueue(call(f"c{i}")) for i in range(10)),
            queue.writer.run(half_done),
            *(queue.enqueue(call(f"d{i}")) for i in range(10)),
            return_exceptions=True,
        )
        assert isinstance(results[10], OSError)
        assert await queue.get("half") is None  # its own write was undone
        assert (await queue.depth())[("default", "hello")] == 20
        await queue.close()

    asyncio.run(main())


def test_one_queue_per_file(make_queue: Callable[[], SqliteQueue]) -> None:
    async def main() -> None:
        first = make_queue()
        await first.open()
        second = make_queue()
        with pytest.raises(RuntimeError, match="in use"):
            await second.open()
        await first.enqueue(call("c1"))  # the failed open disturbed nothing
        await first.close()
        await second.open()
        assert await second.get("c1") is not None
        await second.close()

    asyncio.run(main())


def test_commits_are_durable_on_disk(make_queue: Callable[[], SqliteQueue]) -> None:
    async def main() -> None:
        queue = make_queue()
        await queue.open()
        settings = await queue.writer.run(
            lambda db: (
                db.execute("PRAGMA journal_mode").fetchone()[0],
                db.execute("PRAGMA synchronous").fetchone()[0],
            )
        )
        await queue.close()
        assert settings == ("wal", 2)  # 2: FULL, the WAL is fsynced at every commit

    asyncio.run(main())


def test_a_closed_queue_refuses_work(make_queue: Callable[[], SqliteQueue]) -> None:
    async def main() -> None:
        queue = make_queue()
        with pytest.raises(RuntimeError, match="not open"):
            await queue.enqueue(call("c1"))
        await queue.open()
        await queue.close()
        with pytest.raises(RuntimeError, match="not open"):
            await queue.get("c1")

    asyncio.run(main())


# The cost of a lease, counted in SQLite virtual-machine steps (deterministic, unlike time).


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(tmp_path / "plain.db", isolation_level=None)
    connection.executescript(SCHEMA)
    yield connection
    connection.close()


def steps(db: sqlite3.Connection, work: Callable[[], object]) -> int:
    count = 0

    def tick() -> int:
        nonlocal count
        count += 1
        return 0

    db.set_progress_handler(tick, 100)
    try:
        work()
    finally:
        db.set_progress_handler(None, 0)
    return count * 100


def backlog(db: sqlite3.Connection, n: int, tag: str) -> None:
    """``n`` calls of each kind lease must step over: behind one key, of an excluded function,
    retries of a function whose retries must wait, retries not yet due."""
    db.execute("BEGIN")
    for i in range(n):
        calls.enqueue(db, call(f"key-{tag}{i}", key="hot"))
        calls.enqueue(db, call(f"busy-{tag}{i}", function="busy"))
        calls.enqueue(db, call(f"retry-{tag}{i}", function="budget"))
        calls.enqueue(db, call(f"later-{tag}{i}", function="later"))
    skip = {("default", "busy"), ("default", "ok")}
    for one in leases.lease(db, T0, 4 * n, "w", skip, {("default", "budget")}):
        if one.call.function in ("budget", "later"):
            due = T0 if one.call.function == "budget" else T0 + 3600
            leases.retry(db, one.token, Attempt(1, T0, 1.0, "Timeout"), due, T0)
    # Calls that became due move lanes once, at the next lease: a cost per call, paid once.
    assert leases.lease(db, T0 + 1, 10, "w", skip, {("default", "budget")}) == []
    db.execute("COMMIT")


@pytest.mark.parametrize("n", [200])
def test_lease_cost_does_not_grow_with_calls_it_cannot_hand_out(db: sqlite3.Connection, n: int) -> None:
    def lease_once() -> list[str]:
        db.execute("BEGIN")
        leased = leases.lease(
            db, T0 + 1, 10, "w", exclude={("default", "busy")}, exclude_retries={("default", "budget")}
        )
        db.execute("ROLLBACK")
        return [one.call.id for one in leased]

    db.execute("BEGIN")
    for i in range(5):
        calls.enqueue(db, call(f"ok-{i}", function="ok"))
    db.execute("COMMIT")
    backlog(db, n, "a")
    assert lease_once() == ["ok-0", "ok-1", "ok-2", "ok-3", "ok-4"]
    small = steps(db, lease_once)
    backlog(db, 10 * n, "b")  # ten times more of everything that must be stepped over
    assert lease_once() == ["ok-0", "ok-1", "ok-2", "ok-3", "ok-4"]
    large = steps(db, lease_once)
    assert large < small * 1.5, (small, large)


def test_hot_queries_use_their_indexes(db: sqlite3.Connection) -> None:
    queries = {
        leases._READY: ("d", "f", T0, 10),
        leases._READY_FIRST: ("d", "f", T0, 10),
        "UPDATE calls SET lane = 2 WHERE lane > 0 AND lane = 1 AND wake_at <= ?": (T0,),
        "SELECT MIN(wake_at) FROM calls WHERE lane > 0 AND lane = ?": (1,),
        "SELECT seq FROM calls WHERE namespace = ? AND function = ? AND ordering_key = ?"
        " AND active = 1 AND ordering_key IS NOT NULL ORDER BY seq LIMIT 1": ("d", "f", "k"),
        "UPDATE calls SET status = 'queued' WHERE status = 'running' AND consumer = ?": ("w",),
        "SELECT seq FROM calls WHERE status = 'dead' AND namespace = ? AND function = ? AND seq > ?"
        " ORDER BY seq LIMIT ?": ("d", "f", 0, 10),
        "SELECT seq FROM calls WHERE status = 'succeeded' AND updated_at < ? LIMIT ?": (T0, 10),
    }
    for query, args in queries.items():
        plan = " / ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {query}", args))
        assert "USING" in plan and "TEMP B-TREE" not in plan, (query, plan)
