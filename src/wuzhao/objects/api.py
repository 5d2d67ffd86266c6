"""The object store contract: buckets of named byte streams, per namespace.

Implementations: ``objects.local.LocalObjectStore`` (embedded: files under
``<data-dir>/objects``, metadata in SQLite). Another backend (a cluster's
shared store) implements the same protocol and passes the same contract tests
(``tests/contract/test_objects.py``).

Names are checked before they reach a store (``objects.names``, by
``control.objects.Objects``); a store may assume a valid bucket name and key.

Guarantees every store gives:

1. **Isolation.** A bucket belongs to one namespace; the same bucket name in
   two namespaces is two buckets. Nothing of one namespace is reachable by
   naming it from another: it does not exist there (``errors.NotFound``).
2. **Containment by construction.** No key, whatever bytes it holds, can name
   storage outside its bucket: a key is never used as (part of) a file name.
3. **Durable writes.** ``put_object`` returns only once the object's bytes and
   its metadata are on disk (the file and its directory fsynced, the metadata
   committed); ``delete_object`` and the bucket operations likewise.
4. **Atomic replace.** A reader of a key sees either the whole old object or
   the whole new one with its own metadata (size, etag), never a mix, and an
   object being read stays readable to the end even if it is replaced or
   deleted meanwhile. A write that fails (a body over the size cap, a client
   that went away, a crash) changes nothing visible.
5. **Streaming.** ``put_object`` consumes its body chunk by chunk and
   ``ObjectReader.chunks`` yields bounded chunks: no whole object is held in
   memory, whatever its size. The body's SHA-256 is computed while it is
   written: ``etag`` is its hex digest.
6. **Order.** ``list_objects`` returns keys in the byte order of their UTF-8
   (= code point order), from after ``after``, at most ``limit`` of them;
   ``next`` is the last key of the page when more follow, else None.
7. **Sequencer.** Every change (a put or a delete) gets a number greater than
   every earlier change's of the same store, so events about one key can be
   ordered (and stale ones dropped) by whoever receives them.
8. **Buckets.** ``create_bucket`` is idempotent (it reports whether it made
   the bucket); ``delete_bucket`` refuses a bucket that still holds an object
   (``errors.Conflict``). Object operations on a missing bucket are
   ``errors.NotFound``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Literal, Protocol

import msgspec


class BucketRecord(msgspec.Struct, frozen=True):
    namespace: str
    name: str
    created_at: float


class ObjectRecord(msgspec.Struct, frozen=True):
    """One stored object's metadata (its bytes are read through :class:`ObjectReader`)."""

    namespace: str
    bucket: str
    key: str
    size: int
    etag: str  # hex SHA-256 of the bytes
    content_type: str
    created_at: float  # when the key was first written (kept across replacements)
    modified_at: float  # when these bytes were written
    sequencer: int  # the change that wrote them (guarantee 7)
    metadata: dict[str, str] = msgspec.field(default_factory=dict)  # user metadata


class ObjectPage(msgspec.Struct, frozen=True):
    objects: list[ObjectRecord]
    next: str | None  # pass as ``after`` for the next page; None: this was the last


class Deletion(msgspec.Struct, frozen=True):
    """What a delete removed, and the change that removed it."""

    removed: ObjectRecord
    sequencer: int
    deleted_at: float


class ObjectEvent(msgspec.Struct, frozen=True):
    """A change of one object, as triggers will receive it (``control.objects``)."""

    namespace: str
    bucket: str
    key: str
    kind: Literal["created", "deleted"]
    size: int  # of the object written, or of the one deleted
    etag: str
    sequencer: int
    time: float


class ObjectReader(Protocol):
    """One opened object: the metadata and the bytes of the same version (guarantee 4)."""

    record: ObjectRecord

    def chunks(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The bytes ``[start, end)`` (end: the size when None), in bounded chunks."""
        ...

    async def close(self) -> None: ...


class ObjectStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    # buckets
    async def create_bucket(self, namespace: str, name: str) -> tuple[BucketRecord, bool]:
        """The bucket, and True if this call made it (False: it was there already)."""
        ...

    async def get_bucket(self, namespace: str, name: str) -> BucketRecord | None: ...

    async def list_buckets(self, namespace: str) -> list[BucketRecord]:
        """The namespace's buckets, by name."""
        ...

    async def delete_bucket(self, namespace: str, name: str) -> None:
        """``NotFound`` if there is none, ``Conflict`` while it holds an object."""
        ...

    # objects
    async def put_object(
        self,
        namespace: str,
        bucket: str,
        key: str,
        body: AsyncIterable[bytes],
        *,
        content_type: str,
        metadata: dict[str, str] | None = None,
        max_bytes: int,
    ) -> tuple[ObjectRecord, bool]:
        """Store ``body`` as ``key``, replacing what was there; the record, and True if it is new.

        ``errors.PayloadTooLarge`` as soon as the body passes ``max_bytes``
        (nothing is stored), ``NotFound`` without the bucket.
        """
        ...

    async def head_object(self, namespace: str, bucket: str, key: str) -> ObjectRecord:
        """The object's metadata; ``NotFound`` without it (or its bucket)."""
        ...

    async def open_object(self, namespace: str, bucket: str, key: str) -> ObjectReader:
        """The object opened for reading; the caller closes the reader."""
        ...

    async def delete_object(self, namespace: str, bucket: str, key: str) -> Deletion:
        """Remove ``key``; ``NotFound`` without it (or its bucket)."""
        ...

    async def list_objects(
        self, namespace: str, bucket: str, *, prefix: str = "", after: str = "", limit: int
    ) -> ObjectPage: ...

    async def count_buckets(self, namespace: str) -> int:
        """How many buckets the namespace holds (a namespace is deleted only when empty)."""
        ...


# A request body, a file being uploaded, frames from a function: all are chunks of bytes.
Body = AsyncIterable[bytes]
