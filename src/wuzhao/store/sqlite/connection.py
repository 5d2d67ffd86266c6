"""The one SQLite connection of the embedded store, and its transactions.

aiosqlite runs every statement on one dedicated thread, so the event loop never
blocks on disk. The connection is shared, so every write holds ``_write_lock``
for its whole transaction: otherwise a coroutine could slip its statement into
another's open transaction between two awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from wuzhao.errors import Conflict
from wuzhao.store.sqlite.schema import SCHEMA


class Connection:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._db: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self._path, isolation_level=None)
        # WAL lets readers proceed during a write; synchronous=FULL makes every
        # commit durable on disk before it returns (the contract's point 1).
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=FULL")
        await self._db.execute("PRAGMA busy_timeout=5000")
        await self._db.executescript(SCHEMA)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @contextlib.asynccontextmanager
    async def transaction(self, *, immediate: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction; commits on success, rolls back on any error."""
        db = self.db
        async with self._write_lock:
            await db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            try:
                yield db
                await db.execute("COMMIT")
            except BaseException:
                # A cancellation can land after COMMIT already ran on aiosqlite's
                # thread: then there is nothing to roll back, and the original
                # exception (the cancellation) must still propagate.
                with contextlib.suppress(sqlite3.OperationalError):
                    await db.execute("ROLLBACK")
                raise

    async def execute(self, statement: str, args: Sequence[Any] = ()) -> int:
        """One write statement in its own transaction; returns the rows it changed."""
        async with self.transaction() as db, db.execute(statement, args) as cur:
            return int(cur.rowcount)

    async def execute_many(self, statement: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            async with self.transaction() as db:
                await db.executemany(statement, rows)

    async def last_number(self, kind: str, namespace: str, name: str) -> int:
        row = await self.fetch_one(
            "SELECT last FROM numbering WHERE kind = ? AND namespace = ? AND name = ?",
            (kind, namespace, name),
        )
        return int(row[0]) if row else 0

    async def _take_number(
        self, db: aiosqlite.Connection, kind: str, namespace: str, name: str, number: int
    ) -> None:
        """Inside a write transaction: claim ``number`` if it is the next one, else Conflict."""
        async with db.execute(
            "SELECT last FROM numbering WHERE kind = ? AND namespace = ? AND name = ?",
            (kind, namespace, name),
        ) as cur:
            row = await cur.fetchone()
        last = int(row[0]) if row else 0
        if number != last + 1:
            raise Conflict(f"{kind} {number} of {name!r} is not the next number ({last + 1})")
        await db.execute(
            "INSERT OR REPLACE INTO numbering (kind, namespace, name, last) VALUES (?, ?, ?, ?)",
            (kind, namespace, name, number),
        )

    async def fetch_one(self, query: str, args: Sequence[Any] = ()) -> Any:
        async with self.db.execute(query, args) as cur:
            return await cur.fetchone()

    async def fetch_all(self, query: str, args: Sequence[Any] = ()) -> list[Any]:
        async with self.db.execute(query, args) as cur:
            return list(await cur.fetchall())
