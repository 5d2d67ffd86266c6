import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from wuzhao.control.namespaces import Namespaces
from wuzhao.control.objects import Objects, OnChange
from wuzhao.domain import chains
from wuzhao.domain.chains import Chain
from wuzhao.errors import BadRequest, Conflict, NotFound, ObjectEventFailed, PayloadTooLarge
from wuzhao.objects.api import ObjectEvent
from wuzhao.objects.local import LocalObjectStore
from wuzhao.store.sqlite import SqliteStore

NS = "default"
OpenObjects = Callable[..., AbstractAsyncContextManager[Objects]]


@pytest.fixture
def open_objects(tmp_path: Path) -> OpenObjects:
    """Factory: ``open_objects(on_change=..., max_object_bytes=...)``, over one store in tmp_path."""

    @asynccontextmanager
    async def open_(
        on_change: OnChange | None = None, max_object_bytes: int = 1 << 20
    ) -> AsyncIterator[Objects]:
        objects = Objects(
            LocalObjectStore(tmp_path / "objects"), max_object_bytes=max_object_bytes, on_change=on_change
        )
        await objects.open()
        try:
            yield objects
        finally:
            await objects.close()

    return open_


async def body(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def read(objects: Objects, bucket: str, key: str) -> bytes:
    reader = await objects.read(NS, bucket, key)
    try:
        return b"".join([chunk async for chunk in reader.chunks()])
    finally:
        await reader.close()


def test_the_hook_hears_every_change_after_it_is_durable(open_objects: OpenObjects) -> None:
    events: list[ObjectEvent] = []
    visible: list[bytes] = []

    async def main() -> None:
        async def on_change(event: ObjectEvent, cause: Chain | None) -> None:
            events.append(event)
            if event.kind == "created":  # already readable when the hook runs
                visible.append(await read(objects, event.bucket, event.key))
            else:
                with pytest.raises(NotFound):
                    await objects.head(NS, event.bucket, event.key)

        async with open_objects(on_change=on_change) as objects:
            await objects.create_bucket(NS, "bkt")
            first, _ = await objects.put(NS, "bkt", "dir/k", body(b"one"))
            second, _ = await objects.put(NS, "bkt", "dir/k", body(b"two"))
            deletion = await objects.delete(NS, "bkt", "dir/k")
            assert events == [
                ObjectEvent(NS, "bkt", "dir/k", "created", 3, first.etag, first.sequencer, first.modified_at),
                ObjectEvent(
                    NS, "bkt", "dir/k", "created", 3, second.etag, second.sequencer, second.modified_at
                ),
                ObjectEvent(
                    NS, "bkt", "dir/k", "deleted", 3, second.etag, deletion.sequencer, deletion.deleted_at
                ),
            ]
            assert [e.sequencer for e in events] == sorted({e.sequencer for e in events})

    asyncio.run(main())
    assert visible == [b"one", b"two"]


def test_a_failing_hook_is_an_error_but_the_change_stands(open_objects: OpenObjects) -> None:
    async def main() -> None:
        async def on_change(event: ObjectEvent, cause: Chain | None) -> None:
            raise RuntimeError("the trigger queue is down")

        async with open_objects(on_change=on_change) as objects:
            await objects.create_bucket(NS, "bkt")
            with pytest.raises(ObjectEventFailed, match=r"was written .* event could not be recorded"):
                await objects.put(NS, "bkt", "k", body(b"kept"))
            assert await read(objects, "bkt", "k") == b"kept"
            with pytest.raises(ObjectEventFailed, match="was deleted"):
                await objects.delete(NS, "bkt", "k")
            with pytest.raises(NotFound):
                await objects.head(NS, "bkt", "k")

    asyncio.run(main())


def test_no_hook_by_default_and_watch_sets_or_clears_it(open_objects: OpenObjects) -> None:
    heard: list[str] = []

    async def main() -> None:
        async def on_change(event: ObjectEvent, cause: Chain | None) -> None:
            heard.append(event.key)

        async with open_objects() as objects:
            await objects.create_bucket(NS, "bkt")
            await objects.put(NS, "bkt", "before", body(b""))
            objects.watch(on_change)
            await objects.put(NS, "bkt", "during", body(b""))
            objects.watch(None)
            await objects.put(NS, "bkt", "after", body(b""))

    asyncio.run(main())
    assert heard == ["during"]


def test_the_hook_hears_the_cause_of_a_change(open_objects: OpenObjects) -> None:
    heard: list[tuple[str, str, Chain | None]] = []
    writer = chains.start("writer", "call-1")

    async def main() -> None:
        async def on_change(event: ObjectEvent, cause: Chain | None) -> None:
            heard.append((event.kind, event.key, cause))

        async with open_objects(on_change=on_change) as objects:
            await objects.create_bucket(NS, "bkt")
            await objects.put(NS, "bkt", "by-a-client", body(b""))
            await objects.put(NS, "bkt", "by-a-function", body(b""), cause=writer)
            await objects.delete(NS, "bkt", "by-a-function", cause=writer)
            await objects.delete(NS, "bkt", "by-a-client")

    asyncio.run(main())
    assert heard == [
        ("created", "by-a-client", None),
        ("created", "by-a-function", writer),
        ("deleted", "by-a-function", writer),
        ("deleted", "by-a-client", None),
    ]


def test_names_are_checked_before_the_store(open_objects: OpenObjects) -> None:
    async def main() -> None:
        async with open_objects() as objects:
            for bad in ("UPPER", "a", "a..b", "../x"):
                with pytest.raises(BadRequest):
                    await objects.create_bucket(NS, bad)
            await objects.create_bucket(NS, "bkt")
            for key in ("../escape", "/abs", "a\x00b", ""):
                with pytest.raises(BadRequest):
                    await objects.put(NS, "bkt", key, body(b"x"))
                with pytest.raises(BadRequest):
                    await objects.head(NS, "bkt", key)
            with pytest.raises(BadRequest, match="metadata"):
                await objects.put(NS, "bkt", "k", body(b"x"), metadata={"Bad Name": "x"})
            with pytest.raises(BadRequest, match="Content-Type"):
                await objects.put(NS, "bkt", "k", body(b"x"), content_type="a\r\nb")
            assert (await objects.list(NS, "bkt")).objects == []

    asyncio.run(main())


def test_a_declared_size_over_the_cap_is_refused_before_reading(open_objects: OpenObjects) -> None:
    read: list[int] = []

    async def watched() -> AsyncIterator[bytes]:
        read.append(1)
        yield b"x"

    async def main() -> None:
        async with open_objects(max_object_bytes=100) as objects:
            await objects.create_bucket(NS, "bkt")
            with pytest.raises(PayloadTooLarge, match="101 bytes; the limit is 100"):
                await objects.put(NS, "bkt", "k", watched(), declared_size=101)
            assert read == []
            with pytest.raises(PayloadTooLarge):  # a body longer than it said is cut off all the same
                await objects.put(NS, "bkt", "k", body(b"x" * 101), declared_size=10)
            record, created = await objects.put(NS, "bkt", "k", body(b"x" * 100), declared_size=100)
            assert (record.size, created) == (100, True)
            assert record.content_type == "application/octet-stream"

    asyncio.run(main())


def test_holdings_name_the_buckets_of_a_namespace(open_objects: OpenObjects) -> None:
    async def main() -> None:
        async with open_objects() as objects:
            assert await objects.holdings("team") is None
            await objects.create_bucket("team", "one")
            assert await objects.holdings("team") == "1 bucket"
            await objects.create_bucket("team", "two")
            assert await objects.holdings("team") == "2 buckets"
            assert await objects.holdings(NS) is None

    asyncio.run(main())


def test_a_namespace_with_a_bucket_cannot_be_deleted(open_objects: OpenObjects, tmp_path: Path) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path / "wuzhao.db")
        await store.open()
        try:
            async with open_objects() as objects:
                namespaces = Namespaces(store, holdings=objects.holdings)
                await namespaces.load()
                await namespaces.create("team")
                await objects.create_bucket("team", "kept")
                with pytest.raises(Conflict, match="still holds 1 bucket"):
                    await namespaces.delete("team")
                assert namespaces.exists("team")
                await objects.delete_bucket("team", "kept")
                await namespaces.delete("team")
                assert not namespaces.exists("team")
        finally:
            await store.close()

    asyncio.run(main())
