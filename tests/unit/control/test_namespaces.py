import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from wuzhao.control.namespaces import Namespaces
from wuzhao.domain.functions import FunctionConfig, FunctionRecord
from wuzhao.errors import BadRequest, Conflict, NotFound
from wuzhao.store.api import NamespaceRecord, SecretRecord
from wuzhao.store.sqlite import SqliteStore

OpenNamespaces = Callable[[], AbstractAsyncContextManager[tuple[Namespaces, SqliteStore]]]


@pytest.fixture
def open_namespaces(tmp_path: Path) -> OpenNamespaces:
    """Factory: loaded Namespaces over a real store; call again to restart over the same file."""

    @asynccontextmanager
    async def open_() -> AsyncIterator[tuple[Namespaces, SqliteStore]]:
        store = SqliteStore(tmp_path / "wuzhao.db")
        await store.open()
        namespaces = Namespaces(store)
        await namespaces.load()
        try:
            yield namespaces, store
        finally:
            await store.close()

    return open_


def function_in(namespace: str) -> FunctionRecord:
    return FunctionRecord(namespace, "hello", FunctionConfig(), "ab" * 32, 1, 1, 1000.0, 1000.0)


def test_default_exists_from_the_first_load(open_namespaces: OpenNamespaces) -> None:
    async def main() -> None:
        async with open_namespaces() as (namespaces, store):
            default = namespaces.get("default")
            assert namespaces.exists("default")
            assert (default.max_instances, default.max_memory_mb) == (None, None)
            assert await store.get_namespace("default") == default
            assert namespaces.all() == [default]
        async with open_namespaces() as (namespaces, store):  # loading again keeps it as it was
            assert namespaces.get("default") == default
            assert await store.list_namespaces() == [default]

    asyncio.run(main())


def test_create(open_namespaces: OpenNamespaces) -> None:
    async def main() -> None:
        async with open_namespaces() as (namespaces, store):
            team = await namespaces.create("team", max_instances=10, max_memory_mb=4096)
            assert (team.name, team.max_instances, team.max_memory_mb) == ("team", 10, 4096)
            await namespaces.create("alpha")
            assert namespaces.get("team") == team
            assert namespaces.exists("team") and not namespaces.exists("nope")
            assert [ns.name for ns in namespaces.all()] == ["alpha", "default", "team"]
            assert await store.get_namespace("team") == team
        async with open_namespaces() as (namespaces, _):
            assert namespaces.get("team") == team

    asyncio.run(main())


def test_create_refuses_a_duplicate(open_namespaces: OpenNamespaces) -> None:
    async def main() -> None:
        async with open_namespaces() as (namespaces, store):
            team = await namespaces.create("team", max_instances=10)
            with pytest.raises(Conflict):
                await namespaces.create("team", max_instances=1)
            with pytest.raises(Conflict):
                await namespaces.create("default")
            assert namespaces.get("team") == team
            assert await store.get_namespace("team") == team

    asyncio.run(main())


@pytest.mark.parametrize("name", ["", "Team", "-team", "has space", "a" * 65, "dot.name", "team\n", "../x"])
def test_create_refuses_a_bad_name(open_namespaces: OpenNamespaces, name: str) -> None:
    async def main() -> None:
        async with open_namespaces() as (namespaces, store):
            with pytest.raises(BadRequest) as info:
                await namespaces.create(name)
            assert info.value.field == "name"
            assert [ns.name for ns in await store.list_namespaces()] == ["default"]

    asyncio.run(main())


@pytest.mark.parametrize(
    ("quotas", "field"),
    [
        ({"max_instances": -1}, "max_instances"),
        ({"max_memory_mb": -128}, "max_memory_mb"),
        ({"max_instances": 1, "max_memory_mb": -1}, "max_memory_mb"),
    ],
)
def test_negative_quotas_are_refused(
    open_namespaces: OpenNamespaces, quotas: dict[str, int], field: str
) -> None:
    async def main() -> None:
        async with open_namespaces() as (namespaces, store):
            with pytest.raises(BadRequest) as info:
                await namespaces.create("team", **quotas)
            assert info.value.field == field
            assert not namespaces.exists("team")
            assert await store.get_namespace("team") is None

            before = await namespaces.create("team", max_instances=5, max_memory_mb=1024)
            changes: dict[str, int | None] = {"max_instances": None, "max_memory_mb": None}
            changes.update(quotas)
            with pytest.raises(BadRequest) as info:
                await namespaces.set_quotas("team", **changes)
            assert info.value.field == field
            assert namespaces.get("team") == before
            assert await store.get_namespace("team") == before

    asyncio.run(main())


def test_set_quotas(open_namespaces: OpenNamespaces) -> None:
    async def main() -> None:
        async with open_namespaces() as (namespaces, store):
            team = await namespaces.create("team")
            changed = await namespaces.set_quotas("team", max_instances=4, max_memory_mb=2048)
            assert changed == NamespaceRecord("team", team.created_at, 4, 2048)
            assert namespaces.get("team") == changed
            assert await store.get_namespace("team") == changed
            zero = await namespaces.set_quotas("team", max_instances=0, max_memory_mb=None)
            assert (zero.max_instances, zero.max_memory_mb) == (0, None)  # 0: nothing may run
            default = await namespaces.set_quotas("default", max_instances=100, max_memory_mb=None)
            assert namespaces.get("default") == default and default.max_instances == 100
            with pytest.raises(NotFound):
                await namespaces.set_quotas("nope", max_instances=1, max_memory_mb=None)
            assert await store.get_namespace("nope") is None

    asyncio.run(main())


def test_delete(open_namespaces: OpenNamespaces) -> None:
    async def main() -> None:
        async with open_namespaces() as (namespaces, store):
            await namespaces.create("team")
            await namespaces.delete("team")
            assert not namespaces.exists("team")
            with pytest.raises(NotFound):
                namespaces.get("team")
            assert await store.get_namespace("team") is None
            with pytest.raises(NotFound):
                await namespaces.delete("team")
            await namespaces.create("team")  # the name is free again

    asyncio.run(main())


def test_the_default_namespace_cannot_be_deleted(open_namespaces: OpenNamespaces) -> None:
    async def main() -> None:
        async with open_namespaces() as (namespaces, store):
            with pytest.raises(BadRequest) as info:
                await namespaces.delete("default")
            assert info.value.field == "name"
            assert namespaces.exists("default")
            assert await store.get_namespace("default") is not None

    asyncio.run(main())


def test_a_namespace_that_holds_anything_is_not_deleted(open_namespaces: OpenNamespaces) -> None:
    async def main() -> None:
        async with open_namespaces() as (namespaces, store):
            team = await namespaces.create("team")
            await store.save_function(function_in("team"))
            await store.save_secret(SecretRecord("team", "token", b"opaque", 1000.0))
            with pytest.raises(Conflict):
                await namespaces.delete("team")
            assert namespaces.get("team") == team
            await store.delete_function("team", "hello")
            with pytest.raises(Conflict):
                await namespaces.delete("team")
            await store.delete_secret("team", "token")
            await namespaces.delete("team")
            assert not namespaces.exists("team")

    asyncio.run(main())
