import asyncio
import base64
import io
import zipfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from wuzhao.control.functions import FunctionRegistry
from wuzhao.control.packages import CodePackages
from wuzhao.control.versions import Versions
from wuzhao.domain.functions import FunctionRecord, FunctionUpdate
from wuzhao.domain.versions import LATEST
from wuzhao.errors import BadRequest, Conflict, NotFound
from wuzhao.store.sqlite import SqliteStore


def main_code(text: str = "def handler(event, context):\n    return event\n") -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("main.py", text)
    return base64.b64encode(buffer.getvalue()).decode()


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Draws:
    """The draws ``resolve`` takes for aliases, in order; records how many were taken."""

    values: list[float] = field(default_factory=list)
    taken: int = 0

    def __call__(self) -> float:
        self.taken += 1
        return self.values.pop(0) if self.values else 0.5


@dataclass
class Env:
    versions: Versions
    registry: FunctionRegistry
    store: SqliteStore
    clock: Clock
    draws: Draws

    async def deploy(
        self, name: str = "hello", namespace: str = "default", **config: object
    ) -> FunctionRecord:
        update = FunctionUpdate(code=main_code(), **config)  # type: ignore[arg-type]
        record, _ = await self.registry.put(namespace, name, update)
        return record


OpenEnv = Callable[[], AbstractAsyncContextManager[Env]]


@pytest.fixture
def open_env(tmp_path: Path) -> OpenEnv:
    """Factory: a Versions over a real store, packages and registry; call again to restart."""

    @asynccontextmanager
    async def open_() -> AsyncIterator[Env]:
        store = SqliteStore(tmp_path / "wuzhao.db")
        await store.open()
        packages = CodePackages(tmp_path / "data", max_bytes=1 << 20, max_unpacked_bytes=1 << 22)
        clock = Clock()
        registry = FunctionRegistry(store, packages, clock=clock)
        await registry.load()
        draws = Draws()
        versions = Versions(store, registry, clock=clock, draw=draws)
        await versions.load()
        try:
            yield Env(versions, registry, store, clock, draws)
        finally:
            await store.close()

    return open_


# publishing


def test_publish_snapshots_latest_as_version_1(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            latest = await env.deploy(memory_mb=256, env={"A": "1"})
            env.clock.now = 2000.0
            record, created = await env.versions.publish("default", "hello", "first")
            assert created is True
            assert (record.namespace, record.function, record.version) == ("default", "hello", 1)
            assert record.config == latest.config
            assert (record.code_sha256, record.code_size) == (latest.code_sha256, latest.code_size)
            assert (record.description, record.created_at) == ("first", 2000.0)
            assert await env.store.list_versions("default", "hello") == [record]
            assert env.versions.list_versions("default", "hello") == [record]
            assert env.versions.get_version("default", "hello", 1) == record

    asyncio.run(main())


def test_publish_is_idempotent_while_latest_is_unchanged(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            await env.deploy()
            first, _ = await env.versions.publish("default", "hello", "first")
            env.clock.now = 2000.0
            again, created = await env.versions.publish("default", "hello", "another description")
            assert created is False
            assert again == first
            # a redeploy of the same code and config is no change either
            await env.deploy()
            assert await env.versions.publish("default", "hello") == (first, False)
            assert await env.store.list_versions("default", "hello") == [first]

    asyncio.run(main())


def test_publish_numbers_each_change(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            await env.deploy(memory_mb=128)
            v1, _ = await env.versions.publish("default", "hello")
            await env.deploy(memory_mb=256)
            v2, created = await env.versions.publish("default", "hello")
            assert created is True and v2.version == 2 and v2.config.memory_mb == 256
            await env.registry.put(
                "default", "hello", FunctionUpdate(code=main_code("X = 1\ndef handler(e, c): pass\n"))
            )
            v3, _ = await env.versions.publish("default", "hello")
            assert v3.version == 3 and v3.code_sha256 != v2.code_sha256
            # back to the code and config of version 1: compared with the last version only
            await env.registry.put("default", "hello", FunctionUpdate(code=main_code(), memory_mb=128))
            v4, created = await env.versions.publish("default", "hello")
            assert created is True and v4.version == 4
            assert (v4.config, v4.code_sha256) == (v1.config, v1.code_sha256)
            assert [v.version for v in env.versions.list_versions("default", "hello")] == [1, 2, 3, 4]
            assert v1 == env.versions.get_version("default", "hello", 1)  # published versions never change

    asyncio.run(main())


def test_versions_are_numbered_per_function_and_namespace(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            for namespace, name in [("default", "hello"), ("default", "other"), ("team", "hello")]:
                await env.deploy(name, namespace)
                record, _ = await env.versions.publish(namespace, name)
                assert record.version == 1
            await env.deploy("hello", "team", memory_mb=512)
            assert (await env.versions.publish("team", "hello"))[0].version == 2
            assert [v.version for v in env.versions.list_versions("default", "hello")] == [1]

    asyncio.run(main())


def test_unknown_functions_and_versions_are_not_found(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            with pytest.raises(NotFound):
                await env.versions.publish("default", "nope")
            with pytest.raises(NotFound):
                env.versions.list_versions("default", "nope")
            await env.deploy()
            assert env.versions.list_versions("default", "hello") == []
            with pytest.raises(NotFound):
                env.versions.list_versions("team", "hello")  # another namespace's function
            with pytest.raises(NotFound):
                env.versions.get_version("default", "hello", 1)
            await env.versions.publish("default", "hello")
            with pytest.raises(NotFound):
                env.versions.get_version("default", "hello", 2)
            with pytest.raises(NotFound):
                await env.versions.delete_version("default", "hello", 2)

    asyncio.run(main())


def test_list_versions_is_a_copy(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            await env.deploy()
            await env.versions.publish("default", "hello")
            env.versions.list_versions("default", "hello").clear()
            assert len(env.versions.list_versions("default", "hello")) == 1

    asyncio.run(main())


# deleting versions


def test_delete_version(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            await env.deploy(memory_mb=128)
            await env.versions.publish("default", "hello")
            await env.deploy(memory_mb=256)
            await env.versions.publish("default", "hello")
            await env.versions.delete_version("default", "hello", 1)
            assert [v.version for v in env.versions.list_versions("default", "hello")] == [2]
            assert [v.version for v in await env.store.list_versions("default", "hello")] == [2]
            with pytest.raises(NotFound):
                env.versions.get_version("default", "hello", 1)
            with pytest.raises(NotFound):
                env.versions.resolve("default", "hello", "1")

    asyncio.run(main())


@pytest.mark.parametrize(
    ("version", "weights", "in_use"),
    [
        (1, None, 1),  # the alias's main version
        (2, {"1": 0.1}, 1),  # the alias's additional version
        (1, {"2": 0.1}, 2),
    ],
)
def test_a_version_an_alias_uses_is_not_deleted(
    open_env: OpenEnv, version: int, weights: dict[str, float] | None, in_use: int
) -> None:
    async def main() -> None:
        async with open_env() as env:
            for memory in (128, 256, 512):
                await env.deploy(memory_mb=memory)
                await env.versions.publish("default", "hello")
            await env.versions.put_alias("default", "hello", "prod", version=version, weights=weights)
            with pytest.raises(Conflict) as info:
                await env.versions.delete_version("default", "hello", in_use)
            assert "prod" in info.value.message
            assert [v.version for v in await env.store.list_versions("default", "hello")] == [1, 2, 3]
            assert len(env.versions.list_versions("default", "hello")) == 3
            await env.versions.put_alias("default", "hello", "prod", version=3)  # point it elsewhere
            await env.versions.delete_version("default", "hello", in_use)
            assert in_use not in [v.version for v in env.versions.list_versions("default", "hello")]

    asyncio.run(main())


def test_the_conflict_names_every_alias_in_the_way(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            await env.deploy()
            await env.versions.publish("default", "hello")
            await env.versions.put_alias("default", "hello", "prod", version=1)
            await env.versions.put_alias("default", "hello", "staging", version=1)
            with pytest.raises(Conflict) as info:
                await env.versions.delete_version("default", "hello", 1)
            assert "prod" in info.value.message and "staging" in info.value.message

    asyncio.run(main())


# aliases


def test_put_alias_creates_then_updates(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            await env.deploy(memory_mb=128)
            await env.versions.publish("default", "hello")
            await env.deploy(memory_mb=256)
            await env.versions.publish("default", "hello")

            created_alias, created = await env.versions.put_alias(
                "default", "hello", "prod", version=1, description="live"
            )
            assert created is True
            assert (created_alias.version, created_alias.additional_version) == (1, None)
            assert (created_alias.additional_weight, created_alias.description) == (0.0, "live")
            assert created_alias.updated_at == 1000.0

            env.clock.now = 2000.0
            updated, created = await env.versions.put_alias(
                "default", "hello", "prod", version=1, weights={"2": 0.25}
            )
            assert created is False
            assert (updated.version, updated.additional_version, updated.additional_weight) == (1, 2, 0.25)
            assert updated.updated_at == 2000.0
            assert env.versions.get_alias("default", "hello", "prod") == updated
            assert env.versions.list_aliases("default", "hello") == [updated]
            assert await env.store.list_aliases("default", "hello") == [updated]

    asyncio.run(main())


def test_list_aliases_is_ordered_by_name(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            await env.deploy()
            await env.versions.publish("default", "hello")
            for name in ("zeta", "alpha", "mid"):
                await env.versions.put_alias("default", "hello", name, version=1)
            assert [a.name for a in env.versions.list_aliases("default", "hello")] == ["alpha", "mid", "zeta"]

    asyncio.run(main())


@pytest.mark.parametrize(
    ("name", "version", "weights", "field"),
    [
        ("Prod", 1, None, "alias"),
        ("1", 1, None, "alias"),  # would read as a version number
        ("$LATEST", 1, None, "alias"),
        ("prod", 3, None, "version"),
        ("prod", 1, {"3": 0.1}, "routing"),
        ("prod", 1, {"1": 0.1}, "routing"),
        ("prod", 1, {"2": 1.0}, "routing"),
        ("prod", 1, {"2": 0.1, "1": 0.1}, "routing"),
    ],
)
def test_put_alias_validates(
    open_env: OpenEnv, name: str, version: int, weights: dict[str, float] | None, field: str
) -> None:
    async def main() -> None:
        async with open_env() as env:
            await env.deploy(memory_mb=128)
            await env.versions.publish("default", "hello")
            await env.deploy(memory_mb=256)
            await env.versions.publish("default", "hello")
            with pytest.raises(BadRequest) as info:
                await env.versions.put_alias("default", "hello", name, version=version, weights=weights)
            assert info.value.field == field
            assert env.versions.list_aliases("default", "hello") == []
            assert await env.store.list_aliases("default", "hello") == []

    asyncio.run(main())


def test_aliases_need_the_function_and_a_published_version(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            with pytest.raises(NotFound):
                await env.versions.put_alias("default", "nope", "prod", version=1)
            with pytest.raises(NotFound):
                env.versions.list_aliases("default", "nope")
            await env.deploy()
            with pytest.raises(BadRequest) as info:  # nothing published yet
                await env.versions.put_alias("default", "hello", "prod", version=1)
            assert info.value.field == "version"

    asyncio.run(main())


def test_delete_alias(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            await env.deploy()
            await env.versions.publish("default", "hello")
            await env.versions.put_alias("default", "hello", "prod", version=1)
            await env.versions.delete_alias("default", "hello", "prod")
            assert env.versions.list_aliases("default", "hello") == []
            assert await env.store.list_aliases("default", "hello") == []
            with pytest.raises(NotFound):
                env.versions.get_alias("default", "hello", "prod")
            with pytest.raises(NotFound):
                await env.versions.delete_alias("default", "hello", "prod")
            await env.versions.delete_version("default", "hello", 1)  # no longer in use

    asyncio.run(main())


# resolving a qualifier


@pytest.mark.parametrize("qualifier", [None, "", LATEST])
def test_resolve_latest(open_env: OpenEnv, qualifier: str | None) -> None:
    async def main() -> None:
        async with open_env() as env:
            await env.deploy(memory_mb=128)
            await env.versions.publish("default", "hello")
            latest = await env.deploy(memory_mb=256)
            executable = env.versions.resolve("default", "hello", qualifier)
            assert executable.version == LATEST
            assert executable.revision == latest.revision == 2
            assert (executable.config, executable.code_sha256) == (latest.config, latest.code_sha256)
            assert executable.pool_key == ("default", "hello", LATEST)
            assert env.draws.taken == 0

    asyncio.run(main())


def test_resolve_a_version_number(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            await env.deploy(memory_mb=128)
            v1, _ = await env.versions.publish("default", "hello")
            await env.deploy(memory_mb=256)
            executable = env.versions.resolve("default", "hello", "1")
            assert (executable.namespace, executable.function) == ("default", "hello")
            assert (executable.version, executable.revision) == ("1", 0)
            assert (executable.config, executable.code_sha256) == (v1.config, v1.code_sha256)
            assert executable.config.memory_mb == 128  # not the working copy
            assert env.draws.taken == 0

    asyncio.run(main())


def test_resolve_an_alias_draws_between_its_versions(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            await env.deploy(memory_mb=128)
            await env.versions.publish("default", "hello")
            await env.deploy(memory_mb=256)
            await env.versions.publish("default", "hello")
            await env.versions.put_alias("default", "hello", "stable", version=1)
            await env.versions.put_alias("default", "hello", "canary", version=1, weights={"2": 0.1})

            env.draws.values = [0.0]
            assert env.versions.resolve("default", "hello", "stable").version == "1"
            env.draws.values = [0.05, 0.1, 0.95, 0.0999]
            picked = [env.versions.resolve("default", "hello", "canary") for _ in range(4)]
            assert [e.version for e in picked] == ["2", "1", "1", "2"]
            assert [e.config.memory_mb for e in picked] == [256, 128, 128, 256]
            assert all(e.revision == 0 for e in picked)
            assert env.draws.taken == 5  # one draw per call through an alias

    asyncio.run(main())


def test_resolve_refuses_what_does_not_exist(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            with pytest.raises(NotFound):
                env.versions.resolve("default", "nope", None)
            await env.deploy()
            await env.versions.publish("default", "hello")
            with pytest.raises(NotFound):
                env.versions.resolve("default", "hello", "2")
            with pytest.raises(NotFound):
                env.versions.resolve("default", "hello", "prod")
            with pytest.raises(NotFound):
                env.versions.resolve("team", "hello", "1")
            for bad in ("0", "Prod", "1.0", "²"):
                with pytest.raises(BadRequest) as info:
                    env.versions.resolve("default", "hello", bad)
                assert info.value.field == "qualifier"

    asyncio.run(main())


# lifetime


def test_versions_and_aliases_survive_a_restart(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            await env.deploy(memory_mb=128)
            await env.versions.publish("default", "hello")
            await env.deploy(memory_mb=256)
            await env.versions.publish("default", "hello")
            alias, _ = await env.versions.put_alias("default", "hello", "prod", version=2, weights={"1": 0.5})
            before = env.versions.list_versions("default", "hello")
        async with open_env() as env:
            assert env.versions.list_versions("default", "hello") == before
            assert env.versions.list_aliases("default", "hello") == [alias]
            env.draws.values = [0.9]
            assert env.versions.resolve("default", "hello", "prod").version == "2"
            # publishing carries on: $LATEST equals version 2
            assert (await env.versions.publish("default", "hello"))[1] is False
            await env.deploy(memory_mb=512)
            assert (await env.versions.publish("default", "hello"))[0].version == 3

    asyncio.run(main())


def test_deleting_the_function_drops_its_versions_and_aliases(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            await env.deploy(memory_mb=128)
            await env.versions.publish("default", "hello")
            await env.deploy(memory_mb=256)
            await env.versions.publish("default", "hello")
            await env.versions.put_alias("default", "hello", "prod", version=2)
            await env.deploy("other")
            await env.versions.publish("default", "other")

            await env.registry.delete("default", "hello")
            with pytest.raises(NotFound):
                env.versions.list_versions("default", "hello")
            with pytest.raises(NotFound):
                env.versions.resolve("default", "hello", "prod")

            # a function created again under the old name starts with nothing
            await env.deploy(memory_mb=1024)
            assert env.versions.list_versions("default", "hello") == []
            assert env.versions.list_aliases("default", "hello") == []
            with pytest.raises(NotFound):
                env.versions.resolve("default", "hello", "prod")
            with pytest.raises(NotFound):
                env.versions.resolve("default", "hello", "1")
            record, created = await env.versions.publish("default", "hello")
            assert created is True and record.version == 1 and record.config.memory_mb == 1024
            assert await env.store.list_aliases("default", "hello") == []
            # other functions keep theirs
            assert [v.version for v in env.versions.list_versions("default", "other")] == [1]

    asyncio.run(main())
