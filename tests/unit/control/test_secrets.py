import asyncio
import stat
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from wuzhao.control.secrets import MAX_SECRET_BYTES, SECRET_KEY_FILE, Secrets, load_or_create_key
from wuzhao.errors import BadRequest, NotFound, WuzhaoError
from wuzhao.store.sqlite import SqliteStore

OpenSecrets = Callable[..., AbstractAsyncContextManager[Secrets]]


@pytest.fixture
def open_secrets(tmp_path: Path) -> OpenSecrets:
    """Factory: Secrets over a real store in ``tmp_path/db``, with the key of ``tmp_path/data``."""
    data = tmp_path / "data"
    data.mkdir()

    @asynccontextmanager
    async def open_(key: bytes | None = None) -> AsyncIterator[Secrets]:
        store = SqliteStore(tmp_path / "db" / "wuzhao.db")
        await store.open()
        try:
            yield Secrets(store, key if key is not None else load_or_create_key(data))
        finally:
            await store.close()

    return open_


# the key


def test_the_key_file_is_private_and_created_once(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path)
    path = tmp_path / SECRET_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == key + b"\n"
    Fernet(key)  # a usable key
    assert load_or_create_key(tmp_path) == key
    assert path.read_bytes() == key + b"\n"


def test_each_data_dir_gets_its_own_key(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert load_or_create_key(tmp_path / "a") != load_or_create_key(tmp_path / "b")


# values


def test_set_then_resolve(open_secrets: OpenSecrets) -> None:
    async def main() -> None:
        async with open_secrets() as secrets:
            await secrets.set("default", "db-password", "hunter2")
            await secrets.set("default", "token.v2", "ünïcode ✓ and = signs\nand lines")
            env = await secrets.resolve("default", {"DB_PASSWORD": "db-password", "TOKEN": "token.v2"})
            assert env == {"DB_PASSWORD": "hunter2", "TOKEN": "ünïcode ✓ and = signs\nand lines"}
            # one secret may feed several variables
            assert await secrets.resolve("default", {"A": "db-password", "B": "db-password"}) == {
                "A": "hunter2",
                "B": "hunter2",
            }
            assert await secrets.resolve("default", {}) == {}

    asyncio.run(main())


def test_values_survive_a_restart_with_the_same_key_file(open_secrets: OpenSecrets) -> None:
    async def main() -> None:
        async with open_secrets() as secrets:
            await secrets.set("default", "token", "s3cr3t")
        async with open_secrets() as secrets:
            assert await secrets.resolve("default", {"TOKEN": "token"}) == {"TOKEN": "s3cr3t"}

    asyncio.run(main())


def test_set_again_replaces_the_value(open_secrets: OpenSecrets) -> None:
    async def main() -> None:
        async with open_secrets() as secrets:
            await secrets.set("default", "token", "old")
            await secrets.set("default", "token", "new")
            assert await secrets.resolve("default", {"TOKEN": "token"}) == {"TOKEN": "new"}
            assert [s.name for s in await secrets.names("default")] == ["token"]

    asyncio.run(main())


def test_an_empty_value_is_a_value(open_secrets: OpenSecrets) -> None:
    async def main() -> None:
        async with open_secrets() as secrets:
            await secrets.set("default", "empty", "")
            assert await secrets.resolve("default", {"E": "empty"}) == {"E": ""}

    asyncio.run(main())


def test_the_plaintext_is_nowhere_in_the_database(open_secrets: OpenSecrets, tmp_path: Path) -> None:
    value = "correct-horse-battery-staple-7f3a9c"

    async def main() -> None:
        async with open_secrets() as secrets:
            await secrets.set("default", "password", value)
            await secrets.set("default", "password-again", value)

    asyncio.run(main())
    files = sorted((tmp_path / "db").glob("wuzhao.db*"))  # the database and its WAL, if any
    contents = b"".join(f.read_bytes() for f in files)
    assert b"password-again" in contents  # we are looking at the right bytes
    assert value.encode() not in contents
    assert value.encode().hex().encode() not in contents


def test_names_never_carry_values(open_secrets: OpenSecrets) -> None:
    async def main() -> None:
        async with open_secrets() as secrets:
            returned = await secrets.set("default", "token", "plain-value-123")
            await secrets.set("default", "api", "plain-value-456")
            listed = await secrets.names("default")
            assert [s.name for s in listed] == ["api", "token"]
            for record in [returned, *listed]:
                assert b"plain-value" not in record.ciphertext
                assert "plain-value" not in repr(record)
            assert await secrets.names("team") == []

    asyncio.run(main())


def test_equal_values_encrypt_differently(open_secrets: OpenSecrets) -> None:
    async def main() -> None:
        async with open_secrets() as secrets:
            a = await secrets.set("default", "a", "same")
            b = await secrets.set("default", "b", "same")
            assert a.ciphertext != b.ciphertext

    asyncio.run(main())


def test_another_key_cannot_read_the_values(open_secrets: OpenSecrets) -> None:
    async def main() -> None:
        async with open_secrets() as secrets:
            await secrets.set("default", "token", "s3cr3t")
        async with open_secrets(Fernet.generate_key()) as secrets:
            with pytest.raises(WuzhaoError) as info:
                await secrets.resolve("default", {"TOKEN": "token"})
            assert type(info.value) is WuzhaoError  # a server fault, not the caller's
            assert "s3cr3t" not in info.value.message

    asyncio.run(main())


# references and names


def test_resolving_a_missing_secret_names_the_variable(open_secrets: OpenSecrets) -> None:
    async def main() -> None:
        async with open_secrets() as secrets:
            await secrets.set("default", "token", "s3cr3t")
            with pytest.raises(NotFound) as info:
                await secrets.resolve("default", {"TOKEN": "token", "DB_URL": "db-url"})
            assert info.value.field == "secrets.DB_URL"
            assert "db-url" in info.value.message
            with pytest.raises(NotFound) as info:  # secrets belong to one namespace
                await secrets.resolve("team", {"TOKEN": "token"})
            assert info.value.field == "secrets.TOKEN"

    asyncio.run(main())


def test_delete(open_secrets: OpenSecrets) -> None:
    async def main() -> None:
        async with open_secrets() as secrets:
            await secrets.set("default", "token", "s3cr3t")
            await secrets.set("team", "token", "theirs")
            await secrets.delete("default", "token")
            assert await secrets.names("default") == []
            with pytest.raises(NotFound):
                await secrets.resolve("default", {"TOKEN": "token"})
            with pytest.raises(NotFound):
                await secrets.delete("default", "token")
            assert await secrets.resolve("team", {"TOKEN": "token"}) == {"TOKEN": "theirs"}

    asyncio.run(main())


@pytest.mark.parametrize("name", ["a", "TOKEN", "db-password", "token.v2", "0day", "A_b.c-d", "a" * 128])
def test_valid_secret_names(open_secrets: OpenSecrets, name: str) -> None:
    async def main() -> None:
        async with open_secrets() as secrets:
            assert (await secrets.set("default", name, "v")).name == name

    asyncio.run(main())


@pytest.mark.parametrize(
    "name", ["", ".hidden", "-dash", "_under", "a" * 129, "has space", "a/b", "../x", "tok\n", "ü", "a\0b"]
)
def test_bad_secret_names_are_refused_on_name(open_secrets: OpenSecrets, name: str) -> None:
    async def main() -> None:
        async with open_secrets() as secrets:
            with pytest.raises(BadRequest) as info:
                await secrets.set("default", name, "v")
            assert info.value.field == "name"
            assert await secrets.names("default") == []

    asyncio.run(main())


@pytest.mark.parametrize(
    "value",
    [
        "a\0b",  # would end the environment variable early
        "x" * (MAX_SECRET_BYTES + 1),
        "é" * (MAX_SECRET_BYTES // 2 + 1),  # counted in bytes, not characters
    ],
    ids=["nul", "oversize", "oversize-in-bytes"],
)
def test_bad_values_are_refused_on_value(open_secrets: OpenSecrets, value: str) -> None:
    async def main() -> None:
        async with open_secrets() as secrets:
            with pytest.raises(BadRequest) as info:
                await secrets.set("default", "token", value)
            assert info.value.field == "value"
            assert await secrets.names("default") == []

    asyncio.run(main())


def test_a_value_of_exactly_the_limit_is_kept(open_secrets: OpenSecrets) -> None:
    value = "x" * MAX_SECRET_BYTES

    async def main() -> None:
        async with open_secrets() as secrets:
            await secrets.set("default", "big", value)
            assert await secrets.resolve("default", {"BIG": "big"}) == {"BIG": value}

    asyncio.run(main())
