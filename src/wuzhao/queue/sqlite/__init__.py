"""The embedded queue: one SQLite file of its own (``<data_dir>/queue.db``), see ``queue.api``.

Writes go through one writer thread that commits in groups (``connection``):
every ``enqueue`` and ack returns only after the transaction holding it was
committed with ``synchronous=FULL`` (WAL fsynced), so it survives a kill or a
power loss; calls arriving during a commit share the next one. Look-ups go
through a second connection on a reader thread, so they never wait behind a
commit (WAL lets them read meanwhile).

Only one process may own the file: ``open`` takes an exclusive ``flock`` on
``<file>.lock`` and fails if another process holds it. That is what makes
recovery at open sound: every call still ``running`` belongs to a process that
is gone, so its lease is given back at once instead of after its deadline.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import sqlite3
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from wuzhao.queue.api import AsyncCall, Attempt, CallState, Lease
from wuzhao.queue.sqlite import calls, leases
from wuzhao.queue.sqlite.connection import ConnectionThread
from wuzhao.queue.sqlite.schema import SCHEMA

log = logging.getLogger("wuzhao.queue")

__all__ = ["SqliteQueue"]


class SqliteQueue:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None
        self._writer: ConnectionThread | None = None
        self._reader: ConnectionThread | None = None

    @property
    def writer(self) -> ConnectionThread:
        if self._writer is None:
            raise RuntimeError("queue is not open")
        return self._writer

    @property
    def reader(self) -> ConnectionThread:
        if self._reader is None:
            raise RuntimeError("queue is not open")
        return self._reader

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._writer = ConnectionThread(self.path, write=True, setup=_setup_writer, name="queue-writer")
            await self._writer.start()
            given_back = await self._writer.run(
                functools.partial(leases.recover, consumer=None, now=time.time())
            )
            if given_back:
                log.warning(
                    "queue: %d calls were running when the last process ended; queued again", given_back
                )
            self._reader = ConnectionThread(self.path, write=False, setup=_setup_reader, name="queue-reader")
            await self._reader.start()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        for thread in (self._reader, self._writer):
            if thread is not None:
                await thread.stop()
        self._reader = self._writer = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    # -- calls -------------------------------------------------------------

    async def enqueue(self, call: AsyncCall, *, dead: dict[str, Any] | None = None) -> tuple[str, bool]:
        return await self.writer.run(functools.partial(calls.enqueue, call=call, dead=dead))

    async def get(self, call_id: str) -> CallState | None:
        return await self.reader.run(functools.partial(calls.get, call_id=call_id))

    async def dead_letters(
        self, namespace: str, function: str, *, limit: int = 100, after: str | None = None
    ) -> list[CallState]:
        return await self.reader.run(
            functools.partial(
                calls.dead_letters, namespace=namespace, function=function, limit=limit, after=after
            )
        )

    async def redrive(self, namespace: str, function: str, call_id: str, *, now: float) -> bool:
        return await self.writer.run(
            functools.partial(calls.redrive, namespace=namespace, function=function, call_id=call_id, now=now)
        )

    async def delete_dead(self, namespace: str, function: str, call_id: str) -> bool:
        return await self.writer.run(
            functools.partial(calls.delete_dead, namespace=namespace, function=function, call_id=call_id)
        )

    async def depth(self) -> dict[tuple[str, str], int]:
        return await self.reader.run(calls.depth)

    async def next_due(self) -> float | None:
        return await self.reader.run(calls.next_due)

    async def purge(self, *, finished_before: float) -> int:
        total = 0
        while True:  # in chunks: one huge delete would hold every enqueue back until it is done
            purged = await self.writer.run(
                functools.partial(calls.purge_calls, finished_before=finished_before)
            )
            total += purged
            if purged < calls.PURGE_CHUNK:
                break
        await self.writer.run(functools.partial(calls.purge_keys, finished_before=finished_before))
        return total

    # -- leases ------------------------------------------------------------

    async def lease(
        self,
        now: float,
        limit: int,
        *,
        consumer: str,
        exclude: Collection[tuple[str, str]] = (),
        exclude_retries: Collection[tuple[str, str]] = (),
    ) -> list[Lease]:
        return await self.writer.run(
            functools.partial(
                leases.lease,
                now=now,
                limit=limit,
                consumer=consumer,
                exclude=frozenset(exclude),
                exclude_retries=frozenset(exclude_retries),
            )
        )

    async def recover(self, consumer: str) -> int:
        return await self.writer.run(functools.partial(leases.recover, consumer=consumer, now=time.time()))

    async def complete(self, token: str, attempt: Attempt, result: bytes | None) -> None:
        await self.writer.run(
            functools.partial(leases.complete, token=token, attempt=attempt, result=result, now=time.time())
        )

    async def retry(self, token: str, attempt: Attempt, *, at: float) -> None:
        await self.writer.run(
            functools.partial(leases.retry, token=token, attempt=attempt, at=at, now=time.time())
        )

    async def postpone(self, token: str, *, at: float) -> None:
        await self.writer.run(functools.partial(leases.postpone, token=token, at=at, now=time.time()))

    async def dead_letter(
        self,
        token: str,
        attempt: Attempt | None,
        *,
        hold_key: bool = False,
        error: dict[str, Any] | None = None,
    ) -> None:
        await self.writer.run(
            functools.partial(
                leases.dead_letter,
                token=token,
                attempt=attempt,
                hold_key=hold_key,
                now=time.time(),
                error=error,
            )
        )

    # -- plumbing ----------------------------------------------------------

    def _lock(self) -> None:
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeError(f"{self.path} is in use by another process (or another open queue)") from None
        self._lock_fd = fd


def _setup_writer(db: sqlite3.Connection) -> None:
    mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode != "wal":
        raise RuntimeError(f"{mode!r} journal: the queue needs WAL (is the file on a network filesystem?)")
    # FULL: every commit fsyncs the WAL, so a returned enqueue survives a power loss too (guarantee 1).
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=5000")
    db.executescript(SCHEMA)


def _setup_reader(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA busy_timeout=5000")
    db.execute("PRAGMA query_only=1")
