"""Buckets and objects: names checked, the size cap kept, and every change told to one hook.

This is the one way into the object store, for the HTTP API and for the
in-function API (``worker/function_api.py``), so that every write is checked
the same way and every change reaches the hook, whoever made it. Bodies are async iterables of
bytes (a request body, frames from an instance), never whole objects.

The change hook (``on_change``) is how object triggers learn of changes
(``worker/notifications.py``): it is awaited after the change is durable and
before the caller gets its answer, so each trigger's delivery is enqueued
durably first, and a kill between the write and the delivery loses nothing.
The hook also gets the change's *cause*: the chain of calls of the function
that made it (``domain/chains.py``), which the in-function API passes, or
None for a client's change. If it raises, the change
stands (the bytes are written, or gone) and the caller gets 500
``ObjectEventFailed`` saying so: it knows the event may be lost, and a PUT can
simply be sent again (it is idempotent and makes a new event). Undoing the
write instead would need a second durable step that can fail too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from wuzhao.domain.chains import Chain
from wuzhao.domain.timestamps import iso
from wuzhao.errors import ObjectEventFailed, PayloadTooLarge
from wuzhao.objects.api import (
    Body,
    BucketRecord,
    Deletion,
    ObjectEvent,
    ObjectPage,
    ObjectReader,
    ObjectRecord,
    ObjectStore,
)
from wuzhao.objects.names import (
    DEFAULT_LIST_LIMIT,
    check_bucket,
    check_content_type,
    check_key,
    check_metadata,
    check_prefix,
)

log = logging.getLogger("wuzhao.objects")

# on_change(event, cause): cause is the chain of the call that made the change, None for a client.
OnChange = Callable[[ObjectEvent, Chain | None], Awaitable[object]]


class Objects:
    def __init__(
        self, store: ObjectStore, *, max_object_bytes: int, on_change: OnChange | None = None
    ) -> None:
        self._store = store
        self.max_object_bytes = max_object_bytes
        self._on_change = on_change

    async def open(self) -> None:
        await self._store.open()

    async def close(self) -> None:
        await self._store.close()

    def watch(self, on_change: OnChange | None) -> None:
        """Set (or with None, remove) the change hook: the triggers, once they are built."""
        self._on_change = on_change

    # -- buckets --

    async def create_bucket(self, namespace: str, name: str) -> tuple[BucketRecord, bool]:
        return await self._store.create_bucket(namespace, check_bucket(name))

    async def list_buckets(self, namespace: str) -> list[BucketRecord]:
        return await self._store.list_buckets(namespace)

    async def delete_bucket(self, namespace: str, name: str) -> None:
        await self._store.delete_bucket(namespace, check_bucket(name))

    async def holdings(self, namespace: str) -> str | None:
        """What of the object store the namespace still holds ("2 buckets"), for its deletion."""
        count = await self._store.count_buckets(namespace)
        return f"{count} bucket{'s' if count != 1 else ''}" if count else None

    # -- objects --

    async def put(
        self,
        namespace: str,
        bucket: str,
        key: str,
        body: Body,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        declared_size: int | None = None,
        cause: Chain | None = None,
    ) -> tuple[ObjectRecord, bool]:
        """Store ``body`` as ``key``: the record, and True if the key is new.

        ``declared_size`` (a Content-Length) over the cap is refused before a
        byte is read; the cap is enforced on the bytes themselves either way.
        ``cause``: the chain of the function call writing it (None: a client).
        """
        check_bucket(bucket)
        check_key(key)
        media_type = check_content_type(content_type)
        check_metadata(metadata or {})
        if declared_size is not None and declared_size > self.max_object_bytes:
            raise PayloadTooLarge(
                f"the object is {declared_size} bytes; the limit is {self.max_object_bytes}"
            )
        record, created = await self._store.put_object(
            namespace,
            bucket,
            key,
            body,
            content_type=media_type,
            metadata=metadata,
            max_bytes=self.max_object_bytes,
        )
        event = ObjectEvent(
            namespace, bucket, key, "created", record.size, record.etag, record.sequencer, record.modified_at
        )
        await self._changed(event, cause)
        return record, created

    async def head(self, namespace: str, bucket: str, key: str) -> ObjectRecord:
        return await self._store.head_object(namespace, check_bucket(bucket), check_key(key))

    async def read(self, namespace: str, bucket: str, key: str) -> ObjectReader:
        """The object opened for reading; close the reader when done."""
        return await self._store.open_object(namespace, check_bucket(bucket), check_key(key))

    async def delete(self, namespace: str, bucket: str, key: str, *, cause: Chain | None = None) -> Deletion:
        deletion = await self._store.delete_object(namespace, check_bucket(bucket), check_key(key))
        removed = deletion.removed
        event = ObjectEvent(
            namespace,
            bucket,
            key,
            "deleted",
            removed.size,
            removed.etag,
            deletion.sequencer,
            deletion.deleted_at,
        )
        await self._changed(event, cause)
        return deletion

    async def list(
        self,
        namespace: str,
        bucket: str,
        *,
        prefix: str = "",
        after: str = "",
        limit: int = DEFAULT_LIST_LIMIT,
    ) -> ObjectPage:
        return await self._store.list_objects(
            namespace,
            check_bucket(bucket),
            prefix=check_prefix(prefix),
            after=check_prefix(after, "after"),
            limit=limit,
        )

    async def _changed(self, event: ObjectEvent, cause: Chain | None) -> None:
        if self._on_change is None:
            return
        try:
            await self._on_change(event, cause)
        except Exception as exc:
            log.exception("the change hook failed on %s of %s/%s", event.kind, event.bucket, event.key)
            verb = "written" if event.kind == "created" else "deleted"
            raise ObjectEventFailed(
                f"object {event.key!r} was {verb} (sequencer {event.sequencer}), but its {event.kind} "
                f"event could not be recorded ({type(exc).__name__}); triggers may not see it"
            ) from exc


def object_view(record: ObjectRecord) -> dict[str, Any]:
    """An object's metadata as the API and the in-function API show it."""
    return {
        "bucket": record.bucket,
        "key": record.key,
        "size": record.size,
        "etag": record.etag,
        "content_type": record.content_type,
        "created_at": iso(record.created_at),
        "modified_at": iso(record.modified_at),
        "metadata": record.metadata,
    }
