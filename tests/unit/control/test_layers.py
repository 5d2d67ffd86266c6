import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import zip_files

from wuzhao.control.layers import MAX_LAYERS, LayerRef, Layers, parse_layer_refs
from wuzhao.control.packages import CodePackages
from wuzhao.errors import BadRequest, InvalidCode, NotFound
from wuzhao.store.sqlite import SqliteStore

LIB = zip_files({"python/lib.py": "VALUE = 1\n"})
LIB_V2 = zip_files({"python/lib.py": "VALUE = 2\n"})


@dataclass
class Env:
    layers: Layers
    store: SqliteStore
    packages: CodePackages


OpenEnv = Callable[[], AbstractAsyncContextManager[Env]]


@pytest.fixture
def open_env(tmp_path: Path) -> OpenEnv:
    @asynccontextmanager
    async def open_() -> AsyncIterator[Env]:
        store = SqliteStore(tmp_path / "wuzhao.db")
        await store.open()
        packages = CodePackages(tmp_path / "data", max_bytes=1 << 20, max_unpacked_bytes=1 << 22)
        try:
            yield Env(Layers(store, packages, clock=lambda: 1000.0), store, packages)
        finally:
            await store.close()

    return open_


# references


@pytest.mark.parametrize(
    ("refs", "parsed"),
    [
        ([], []),
        (["lib:1"], [LayerRef("lib", 1)]),
        (["lib-x:12", "b_2:3"], [LayerRef("lib-x", 12), LayerRef("b_2", 3)]),
        (["0lib:999999999"], [LayerRef("0lib", 999_999_999)]),
        ([f"l{i}:1" for i in range(MAX_LAYERS)], [LayerRef(f"l{i}", 1) for i in range(MAX_LAYERS)]),
    ],
)
def test_parse_layer_refs(refs: list[str], parsed: list[LayerRef]) -> None:
    assert parse_layer_refs(refs) == parsed


@pytest.mark.parametrize(
    ("refs", "says"),
    [
        (["lib"], "name:version"),
        (["lib:"], "name:version"),
        ([":1"], "name:version"),
        (["lib:0"], "name:version"),  # versions are numbered from 1
        (["lib:01"], "name:version"),
        (["lib:-1"], "name:version"),
        (["lib:1.0"], "name:version"),
        (["lib:1000000000"], "name:version"),
        (["Lib:1"], "name:version"),
        (["-lib:1"], "name:version"),
        (["lib:1\n"], "name:version"),
        (["lib:1:2"], "name:version"),
        (["lib: 1"], "name:version"),
        (["a" * 65 + ":1"], "name:version"),
        (["lib:1", "bad"], "name:version"),
        ([f"l{i}:1" for i in range(MAX_LAYERS + 1)], f"at most {MAX_LAYERS}"),
        (["lib:1", "lib:2"], "only once"),
        (["lib:1", "other:1", "lib:1"], "only once"),
    ],
)
def test_bad_layer_refs_are_refused_on_layers(refs: list[str], says: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_layer_refs(refs)
    assert info.value.field == "layers"
    assert says in info.value.message


def test_a_layer_ref_prints_as_it_is_written() -> None:
    assert str(LayerRef("lib", 3)) == "lib:3"
    assert parse_layer_refs([str(LayerRef("lib-x", 12))]) == [LayerRef("lib-x", 12)]


# pushing


def test_push_numbers_versions_from_1(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            first = await env.layers.push("default", "lib", LIB, "first")
            assert (first.namespace, first.name, first.version) == ("default", "lib", 1)
            assert (first.description, first.created_at, first.code_size) == ("first", 1000.0, len(LIB))
            assert (env.packages.code_dir(first.code_sha256) / "python" / "lib.py").is_file()
            second = await env.layers.push("default", "lib", LIB_V2)
            assert second.version == 2 and second.code_sha256 != first.code_sha256
            assert await env.layers.versions("default", "lib") == [first, second]
            assert await env.store.list_layers("default", "lib") == [first, second]

    asyncio.run(main())


def test_the_same_bytes_twice_make_two_versions(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            first = await env.layers.push("default", "lib", LIB)
            second = await env.layers.push("default", "lib", LIB)
            assert (first.version, second.version) == (1, 2)
            assert first.code_sha256 == second.code_sha256  # one copy of the bytes on disk

    asyncio.run(main())


def test_versions_are_numbered_per_layer_and_namespace(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            await env.layers.push("default", "lib", LIB)
            await env.layers.push("default", "lib", LIB)
            assert (await env.layers.push("default", "base", LIB)).version == 1
            assert (await env.layers.push("team", "lib", LIB)).version == 1
            everything = await env.layers.versions("default")
            assert [(r.name, r.version) for r in everything] == [("base", 1), ("lib", 1), ("lib", 2)]
            assert [r.version for r in await env.layers.versions("team")] == [1]

    asyncio.run(main())


def test_concurrent_pushes_get_distinct_numbers(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            pushed = await asyncio.gather(*(env.layers.push("default", "lib", LIB) for _ in range(6)))
            assert sorted(r.version for r in pushed) == [1, 2, 3, 4, 5, 6]
            assert [r.version for r in await env.layers.versions("default", "lib")] == [1, 2, 3, 4, 5, 6]

    asyncio.run(main())


@pytest.mark.parametrize("name", ["", "Lib", "-lib", "has space", "a" * 65, "lib:1", "lib.x"])
def test_push_refuses_a_bad_name(open_env: OpenEnv, name: str) -> None:
    async def main() -> None:
        async with open_env() as env:
            with pytest.raises(BadRequest) as info:
                await env.layers.push("default", name, LIB)
            assert info.value.field == "name"
            assert await env.store.list_layers("default") == []

    asyncio.run(main())


def test_push_refuses_what_is_not_a_zip(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            with pytest.raises(InvalidCode):
                await env.layers.push("default", "lib", b"not a zip")
            assert await env.store.list_layers("default") == []
            assert (await env.layers.push("default", "lib", LIB)).version == 1  # nothing was taken

    asyncio.run(main())


# reading and deleting


def test_versions_of_an_unknown_layer_is_not_found(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            assert await env.layers.versions("default") == []
            with pytest.raises(NotFound):
                await env.layers.versions("default", "lib")
            await env.layers.push("team", "lib", LIB)
            with pytest.raises(NotFound):  # another namespace's layer
                await env.layers.versions("default", "lib")

    asyncio.run(main())


def test_delete(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            await env.layers.push("default", "lib", LIB)
            await env.layers.push("default", "lib", LIB_V2)
            await env.layers.push("default", "lib", LIB)
            await env.layers.delete("default", "lib", 2)
            assert [r.version for r in await env.layers.versions("default", "lib")] == [1, 3]
            with pytest.raises(NotFound):
                await env.layers.delete("default", "lib", 2)
            with pytest.raises(NotFound):
                await env.layers.delete("team", "lib", 1)
            assert (await env.layers.push("default", "lib", LIB)).version == 4

    asyncio.run(main())


# resolving a function's references


def test_resolve_gives_the_stored_versions_in_order(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            lib1 = await env.layers.push("default", "lib", LIB)
            lib2 = await env.layers.push("default", "lib", LIB_V2)
            base = await env.layers.push("default", "base", LIB)
            assert await env.layers.resolve("default", ["lib:2", "base:1"]) == [lib2, base]
            assert await env.layers.resolve("default", ["base:1", "lib:1"]) == [base, lib1]
            assert await env.layers.resolve("default", []) == []

    asyncio.run(main())


@pytest.mark.parametrize(
    "refs",
    [
        ["lib:3"],  # no such version
        ["nope:1"],  # no such layer
        ["lib:1", "nope:1"],
        ["lib"],  # not a reference at all
        ["lib:1", "lib:2"],
    ],
)
def test_resolve_refuses_what_does_not_exist_on_layers(open_env: OpenEnv, refs: list[str]) -> None:
    async def main() -> None:
        async with open_env() as env:
            await env.layers.push("default", "lib", LIB)
            await env.layers.push("default", "lib", LIB)
            await env.layers.push("team", "nope", LIB)
            with pytest.raises(BadRequest) as info:
                await env.layers.resolve("default", refs)
            assert info.value.field == "layers"

    asyncio.run(main())


def test_resolve_refuses_a_deleted_version(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            await env.layers.push("default", "lib", LIB)
            await env.layers.delete("default", "lib", 1)
            with pytest.raises(BadRequest) as info:
                await env.layers.resolve("default", ["lib:1"])
            assert info.value.field == "layers"

    asyncio.run(main())
