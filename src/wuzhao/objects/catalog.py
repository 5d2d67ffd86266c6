"""The embedded object store's metadata: buckets and objects in one SQLite file.

Every statement runs on one dedicated thread, and every method is one whole
transaction run there in one go. Unlike aiosqlite (which the platform store
uses), nothing can interleave with a transaction between two awaits, so a
reader never sees a row of a write that is still open, and the store needs no
write lock of its own.

Keys are stored as BLOBs of their UTF-8: SQLite compares BLOBs with memcmp, so
the index order is the byte order the contract promises, and a prefix is a
range ``[prefix, successor(prefix))`` the index answers without a scan.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from wuzhao.errors import Conflict, NotFound
from wuzhao.objects.api import BucketRecord, Deletion, ObjectPage, ObjectRecord
from wuzhao.objects.names import key_successor

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    id INTEGER PRIMARY KEY,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (namespace, name)
);
CREATE TABLE IF NOT EXISTS objects (
    bucket_id INTEGER NOT NULL REFERENCES buckets (id),
    key BLOB NOT NULL,
    blob TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    content_type TEXT NOT NULL,
    metadata BLOB NOT NULL,
    created_at REAL NOT NULL,
    modified_at REAL NOT NULL,
    sequencer INTEGER NOT NULL,
    PRIMARY KEY (bucket_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sequencer (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last INTEGER NOT NULL
);
INSERT OR IGNORE INTO sequencer (id, last) VALUES (1, 0);
"""

_OBJECT = "key, size, etag, content_type, created_at, modified_at, sequencer, metadata"


class Catalog:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._db: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wuzhao-objects")
        await self._run(self._connect)

    async def close(self) -> None:
        if self._thread is not None:
            await self._run(self._disconnect)
            self._thread.shutdown(wait=True)
            self._thread = None

    # -- buckets (each method: one transaction on the catalog's thread) --

    async def create_bucket(self, namespace: str, name: str, now: float) -> tuple[BucketRecord, bool]:
        def create(db: sqlite3.Connection) -> tuple[BucketRecord, bool]:
            cursor = db.execute(
                "INSERT OR IGNORE INTO buckets (namespace, name, created_at) VALUES (?, ?, ?)",
                (namespace, name, now),
            )
            row = db.execute(
                "SELECT created_at FROM buckets WHERE namespace = ? AND name = ?", (namespace, name)
            ).fetchone()
            return BucketRecord(namespace, name, row[0]), cursor.rowcount > 0

        return await self._write(create)

    async def get_bucket(self, namespace: str, name: str) -> BucketRecord | None:
        def get(db: sqlite3.Connection) -> BucketRecord | None:
            row = db.execute(
                "SELECT created_at FROM buckets WHERE namespace = ? AND name = ?", (namespace, name)
            ).fetchone()
            return BucketRecord(namespace, name, row[0]) if row else None

        return await self._read(get)

    async def list_buckets(self, namespace: str) -> list[BucketRecord]:
        def list_(db: sqlite3.Connection) -> list[BucketRecord]:
            rows = db.execute(
                "SELECT name, created_at FROM buckets WHERE namespace = ? ORDER BY name", (namespace,)
            ).fetchall()
            return [BucketRecord(namespace, name, created_at) for name, created_at in rows]

        return await self._read(list_)

    async def count_buckets(self, namespace: str) -> int:
        def count(db: sqlite3.Connection) -> int:
            return int(
                db.execute("SELECT COUNT(*) FROM buckets WHERE namespace = ?", (namespace,)).fetchone()[0]
            )

        return await self._read(count)

    async def delete_bucket(self, namespace: str, name: str) -> None:
        def delete(db: sqlite3.Connection) -> None:
            bucket_id = _bucket_id(db, namespace, name)
            held = db.execute("SELECT COUNT(*) FROM objects WHERE bucket_id = ?", (bucket_id,)).fetchone()[0]
            if held:
                raise Conflict(f"bucket {name!r} still holds {held} object{'s' if held != 1 else ''}")
            db.execute("DELETE FROM buckets WHERE id = ?", (bucket_id,))

        await self._write(delete)

    # -- objects --

    async def commit_put(
        self,
        namespace: str,
        bucket: str,
        key: str,
        *,
        blob: str,
        size: int,
        etag: str,
        content_type: str,
        metadata: dict[str, str],
        now: float,
    ) -> tuple[ObjectRecord, bool, str | None]:
        """Point ``key`` at ``blob``: the record, whether the key is new, and the blob it replaced."""

        def put(db: sqlite3.Connection) -> tuple[ObjectRecord, bool, str | None]:
            bucket_id = _bucket_id(db, namespace, bucket)
            old = db.execute(
                "SELECT blob, created_at FROM objects WHERE bucket_id = ? AND key = ?",
                (bucket_id, key.encode()),
            ).fetchone()
            sequencer = _next_sequencer(db)
            created_at = old[1] if old else now
            db.execute(
                "INSERT OR REPLACE INTO objects (bucket_id, key, blob, size, etag, content_type, metadata,"
                " created_at, modified_at, sequencer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    bucket_id,
                    key.encode(),
                    blob,
                    size,
                    etag,
                    content_type,
                    msgspec.json.encode(metadata),
                    created_at,
                    now,
                    sequencer,
                ),
            )
            record = ObjectRecord(
                namespace, bucket, key, size, etag, content_type, created_at, now, sequencer, dict(metadata)
            )
            return record, old is None, old[0] if old else None

        return await self._write(put)

    async def get_object(self, namespace: str, bucket: str, key: str) -> tuple[ObjectRecord, str]:
        """The object's record and blob; ``NotFound`` naming what is missing."""

        def get(db: sqlite3.Connection) -> tuple[ObjectRecord, str]:
            bucket_id = _bucket_id(db, namespace, bucket)
            row = db.execute(
                f"SELECT {_OBJECT}, blob FROM objects WHERE bucket_id = ? AND key = ?",
                (bucket_id, key.encode()),
            ).fetchone()
            if row is None:
                raise NotFound(f"object {key!r} does not exist in bucket {bucket!r}")
            return _record(namespace, bucket, row), row[-1]

        return await self._read(get)

    async def delete_object(self, namespace: str, bucket: str, key: str, now: float) -> tuple[Deletion, str]:
        """Remove ``key``: what was removed, and its blob (for the caller to unlink)."""

        def delete(db: sqlite3.Connection) -> tuple[Deletion, str]:
            bucket_id = _bucket_id(db, namespace, bucket)
            row = db.execute(
                f"DELETE FROM objects WHERE bucket_id = ? AND key = ? RETURNING {_OBJECT}, blob",
                (bucket_id, key.encode()),
            ).fetchone()
            if row is None:
                raise NotFound(f"object {key!r} does not exist in bucket {bucket!r}")
            return Deletion(_record(namespace, bucket, row), _next_sequencer(db), now), row[-1]

        return await self._write(delete)

    async def list_objects(
        self, namespace: str, bucket: str, *, prefix: str, after: str, limit: int
    ) -> ObjectPage:
        def list_(db: sqlite3.Connection) -> ObjectPage:
            bucket_id = _bucket_id(db, namespace, bucket)
            low, upper = prefix.encode(), key_successor(prefix.encode())
            clauses, args = ["bucket_id = ?", "key >= ?"], [bucket_id, low]
            if after:
                clauses.append("key > ?")
                args.append(after.encode())
            if upper is not None:
                clauses.append("key < ?")
                args.append(upper)
            rows = db.execute(
                f"SELECT {_OBJECT} FROM objects WHERE {' AND '.join(clauses)} ORDER BY key LIMIT ?",
                (*args, limit + 1),  # one more than asked: whether another page follows
            ).fetchall()
            records = [_record(namespace, bucket, row) for row in rows[:limit]]
            more = len(rows) > limit
            return ObjectPage(records, records[-1].key if more and records else None)

        return await self._read(list_)

    async def all_blobs(self) -> set[str]:
        """Every blob a row names (what the start-up sweep keeps)."""

        def blobs(db: sqlite3.Connection) -> set[str]:
            return {row[0] for row in db.execute("SELECT blob FROM objects")}

        return await self._read(blobs)

    # -- plumbing --

    def _connect(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self._path, isolation_level=None)
        # WAL: readers do not wait for a writer's fsync; synchronous=FULL: a commit is on disk
        # when it returns (the contract's point 3).
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(SCHEMA)
        self._db = db

    def _disconnect(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def _run(self, call: Callable[[], T]) -> T:
        if self._thread is None:
            raise RuntimeError("the object catalog is not open")
        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(lambda: query(self._connection()))

    async def _write(self, change: Callable[[sqlite3.Connection], T]) -> T:
        def transaction() -> T:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                result = change(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

        return await self._run(transaction)

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the object catalog is not open")
        return self._db


def _bucket_id(db: sqlite3.Connection, namespace: str, name: str) -> int:
    row = db.execute("SELECT id FROM buckets WHERE namespace = ? AND name = ?", (namespace, name)).fetchone()
    if row is None:
        raise NotFound(f"bucket {name!r} does not exist")
    return int(row[0])


def _next_sequencer(db: sqlite3.Connection) -> int:
    return int(db.execute("UPDATE sequencer SET last = last + 1 WHERE id = 1 RETURNING last").fetchone()[0])


def _record(namespace: str, bucket: str, row: Any) -> ObjectRecord:
    key, size, etag, content_type, created_at, modified_at, sequencer, metadata = row[:8]
    return ObjectRecord(
        namespace,
        bucket,
        bytes(key).decode(),
        size,
        etag,
        content_type,
        created_at,
        modified_at,
        sequencer,
        msgspec.json.decode(metadata, type=dict[str, str]),
    )
