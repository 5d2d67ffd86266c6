"""The object store contract (``wuzhao.objects.api``), run against every backend.

To add a backend, add one entry to ``BACKENDS``: a function that, given a fresh
temporary directory, returns a factory of unopened stores over the same data
(each call a new store, for close and reopen). Backend-specific checks (what
the files on disk look like) are at the end, marked as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path

import pytest

from wuzhao.errors import Conflict, NotFound, PayloadTooLarge
from wuzhao.objects.api import ObjectStore
from wuzhao.objects.local import LocalObjectStore

StoreFactory = Callable[[], ObjectStore]
NS = "default"
BIG = 1 << 40  # a size cap no test reaches


def local_backend(tmp_path: Path) -> StoreFactory:
    return lambda: LocalObjectStore(tmp_path / "objects")


BACKENDS: dict[str, Callable[[Path], StoreFactory]] = {"local": local_backend}


class Backend:
    def __init__(self, make: StoreFactory) -> None:
        self.make = make

    @contextlib.asynccontextmanager
    async def opened(self) -> AsyncIterator[ObjectStore]:
        store = self.make()
        await store.open()
        try:
            yield store
        finally:
            await store.close()

    def run(self, check: Callable[[ObjectStore], Awaitable[None]]) -> None:
        async def main() -> None:
            async with self.opened() as store:
                await check(store)

        asyncio.run(main())


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return Backend(BACKENDS[request.param](tmp_path))


async def body(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        await asyncio.sleep(0)  # a real body arrives over time
        yield chunk


async def read_all(store: ObjectStore, bucket: str, key: str, namespace: str = NS) -> bytes:
    reader = await store.open_object(namespace, bucket, key)
    try:
        return b"".join([chunk async for chunk in reader.chunks()])
    finally:
        await reader.close()


async def put(
    store: ObjectStore, bucket: str, key: str, data: bytes, *, namespace: str = NS, max_bytes: int = BIG
) -> None:
    await store.put_object(
        namespace, bucket, key, body(data), content_type="application/octet-stream", max_bytes=max_bytes
    )


# -- buckets --


def test_create_bucket_is_idempotent_and_per_namespace(backend: Backend) -> None:
    async def check(store: ObjectStore) -> None:
        first, created = await store.create_bucket(NS, "photos")
        again, created_again = await store.create_bucket(NS, "photos")
        other, created_other = await store.create_bucket("team", "photos")
        assert (created, created_again, created_other) == (True, False, True)
        assert again == first
        assert other.namespace == "team"
        assert [b.name for b in await store.list_buckets(NS)] == ["photos"]
        assert await store.count_buckets("team") == 1
        assert await store.count_buckets("nobody") == 0
        assert await store.get_bucket("nobody", "photos") is None

    backend.run(check)


def test_buckets_are_listed_by_name(backend: Backend) -> None:
    async def check(store: ObjectStore) -> None:
        for name in ("zeta", "alpha", "mid.dle", "al-pha"):
            await store.create_bucket(NS, name)
        assert [b.name for b in await store.list_buckets(NS)] == ["al-pha", "alpha", "mid.dle", "zeta"]

    backend.run(check)


def test_delete_bucket_refuses_a_bucket_with_objects(backend: Backend) -> None:
    async def check(store: ObjectStore) -> None:
        await store.create_bucket(NS, "full")
        await put(store, "full", "a", b"x")
        with pytest.raises(Conflict, match="1 object"):
            await store.delete_bucket(NS, "full")
        await store.delete_object(NS, "full", "a")
        await store.delete_bucket(NS, "full")
        assert await store.get_bucket(NS, "full") is None
        with pytest.raises(NotFound):
            await store.delete_bucket(NS, "full")

    backend.run(check)


def test_another_namespaces_bucket_does_not_exist(backend: Backend) -> None:
    async def check(store: ObjectStore) -> None:
        await store.create_bucket("team", "private")
        await put(store, "private", "secret.txt", b"theirs", namespace="team")
        for attempt in (
            store.head_object(NS, "private", "secret.txt"),
            store.open_object(NS, "private", "secret.txt"),
            store.delete_object(NS, "private", "secret.txt"),
            store.list_objects(NS, "private", limit=10),
            store.delete_bucket(NS, "private"),
            put(store, "private", "secret.txt", b"mine"),
        ):
            with pytest.raises(NotFound, match="bucket 'private' does not exist"):
                await attempt
        assert await read_all(store, "private", "secret.txt", namespace="team") == b"theirs"

    backend.run(check)


# -- objects --


def test_put_streams_the_body_and_the_etag_is_its_sha256(backend: Backend) -> None:
    chunks = [os.urandom(100_000) for _ in range(7)]
    data = b"".join(chunks)

    async def check(store: ObjectStore) -> None:
        await store.create_bucket(NS, "b")
        record, created = await store.put_object(
            NS,
            "b",
            "dir/file.bin",
            body(*chunks),
            content_type="image/png",
            metadata={"a": "1"},
            max_bytes=BIG,
        )
        assert created
        assert (record.size, record.etag) == (len(data), hashlib.sha256(data).hexdigest())
        assert (record.content_type, record.metadata, record.key) == ("image/png", {"a": "1"}, "dir/file.bin")
        assert await store.head_object(NS, "b", "dir/file.bin") == record
        assert await read_all(store, "b", "dir/file.bin") == data

    backend.run(check)


def test_an_empty_object(backend: Backend) -> None:
    async def check(store: ObjectStore) -> None:
        await store.create_bucket(NS, "b")
        await put(store, "b", "empty", b"")
        record = await store.head_object(NS, "b", "empty")
        assert (record.size, record.etag) == (0, hashlib.sha256(b"").hexdigest())
        assert await read_all(store, "b", "empty") == b""

    backend.run(check)


def test_reading_a_span(backend: Backend) -> None:
    data = bytes(range(256)) * 4000

    async def check(store: ObjectStore) -> None:
        await store.create_bucket(NS, "b")
        await put(store, "b", "k", data)
        reader = await store.open_object(NS, "b", "k")
        try:
            for start, end in ((0, 1), (10, 300_000), (1023, 1024), (500_000, None), (5, 5)):
                got = b"".join([chunk async for chunk in reader.chunks(start, end)])
                assert got == data[start:end]
        finally:
            await reader.close()

    backend.run(check)


def test_replacing_keeps_created_at_and_moves_the_sequencer(backend: Backend) -> None:
    async def check(store: ObjectStore) -> None:
        await store.create_bucket(NS, "b")
        first, created = await store.put_object(
            NS, "b", "k", body(b"one"), content_type="text/plain", metadata={"v": "1"}, max_bytes=BIG
        )
        second, created_again = await store.put_object(
            NS, "b", "k", body(b"two!"), content_type="text/csv", max_bytes=BIG
        )
        assert (created, created_again) == (True, False)
        assert second.created_at == first.created_at
        assert second.modified_at >= first.modified_at
        assert second.sequencer > first.sequencer
        assert (second.size, second.content_type, second.metadata) == (4, "text/csv", {})
        assert await read_all(store, "b", "k") == b"two!"
        deletion = await store.delete_object(NS, "b", "k")
        assert deletion.removed == second
        assert deletion.sequencer > second.sequencer
        with pytest.raises(NotFound, match="object 'k' does not exist"):
            await store.head_object(NS, "b", "k")
        with pytest.raises(NotFound):
            await store.delete_object(NS, "b", "k")

    backend.run(check)


def test_the_size_cap_holds_while_streaming_and_stores_nothing(backend: Backend) -> None:
    async def check(store: ObjectStore) -> None:
        await store.create_bucket(NS, "b")
        await put(store, "b", "k", b"old")
        sent: list[int] = []

        async def endless() -> AsyncIterator[bytes]:
            while True:
                sent.append(1)
                yield b"x" * 65536

        with pytest.raises(PayloadTooLarge):
            await store.put_object(NS, "b", "k", endless(), content_type="a/b", max_bytes=1_000_000)
        assert len(sent) == 1_000_000 // 65536 + 1  # it stopped reading at the first chunk past the cap
        assert await read_all(store, "b", "k") == b"old"
        await put(store, "b", "exact", b"y" * 1000, max_bytes=1000)  # at the cap is allowed

    backend.run(check)


def test_a_body_that_fails_midway_stores_nothing(backend: Backend) -> None:
    async def check(store: ObjectStore) -> None:
        await store.create_bucket(NS, "b")

        async def broken() -> AsyncIterator[bytes]:
            yield b"a" * 300_000
            raise ConnectionResetError("the client went away")

        with pytest.raises(ConnectionResetError):
            await store.put_object(NS, "b", "k", broken(), content_type="a/b", max_bytes=BIG)
        with pytest.raises(NotFound):
            await store.head_object(NS, "b", "k")
        assert (await store.list_objects(NS, "b", limit=10)).objects == []

    backend.run(check)


def test_put_into_a_missing_bucket_reads_no_body(backend: Backend) -> None:
    async def check(store: ObjectStore) -> None:
        read: list[bytes] = []

        async def watched() -> AsyncIterator[bytes]:
            read.append(b"x")
            yield b"x"

        with pytest.raises(NotFound, match="bucket 'nope'"):
            await store.put_object(NS, "nope", "k", watched(), content_type="a/b", max_bytes=BIG)
        assert read == []

    backend.run(check)


HOSTILE_KEYS = [
    "../../../etc/passwd",
    "..%2f..%2fobjects.db",
    "a/../../b",
    "/absolute/path",
    "C:\\Windows\\system32",
    "blobs/00/x",
    "tmp/../objects.db",
    "x" * 1024,
    "ü/ñ/日本語/😀",
    "trailing/",
    "a//b",
    "   spaces   ",
]


def test_any_key_is_only_a_name(backend: Backend) -> None:
    """The store takes whatever key the names module let through, and each is just a name.

    (Keys with '..' segments or a leading '/' are refused before the store: here
    they go straight in, to show the store itself does not care.)
    """

    async def check(store: ObjectStore) -> None:
        await store.create_bucket(NS, "b")
        for index, key in enumerate(HOSTILE_KEYS):
            await put(store, "b", key, f"value {index}".encode())
        for index, key in enumerate(HOSTILE_KEYS):
            assert await read_all(store, "b", key) == f"value {index}".encode()
        listed = [o.key for o in (await store.list_objects(NS, "b", limit=100)).objects]
        assert listed == sorted(HOSTILE_KEYS, key=lambda k: k.encode())

    backend.run(check)


# -- listing --


def keys_of(page: object) -> list[str]:
    return [o.key for o in page.objects]  # type: ignore[attr-defined]


def test_list_is_in_utf8_byte_order_with_prefix_and_pages(backend: Backend) -> None:
    keys = ["a", "a/1", "a/2", "a/10", "a0", "b", "B", "é", "z", "😀", "a/\U0010ffff", "ab"]

    async def check(store: ObjectStore) -> None:
        await store.create_bucket(NS, "b")
        for key in keys:
            await put(store, "b", key, b"")
        ordered = sorted(keys, key=lambda k: k.encode())
        assert keys_of(await store.list_objects(NS, "b", limit=1000)) == ordered
        under = await store.list_objects(NS, "b", prefix="a/", limit=1000)
        assert keys_of(under) == ["a/1", "a/10", "a/2", "a/\U0010ffff"]
        assert under.next is None
        assert keys_of(await store.list_objects(NS, "b", prefix="é", limit=10)) == ["é"]
        assert keys_of(await store.list_objects(NS, "b", prefix="nothing", limit=10)) == []
        # pages: next is the last key of a full page, and after= continues right after it
        seen, after = [], ""
        while True:
            page = await store.list_objects(NS, "b", after=after, limit=5)
            seen += keys_of(page)
            if page.next is None:
                break
            assert page.next == keys_of(page)[-1]
            after = page.next
        assert seen == ordered
        exact = await store.list_objects(NS, "b", limit=len(keys))
        assert exact.next is None  # a page that ends exactly at the last key says so
        within = await store.list_objects(NS, "b", prefix="a/", after="a/10", limit=1)
        assert (keys_of(within), within.next) == (["a/2"], "a/2")

    backend.run(check)


# -- atomic replace --


def test_readers_see_whole_versions_while_a_writer_replaces(backend: Backend) -> None:
    versions = {b"a" * 300_000, b"bb" * 250_000, b"c" * 10}
    ordered = sorted(versions)

    async def check(store: ObjectStore) -> None:
        await store.create_bucket(NS, "b")
        await put(store, "b", "k", ordered[0])
        done = asyncio.Event()

        async def writer() -> None:
            for index in range(40):
                await put(store, "b", "k", ordered[index % len(ordered)])
            done.set()

        async def reader() -> list[bytes]:
            seen = []
            while not done.is_set():
                opened = await store.open_object(NS, "b", "k")
                parts = []
                async for chunk in opened.chunks():
                    parts.append(chunk)
                    await asyncio.sleep(0.001)  # slow: replacements happen mid-read
                await opened.close()
                data = b"".join(parts)
                assert data in versions
                assert (len(data), hashlib.sha256(data).hexdigest()) == (
                    opened.record.size,
                    opened.record.etag,
                )
                seen.append(data)
            return seen

        results = await asyncio.gather(writer(), reader(), reader(), reader())
        reads = [data for seen in results[1:] for data in seen]  # type: ignore[union-attr]
        assert len(reads) >= 3
        assert len(set(reads)) >= 2  # the readers did overlap with replacements

    backend.run(check)


def test_an_open_object_stays_readable_after_replace_and_delete(backend: Backend) -> None:
    async def check(store: ObjectStore) -> None:
        await store.create_bucket(NS, "b")
        await put(store, "b", "k", b"old" * 100_000)
        opened = await store.open_object(NS, "b", "k")
        await put(store, "b", "k", b"new")
        await store.delete_object(NS, "b", "k")
        try:
            assert b"".join([c async for c in opened.chunks()]) == b"old" * 100_000
        finally:
            await opened.close()

    backend.run(check)


def test_everything_survives_a_reopen(backend: Backend) -> None:
    async def write(store: ObjectStore) -> None:
        await store.create_bucket(NS, "b")
        await put(store, "b", "k", b"kept")

    async def read(store: ObjectStore) -> None:
        assert await read_all(store, "b", "k") == b"kept"
        assert [b.name for b in await store.list_buckets(NS)] == ["b"]
        record, _ = await store.put_object(NS, "b", "k2", body(b"x"), content_type="a/b", max_bytes=BIG)
        assert record.sequencer == 2  # the sequencer went on from where it was

    backend.run(write)
    backend.run(read)


# -- durability: a put that returned is there after the writer is killed --

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from wuzhao.objects.local import LocalObjectStore

    async def body(data):
        for start in range(0, len(data), 50_000):
            yield data[start:start + 50_000]

    async def main():
        store = LocalObjectStore(Path(sys.argv[1]))
        await store.open()
        await store.create_bucket("default", "b")
        index = 0
        while True:
            data = bytes([index % 251]) * (1000 + index * 7919 % 400_000)
            await store.put_object("default", "b", f"k{index}", body(data),
                                   content_type="a/b", max_bytes=1 << 30)
            print(index, flush=True)  # only once put_object returned
            index += 1

    asyncio.run(main())
    """
)


def expected(index: int) -> bytes:
    return bytes([index % 251]) * (1000 + index * 7919 % 400_000)


def test_a_returned_put_survives_a_sigkill_of_the_writer(tmp_path: Path) -> None:
    """Local backend: a separate process writes until it is killed mid-write."""
    root = tmp_path / "objects"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    acknowledged = []
    for line in writer.stdout:
        acknowledged.append(int(line))
        if len(acknowledged) == 25:
            break
    writer.send_signal(signal.SIGKILL)  # most likely in the middle of the next put
    writer.communicate(timeout=30)
    assert len(acknowledged) == 25, writer.stderr

    stored: list[str] = []

    async def check(store: ObjectStore) -> None:
        for index in acknowledged:
            record = await store.head_object(NS, "b", f"k{index}")
            assert record.etag == hashlib.sha256(expected(index)).hexdigest()
            assert await read_all(store, "b", f"k{index}") == expected(index)
        stored.extend(keys_of(await store.list_objects(NS, "b", limit=1000)))

    Backend(local_backend(tmp_path)).run(check)
    assert len(stored) in (25, 26)  # the put in flight may have committed just before the kill
    # and the reopen swept what the killed write left: nothing in tmp/, one file per object
    assert list((root / "tmp").iterdir()) == []
    assert len(blob_files(root)) == len(stored)


# -- the local backend's files --


def blob_files(root: Path) -> list[Path]:
    return [path for path in (root / "blobs").rglob("*") if path.is_file()]


def test_local_files_are_named_by_random_ids_never_by_keys(tmp_path: Path) -> None:
    backend = Backend(local_backend(tmp_path))

    async def check(store: ObjectStore) -> None:
        await store.create_bucket(NS, "b")
        for key in HOSTILE_KEYS:
            await put(store, "b", key, b"data")

    backend.run(check)
    root = tmp_path / "objects"
    everything = {path.relative_to(root) for path in root.rglob("*")}
    files = blob_files(root)
    assert len(files) == len(HOSTILE_KEYS)
    for path in files:
        assert path.parent.parent == root / "blobs"
        assert len(path.name) == 32 and set(path.name) <= set("0123456789abcdef")
        assert path.name.startswith(path.parent.name)
        assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert {p for p in everything if not str(p).startswith(("blobs", "objects.db"))} == {Path("tmp")}
    assert not (tmp_path / "etc").exists()


def test_local_replace_and_delete_leave_no_file_behind(tmp_path: Path) -> None:
    backend = Backend(local_backend(tmp_path))

    async def check(store: ObjectStore) -> None:
        await store.create_bucket(NS, "b")
        for _ in range(5):
            await put(store, "b", "k", os.urandom(1000))
        assert len(blob_files(tmp_path / "objects")) == 1
        await store.delete_object(NS, "b", "k")
        assert blob_files(tmp_path / "objects") == []

    backend.run(check)


def test_local_open_sweeps_unfinished_and_unnamed_files(tmp_path: Path) -> None:
    backend = Backend(local_backend(tmp_path))

    async def write(store: ObjectStore) -> None:
        await store.create_bucket(NS, "b")
        await put(store, "b", "k", b"kept")

    backend.run(write)
    root = tmp_path / "objects"
    (root / "tmp" / ("1" * 32)).write_bytes(b"half a write")
    (root / "blobs" / "ab" / ("ab" + "2" * 30)).write_bytes(b"written, never committed")

    async def read(store: ObjectStore) -> None:
        assert await read_all(store, "b", "k") == b"kept"

    backend.run(read)
    assert list((root / "tmp").iterdir()) == []
    assert len(blob_files(root)) == 1


def chunk_sizes(chunks: Iterable[bytes]) -> list[int]:
    return [len(chunk) for chunk in chunks]


def test_local_reads_come_in_bounded_chunks(tmp_path: Path) -> None:
    from wuzhao.objects.local import CHUNK_BYTES

    backend = Backend(local_backend(tmp_path))

    async def check(store: ObjectStore) -> None:
        await store.create_bucket(NS, "b")
        await put(store, "b", "k", b"z" * (CHUNK_BYTES * 3 + 17))
        opened = await store.open_object(NS, "b", "k")
        try:
            sizes = chunk_sizes([chunk async for chunk in opened.chunks()])
        finally:
            await opened.close()
        assert sizes == [CHUNK_BYTES, CHUNK_BYTES, CHUNK_BYTES, 17]

    backend.run(check)
