import asyncio
import hashlib
import re
import stat
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from wuzhao.control.keys import ADMIN_KEY_FILE, KeyRing, hash_key, key_id_of, new_key
from wuzhao.errors import Conflict
from wuzhao.store.api import ApiKeyRecord
from wuzhao.store.sqlite import SqliteStore

OpenStore = Callable[..., AbstractAsyncContextManager[SqliteStore]]


@pytest.fixture
def open_store(tmp_path: Path) -> OpenStore:
    @asynccontextmanager
    async def open_(name: str = "wuzhao.db") -> AsyncIterator[SqliteStore]:
        store = SqliteStore(tmp_path / "db" / name)
        await store.open()
        try:
            yield store
        finally:
            await store.close()

    return open_


def record_for(key: str, key_id: str, role: str = "user") -> ApiKeyRecord:
    return ApiKeyRecord(key_id, hash_key(key), "default", role, 1000.0)


def test_new_key_format() -> None:
    key, key_id = new_key()
    assert re.fullmatch(r"wz_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", key)
    assert key.startswith(f"wz_{key_id}_")
    assert key_id_of(key) == key_id


def test_new_keys_are_distinct() -> None:
    keys = {new_key()[0] for _ in range(200)}
    assert len(keys) == 200


def test_hash_key_is_hex_sha256_of_the_whole_key() -> None:
    assert hash_key("wz_a_b") == hashlib.sha256(b"wz_a_b").hexdigest()
    assert hash_key("wz_a_b") != hash_key("wz_a_c")


@pytest.mark.parametrize(
    ("key", "key_id"),
    [
        ("wz_abc_secret", "abc"),
        ("wz_abc_sec_ret", "abc"),  # secrets may hold underscores
        ("wz_abc_-", "abc"),
        ("wz_abc_", None),
        ("wz__secret", None),
        ("wz_abc", None),
        ("wz", None),
        ("", None),
        ("xx_abc_secret", None),
        ("WZ_abc_secret", None),
        ("Bearer wz_abc_secret", None),
        ("abc_secret", None),
    ],
)
def test_key_id_of(key: str, key_id: str | None) -> None:
    assert key_id_of(key) == key_id


def test_authenticate(open_store: OpenStore) -> None:
    key, key_id = new_key()
    other, _ = new_key()

    async def main() -> None:
        async with open_store() as store:
            await store.add_key(record_for(key, key_id))
            ring = KeyRing(store)
            found = await ring.authenticate(key)
            assert found is not None and found.key_id == key_id and found.role == "user"
            # the right id with another secret
            assert await ring.authenticate(f"wz_{key_id}_{other.split('_', 2)[2]}") is None
            assert await ring.authenticate(key + "x") is None
            assert await ring.authenticate(key[:-1]) is None
            # an id that is not registered
            assert await ring.authenticate(other) is None
            # not a key at all
            assert await ring.authenticate("") is None
            assert await ring.authenticate("password") is None
            assert await ring.authenticate(key.replace("wz_", "xx_", 1)) is None
            # still valid after refusals (and now from the cache)
            assert await ring.authenticate(key) == found

    asyncio.run(main())


def test_ensure_admin_key_creates_a_private_file_once(open_store: OpenStore, tmp_path: Path) -> None:
    async def main() -> None:
        async with open_store() as store:
            ring = KeyRing(store)
            path, created = await ring.ensure_admin_key(tmp_path)
            assert (path, created) == (tmp_path / ADMIN_KEY_FILE, True)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            key = path.read_text().strip()
            assert path.read_text() == key + "\n"
            record = await ring.authenticate(key)
            assert record is not None and record.role == "admin" and record.namespace == "default"

            again = await ring.ensure_admin_key(tmp_path)
            assert again == (path, False)
            assert path.read_text().strip() == key
            assert len(await store.list_keys()) == 1

    asyncio.run(main())


def test_ensure_admin_key_registers_again_a_key_whose_record_was_lost(
    open_store: OpenStore, tmp_path: Path
) -> None:
    async def main() -> None:
        async with open_store("first.db") as store:
            path, _ = await KeyRing(store).ensure_admin_key(tmp_path)
        key = path.read_text().strip()
        async with open_store("wiped.db") as store:  # a fresh database, the old key file
            ring = KeyRing(store)
            assert await ring.authenticate(key) is None
            assert await ring.ensure_admin_key(tmp_path) == (path, False)
            assert path.read_text().strip() == key
            record = await ring.authenticate(key)
            assert record is not None and record.role == "admin"
            assert len(await store.list_keys()) == 1

    asyncio.run(main())


def test_ensure_admin_key_replaces_a_file_that_holds_no_key(open_store: OpenStore, tmp_path: Path) -> None:
    (tmp_path / ADMIN_KEY_FILE).write_text("garbage\n")

    async def main() -> None:
        async with open_store() as store:
            ring = KeyRing(store)
            path, created = await ring.ensure_admin_key(tmp_path)
            assert created is True
            key = path.read_text().strip()
            assert key != "garbage"
            assert await ring.authenticate(key) is not None
            assert stat.S_IMODE(path.stat().st_mode) == 0o600

    asyncio.run(main())


def test_the_store_never_holds_the_secret(open_store: OpenStore, tmp_path: Path) -> None:
    async def main() -> str:
        async with open_store() as store:
            path, _ = await KeyRing(store).ensure_admin_key(tmp_path / "data")
            return path.read_text().strip()

    (tmp_path / "data").mkdir()
    key = asyncio.run(main())
    secret = key.split("_", 2)[2]
    files = sorted((tmp_path / "db").glob("wuzhao.db*"))
    assert files
    contents = b"".join(f.read_bytes() for f in files)
    assert hash_key(key).encode() in contents  # we are looking at the right bytes
    assert secret.encode() not in contents
    assert key.encode() not in contents


# issuing and revoking


class SlowLookups:
    """A store whose key lookups answer only when let go: a lookup in flight during a revoke."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.read = asyncio.Event()
        self.go = asyncio.Event()

    async def get_key(self, key_id: str) -> ApiKeyRecord | None:
        record = await self._store.get_key(key_id)
        self.read.set()
        await self.go.wait()
        return record

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


def test_create_issues_a_key_that_authenticates(open_store: OpenStore) -> None:
    async def main() -> None:
        async with open_store() as store:
            ring = KeyRing(store)
            key, record = await ring.create("team", "developer", "ci deploys")
            assert key_id_of(key) == record.key_id
            assert (record.namespace, record.role, record.description) == ("team", "developer", "ci deploys")
            assert record.secret_hash == hash_key(key)
            assert await store.get_key(record.key_id) == record
            assert await KeyRing(store).authenticate(key) == record  # from the store, not a cache
            other, _ = await ring.create("default", "invoker")
            found = await ring.authenticate(other)
            assert found is not None and (found.namespace, found.role) == ("default", "invoker")
            assert other != key

    asyncio.run(main())


def test_all_never_exposes_a_secret(open_store: OpenStore, tmp_path: Path) -> None:
    async def main() -> None:
        async with open_store() as store:
            ring = KeyRing(store)
            admin_file, _ = await ring.ensure_admin_key(tmp_path)
            issued = [
                admin_file.read_text().strip(),
                (await ring.create("team", "developer"))[0],
                (await ring.create("team", "invoker", "robot"))[0],
            ]
            listed = await ring.all()
            assert sorted(r.key_id for r in listed) == sorted(key_id_of(k) for k in issued)
            shown = repr(listed)
            for key in issued:
                assert key not in shown
                assert key.split("_", 2)[2] not in shown

    asyncio.run(main())


def test_revoke_refuses_the_key_at_once(open_store: OpenStore) -> None:
    async def main() -> None:
        async with open_store() as store:
            ring = KeyRing(store)
            key, record = await ring.create("team", "developer")
            kept, _ = await ring.create("team", "developer")
            assert await ring.authenticate(key) == record  # now cached
            assert await ring.authenticate(key) == record
            assert await ring.revoke(record.key_id) is True
            assert await ring.authenticate(key) is None
            assert await store.get_key(record.key_id) is None
            assert await ring.revoke(record.key_id) is False
            assert await ring.revoke("never-issued") is False
            assert await ring.authenticate(kept) is not None
            assert [r.key_id for r in await ring.all()] == [key_id_of(kept)]

    asyncio.run(main())


def test_a_lookup_in_flight_during_a_revoke_does_not_bring_the_key_back(open_store: OpenStore) -> None:
    async def main() -> None:
        async with open_store() as store:
            key, record = await KeyRing(store).create("team", "developer")
            slow = SlowLookups(store)
            ring = KeyRing(slow)  # type: ignore[arg-type]
            in_flight = asyncio.create_task(ring.authenticate(key))
            await slow.read.wait()  # the lookup has read the record before the revoke
            assert await ring.revoke(record.key_id) is True
            slow.go.set()
            await in_flight  # began before the revoke: may still pass, once
            assert await ring.authenticate(key) is None

    asyncio.run(main())


def test_the_last_admin_key_cannot_be_revoked(tmp_path) -> None:
    async def scenario() -> None:
        store = SqliteStore(tmp_path / "keys.db")
        await store.open()
        try:
            ring = KeyRing(store)
            _, first = await ring.create("default", "admin")
            _, developer = await ring.create("default", "developer")
            with pytest.raises(Conflict):
                await ring.revoke(first.key_id)
            _, second = await ring.create("default", "admin")
            assert await ring.revoke(first.key_id)
            with pytest.raises(Conflict):
                await ring.revoke(second.key_id)
            assert await ring.revoke(developer.key_id)
        finally:
            await store.close()

    asyncio.run(scenario())
