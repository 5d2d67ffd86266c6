"""The embedded object store: bytes in files under ``<data-dir>/objects``, metadata in SQLite.

Layout::

    objects/objects.db        the catalog (objects/catalog.py): buckets, keys, sizes, hashes
    objects/tmp/<id>          a body being written
    objects/blobs/<ab>/<id>   a stored object's bytes; <id> is random, <ab> its first two digits

A key never becomes a file name: each write gets a fresh random id, so no key,
whatever it holds (``..``, ``/``, NUL, 1024 bytes), can name a file outside
the store, and two writes never share a file. A put streams the body into
``tmp/<id>`` while hashing it, fsyncs it, renames it into ``blobs/`` and fsyncs
that directory; only then does one catalog transaction point the key at the
new id. Readers look up the id and open the file: an open file stays readable
after the key moves on (its old file is unlinked once the catalog no longer
names it), so a reader sees one whole version, never a mix. If the file went
between the look-up and the open, the look-up is simply done again.

A crash can leave a file in ``tmp/`` (a write that never finished) or in
``blobs/`` that no row names (written but not committed, or replaced but not
yet unlinked); :meth:`LocalObjectStore.open` sweeps both before serving, which
costs one directory listing of the store per server start.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from wuzhao.errors import NotFound, PayloadTooLarge, WuzhaoError
from wuzhao.objects.api import Body, BucketRecord, Deletion, ObjectPage, ObjectRecord
from wuzhao.objects.catalog import Catalog

T = TypeVar("T")

IO_THREADS = 8  # file reads, writes and fsyncs of transfers at once; more wait their turn
CHUNK_BYTES = 256 * 1024  # written and read per thread hop; bounds the memory of one transfer
_OPEN_ATTEMPTS = 5  # look-ups of a key whose file keeps vanishing (replaced faster than it is opened)


class LocalObjectStore:
    def __init__(self, root: Path, *, clock: Callable[[], float] = time.time) -> None:
        # Its own threads: a burst of transfers must not take the loop's default pool from the rest.
        self._pool = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="wuzhao-blobs")
        self._root = root
        self._blobs = root / "blobs"
        self._tmp = root / "tmp"
        self._catalog = Catalog(root / "objects.db")
        self._clock = clock

    async def open(self) -> None:
        await asyncio.to_thread(self._make_dirs)
        await self._catalog.open()
        await asyncio.to_thread(self._sweep, await self._catalog.all_blobs())

    async def close(self) -> None:
        await self._catalog.close()
        self._pool.shutdown(wait=False)  # a thread still busy finishes its one call

    # -- buckets --

    async def create_bucket(self, namespace: str, name: str) -> tuple[BucketRecord, bool]:
        return await self._catalog.create_bucket(namespace, name, self._clock())

    async def get_bucket(self, namespace: str, name: str) -> BucketRecord | None:
        return await self._catalog.get_bucket(namespace, name)

    async def list_buckets(self, namespace: str) -> list[BucketRecord]:
        return await self._catalog.list_buckets(namespace)

    async def delete_bucket(self, namespace: str, name: str) -> None:
        await self._catalog.delete_bucket(namespace, name)

    async def count_buckets(self, namespace: str) -> int:
        return await self._catalog.count_buckets(namespace)

    # -- objects --

    async def put_object(
        self,
        namespace: str,
        bucket: str,
        key: str,
        body: Body,
        *,
        content_type: str,
        metadata: dict[str, str] | None = None,
        max_bytes: int,
    ) -> tuple[ObjectRecord, bool]:
        if await self._catalog.get_bucket(namespace, bucket) is None:  # before reading any of the body
            raise NotFound(f"bucket {bucket!r} does not exist")
        blob = uuid.uuid4().hex
        size, etag = await self._receive(body, blob, max_bytes)
        # Shielded: once the bytes are durable, a cancelled request (the client went away) must not
        # leave the commit half-observed; the catalog, not this coroutine, decides what is stored.
        return await asyncio.shield(
            self._commit(namespace, bucket, key, blob, size, etag, content_type, dict(metadata or {}))
        )

    async def head_object(self, namespace: str, bucket: str, key: str) -> ObjectRecord:
        record, _ = await self._catalog.get_object(namespace, bucket, key)
        return record

    async def open_object(self, namespace: str, bucket: str, key: str) -> LocalReader:
        for _ in range(_OPEN_ATTEMPTS):
            record, blob = await self._catalog.get_object(namespace, bucket, key)  # NotFound when gone
            try:
                fd = await _in_thread(self._pool, os.open, self._blob_path(blob), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # replaced or deleted since the look-up: look again
            return LocalReader(record, fd, self._pool)
        raise WuzhaoError(f"object {key!r} changed {_OPEN_ATTEMPTS} times while being opened; try again")

    async def delete_object(self, namespace: str, bucket: str, key: str) -> Deletion:
        deletion, blob = await self._catalog.delete_object(namespace, bucket, key, self._clock())
        await _in_thread(self._pool, _unlink, self._blob_path(blob))  # open readers keep their file
        return deletion

    async def list_objects(
        self, namespace: str, bucket: str, *, prefix: str = "", after: str = "", limit: int
    ) -> ObjectPage:
        return await self._catalog.list_objects(namespace, bucket, prefix=prefix, after=after, limit=limit)

    # -- plumbing --

    async def _receive(self, body: Body, blob: str, max_bytes: int) -> tuple[int, str]:
        """Stream ``body`` into ``blobs/`` (through ``tmp/``); its size and SHA-256, once durable."""
        temporary = self._tmp / blob
        fd: int | None = await _in_thread(
            self._pool, os.open, temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
        )
        assert fd is not None
        hasher = hashlib.sha256()
        size = 0
        pending: list[bytes] = []
        pending_bytes = 0
        try:
            async for chunk in body:
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(f"the object is over the limit of {max_bytes} bytes")
                pending.append(chunk)
                pending_bytes += len(chunk)
                if pending_bytes >= CHUNK_BYTES:
                    await _in_thread(self._pool, _write, fd, hasher, pending)
                    pending, pending_bytes = [], 0
            await _in_thread(self._pool, _write, fd, hasher, pending)
            await _in_thread(self._pool, os.fsync, fd)
            closing, fd = fd, None
            os.close(closing)
            await _in_thread(self._pool, self._publish, temporary, blob)
        except BaseException:
            await asyncio.shield(_in_thread(self._pool, _discard, fd, temporary, self._blob_path(blob)))
            raise
        return size, hasher.hexdigest()

    def _publish(self, temporary: Path, blob: str) -> None:
        final = self._blob_path(blob)
        os.rename(temporary, final)
        _fsync_dir(final.parent)

    async def _commit(
        self,
        namespace: str,
        bucket: str,
        key: str,
        blob: str,
        size: int,
        etag: str,
        content_type: str,
        metadata: dict[str, str],
    ) -> tuple[ObjectRecord, bool]:
        try:
            record, created, replaced = await self._catalog.commit_put(
                namespace,
                bucket,
                key,
                blob=blob,
                size=size,
                etag=etag,
                content_type=content_type,
                metadata=metadata,
                now=self._clock(),
            )
        except BaseException:  # the bucket went meanwhile, or the disk failed: nothing names the file
            await _in_thread(self._pool, _unlink, self._blob_path(blob))
            raise
        if replaced is not None:
            await _in_thread(self._pool, _unlink, self._blob_path(replaced))
        return record, created

    def _blob_path(self, blob: str) -> Path:
        return self._blobs / blob[:2] / blob

    def _make_dirs(self) -> None:
        for directory in (self._root, self._blobs, self._tmp):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for high in range(256):  # all fan-out directories up front: a put never has to make (and fsync) one
            (self._blobs / f"{high:02x}").mkdir(mode=0o700, exist_ok=True)
        _fsync_dir(self._blobs)
        _fsync_dir(self._root)

    def _sweep(self, referenced: set[str]) -> None:
        """Remove what a crash left behind: unfinished writes, and files no row names."""
        for leftover in self._tmp.iterdir():
            _unlink(leftover)
        for fan_out in self._blobs.iterdir():
            if fan_out.is_dir():
                for path in fan_out.iterdir():
                    if path.name not in referenced:
                        _unlink(path)


class LocalReader:
    """An open object file and the record of the version it holds."""

    def __init__(self, record: ObjectRecord, fd: int, pool: Executor) -> None:
        self.record = record
        self._fd: int | None = fd
        self._pool = pool

    async def chunks(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        end = self.record.size if end is None else min(end, self.record.size)
        offset = start
        while offset < end:
            fd = self._fd
            if fd is None:
                return  # closed: the response went away
            data = await _in_thread(self._pool, os.pread, fd, min(CHUNK_BYTES, end - offset), offset)
            if not data:  # shorter than its record: the file was damaged outside the store
                raise WuzhaoError(
                    f"object {self.record.key!r} is shorter on disk ({offset} bytes) than its "
                    f"{self.record.size} bytes"
                )
            offset += len(data)
            yield data

    async def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _write(fd: int, hasher: hashlib._Hash, chunks: list[bytes]) -> None:
    for chunk in chunks:
        hasher.update(chunk)
        view = memoryview(chunk)
        while view:
            written = os.write(fd, view)
            view = view[written:]


def _discard(fd: int | None, *paths: Path) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)
    for path in paths:
        _unlink(path)


async def _in_thread(pool: Executor, call: Callable[..., T], *args: Any) -> T:
    """Run ``call`` on ``pool``; a cancelled caller still waits for the thread to finish.

    A cancelled ``run_in_executor`` (or ``to_thread``) returns at once while its
    thread runs on: the caller would then close a file descriptor the thread is
    still writing to (or reading from), and the number could already name
    another file.
    """
    future = asyncio.get_running_loop().run_in_executor(pool, call, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await future
        raise


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
