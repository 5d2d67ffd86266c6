"""One SQLite connection on a thread of its own, running jobs in batches (group commit).

A job is a plain function of the connection. Coroutines hand jobs to the
thread and await a future; the thread takes every job waiting, runs them all in
one transaction and commits once, then resolves their futures. With
``synchronous=FULL`` the commit (one fsync) is what a durable write costs, so
callers that arrive while a commit is in flight share the next one: the batch
grows with the load and a lone caller is never kept waiting for company (there
is no timer, only the queue of jobs that piled up meanwhile).

In the writer each job runs inside its own savepoint, so a job that raises (an
ack with a stale token: ``LeaseLost``) undoes only its own changes, and the
other jobs of the batch still commit. A reader runs its batch in one read
transaction: every write whose future resolved before the read was submitted
is committed, so reads see them (read-your-writes).

sqlite3 releases the GIL while SQLite works, so the event loop keeps accepting
calls during a commit's fsync.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

MAX_BATCH = 1024  # jobs per transaction: bounds how long one commit holds the others back


class _Job:
    __slots__ = ("fn", "future", "loop")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any], future: asyncio.Future[Any]) -> None:
        self.fn = fn
        self.future = future
        self.loop = future.get_loop()


_STOP = None  # the sentinel that ends the thread, after the jobs queued before it


class ConnectionThread:
    """``write``: BEGIN IMMEDIATE, a savepoint per job; else a read transaction per batch."""

    def __init__(
        self,
        path: Path,
        *,
        write: bool,
        setup: Callable[[sqlite3.Connection], None],
        name: str,
    ) -> None:
        self._path = path
        self._write = write
        self._setup = setup
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread: threading.Thread | None = None
        self._accepting = False
        self.batches = 0  # transactions run, for tests and benchmarks

    async def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name=self._name, daemon=True)
        self._thread.start()
        await asyncio.wrap_future(self._ready)
        self._accepting = True

    async def stop(self) -> None:
        """Finish the jobs already submitted, then close the connection."""
        if self._thread is None:
            return
        self._accepting = False
        self._jobs.put(_STOP)
        await asyncio.wrap_future(self._done)
        self._thread = None

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the thread; returns once its transaction committed."""
        if not self._accepting:
            raise RuntimeError("queue is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put(_Job(fn, future))
        return await future

    # -- on the thread -----------------------------------------------------

    def _main(self) -> None:
        try:
            connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=True)
        except BaseException as exc:
            self._ready.set_exception(exc)
            self._done.set_result(None)
            return
        try:
            try:
                self._setup(connection)
            except BaseException as exc:
                self._ready.set_exception(exc)
                return
            self._ready.set_result(None)
            stopping = False
            while not stopping:
                job = self._jobs.get()
                if job is _STOP:
                    break
                batch = [job]
                while len(batch) < MAX_BATCH:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is _STOP:
                        stopping = True
                        break
                    batch.append(job)
                self._deliver(self._execute(connection, batch))
        finally:
            connection.close()
            self._fail_leftovers()
            self._done.set_result(None)

    def _fail_leftovers(self) -> None:
        leftovers: list[tuple[_Job, Any, BaseException | None]] = []
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not _STOP:
                leftovers.append((job, None, RuntimeError("queue is closed")))
        self._deliver(leftovers)

    def _execute(
        self, connection: sqlite3.Connection, batch: list[_Job]
    ) -> list[tuple[_Job, Any, BaseException | None]]:
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        try:
            connection.execute("BEGIN IMMEDIATE" if self._write else "BEGIN")
            for job in batch:
                outcomes.append(self._one(connection, job))
            connection.execute("COMMIT")
        except Exception as exc:
            # BEGIN or COMMIT failed (disk full, I/O error): nothing of the batch is
            # durable, so every caller of it gets the error.
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            return [(job, None, exc) for job in batch]
        finally:
            self.batches += 1
        return outcomes

    def _one(self, connection: sqlite3.Connection, job: _Job) -> tuple[_Job, Any, BaseException | None]:
        if not self._write:
            try:
                return job, job.fn(connection), None
            except Exception as exc:
                return job, None, exc
        connection.execute("SAVEPOINT job")
        try:
            value = job.fn(connection)
        except Exception as exc:
            connection.execute("ROLLBACK TO job")
            connection.execute("RELEASE job")
            return job, None, exc
        connection.execute("RELEASE job")
        return job, value, None

    @staticmethod
    def _deliver(outcomes: list[tuple[_Job, Any, BaseException | None]]) -> None:
        # One wake-up per event loop per batch, not one per job.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, Any, BaseException | None]]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].loop, []).append(outcome)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve, items)


def _resolve(outcomes: list[tuple[_Job, Any, BaseException | None]]) -> None:
    for job, value, error in outcomes:
        if job.future.done():  # the caller was cancelled; the work itself is done (or not) regardless
            continue
        if error is None:
            job.future.set_result(value)
        else:
            job.future.set_exception(error)
