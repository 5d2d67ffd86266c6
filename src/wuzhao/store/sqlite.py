"""The embedded store: one SQLite file in WAL mode (see ``store.api`` for the contract).

aiosqlite runs every statement on one dedicated thread, so the event loop never
blocks on disk. The connection is shared, so every multi-statement transaction
holds ``_write_lock``: otherwise a coroutine could slip its statement into
another's open transaction between two awaits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiosqlite
import msgspec

from wuzhao.domain.functions import FunctionConfig, FunctionRecord
from wuzhao.errors import Conflict
from wuzhao.store.api import ApiKeyRecord, InvocationRecord, LogLine

SCHEMA = """
CREATE TABLE IF NOT EXISTS functions (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    config BLOB NOT NULL,
    code_sha256 TEXT NOT NULL,
    code_size INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (namespace, name)
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    namespace TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at REAL NOT NULL,
    description TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS invocations (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    function TEXT NOT NULL,
    revision INTEGER NOT NULL,
    status TEXT NOT NULL,
    started_at REAL NOT NULL,
    duration_ms REAL NOT NULL,
    cold_start INTEGER NOT NULL,
    init_duration_ms REAL,
    error BLOB
);
CREATE TABLE IF NOT EXISTS logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp REAL NOT NULL,
    namespace TEXT NOT NULL,
    function TEXT NOT NULL,
    invocation_id TEXT,
    stream TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_function ON logs (namespace, function, seq);
CREATE INDEX IF NOT EXISTS logs_by_function_time ON logs (namespace, function, timestamp);
CREATE INDEX IF NOT EXISTS logs_by_invocation ON logs (invocation_id, seq);
"""

_encode = msgspec.json.encode


class SqliteStore:
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

    # functions

    async def save_function(self, record: FunctionRecord) -> None:
        row = (
            _encode(record.config),
            record.code_sha256,
            record.code_size,
            record.revision,
            record.created_at,
            record.updated_at,
            record.namespace,
            record.name,
        )
        db = self.db
        async with self._write_lock:
            await db.execute("BEGIN IMMEDIATE")
            try:
                async with db.execute(
                    "SELECT revision FROM functions WHERE namespace = ? AND name = ?",
                    (record.namespace, record.name),
                ) as cur:
                    found = await cur.fetchone()
                stored = found[0] if found else 0
                if stored != record.revision - 1:
                    raise Conflict(
                        f"function {record.name!r} changed concurrently "
                        f"(stored revision {stored}, expected {record.revision - 1}); retry"
                    )
                if found:
                    await db.execute(
                        "UPDATE functions SET config=?, code_sha256=?, code_size=?, revision=?,"
                        " created_at=?, updated_at=? WHERE namespace=? AND name=?",
                        row,
                    )
                else:
                    await db.execute(
                        "INSERT INTO functions (config, code_sha256, code_size, revision,"
                        " created_at, updated_at, namespace, name) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        row,
                    )
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise

    async def get_function(self, namespace: str, name: str) -> FunctionRecord | None:
        async with self.db.execute(
            f"SELECT {_FUNCTION_COLUMNS} FROM functions WHERE namespace = ? AND name = ?",
            (namespace, name),
        ) as cur:
            row = await cur.fetchone()
        return _function(row) if row else None

    async def list_functions(self, namespace: str | None = None) -> list[FunctionRecord]:
        args: tuple[str, ...] = ()
        if namespace is None:
            query = f"SELECT {_FUNCTION_COLUMNS} FROM functions ORDER BY namespace, name"
        else:
            query = f"SELECT {_FUNCTION_COLUMNS} FROM functions WHERE namespace = ? ORDER BY name"
            args = (namespace,)
        async with self.db.execute(query, args) as cur:
            return [_function(row) for row in await cur.fetchall()]

    async def delete_function(self, namespace: str, name: str) -> bool:
        async with (
            self._write_lock,
            self.db.execute(
                "DELETE FROM functions WHERE namespace = ? AND name = ?", (namespace, name)
            ) as cur,
        ):
            return cur.rowcount > 0

    # API keys

    async def add_key(self, key: ApiKeyRecord) -> None:
        async with self._write_lock:
            await self.db.execute(
                "INSERT INTO api_keys (key_id, secret_hash, namespace, role, created_at, description)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    key.key_id,
                    key.secret_hash,
                    key.namespace,
                    key.role,
                    key.created_at,
                    key.description,
                ),
            )

    async def get_key(self, key_id: str) -> ApiKeyRecord | None:
        async with self.db.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_id = ?", (key_id,)) as cur:
            row = await cur.fetchone()
        return ApiKeyRecord(*row) if row else None

    async def list_keys(self) -> list[ApiKeyRecord]:
        async with self.db.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at") as c:
            return [ApiKeyRecord(*row) for row in await c.fetchall()]

    # invocations and logs

    async def save_invocations(self, records: Sequence[InvocationRecord]) -> None:
        rows = [
            (
                r.id,
                r.namespace,
                r.function,
                r.revision,
                r.status,
                r.started_at,
                r.duration_ms,
                int(r.cold_start),
                r.init_duration_ms,
                None if r.error is None else _encode(r.error),
            )
            for r in records
        ]
        await self._in_transaction(
            "INSERT OR REPLACE INTO invocations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
        )

    async def get_invocation(self, invocation_id: str) -> InvocationRecord | None:
        async with self.db.execute("SELECT * FROM invocations WHERE id = ?", (invocation_id,)) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return InvocationRecord(
            id=row[0],
            namespace=row[1],
            function=row[2],
            revision=row[3],
            status=row[4],
            started_at=row[5],
            duration_ms=row[6],
            cold_start=bool(row[7]),
            init_duration_ms=row[8],
            error=None if row[9] is None else msgspec.json.decode(row[9]),
        )

    async def append_logs(self, lines: Sequence[LogLine]) -> None:
        rows = [
            (ln.timestamp, ln.namespace, ln.function, ln.invocation_id, ln.stream, ln.message) for ln in lines
        ]
        await self._in_transaction(
            "INSERT INTO logs (timestamp, namespace, function, invocation_id, stream, message)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )

    async def query_logs(
        self,
        namespace: str,
        function: str,
        *,
        since: float | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> list[LogLine]:
        where = "namespace = ? AND function = ?"
        args: list[Any] = [namespace, function]
        if since is not None:
            where += " AND timestamp >= ?"
            args.append(since)
        if after is not None:
            where += " AND seq > ?"
            args.append(after)
        order = "ASC" if since is not None or after is not None else "DESC"
        async with self.db.execute(
            f"SELECT {_LOG_COLUMNS} FROM logs WHERE {where} ORDER BY seq {order} LIMIT ?",
            (*args, limit),
        ) as cur:
            rows = await cur.fetchall()
        lines = [_log(row) for row in rows]
        return lines if order == "ASC" else lines[::-1]

    async def invocation_logs(self, invocation_id: str, *, limit: int = 100) -> list[LogLine]:
        async with self.db.execute(
            f"SELECT {_LOG_COLUMNS} FROM logs WHERE invocation_id = ? ORDER BY seq DESC LIMIT ?",
            (invocation_id, limit),
        ) as cur:
            rows = await cur.fetchall()
        return [_log(row) for row in reversed(list(rows))]

    async def _in_transaction(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        db = self.db
        async with self._write_lock:
            await db.execute("BEGIN")
            try:
                await db.executemany(statement, rows)
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise


_FUNCTION_COLUMNS = "namespace, name, config, code_sha256, code_size, revision, created_at, updated_at"
_KEY_COLUMNS = "key_id, secret_hash, namespace, role, created_at, description"
_LOG_COLUMNS = "timestamp, namespace, function, invocation_id, stream, message, seq"


def _function(row: Any) -> FunctionRecord:
    config = msgspec.json.decode(row[2], type=FunctionConfig)
    return FunctionRecord(row[0], row[1], config, *row[3:])


def _log(row: Any) -> LogLine:
    return LogLine(*row)
