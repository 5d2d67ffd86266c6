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
from wuzhao.domain.functions import FunctionRecord, FunctionUpdate
from wuzhao.errors import BadRequest, InvalidCode, NotFound
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
class Env:
    registry: FunctionRegistry
    store: SqliteStore
    packages: CodePackages
    clock: Clock
    changes: list[tuple[FunctionRecord, FunctionRecord | None]] = field(default_factory=list)


OpenEnv = Callable[[], AbstractAsyncContextManager[Env]]


@pytest.fixture
def open_env(tmp_path: Path) -> OpenEnv:
    @asynccontextmanager
    async def open_() -> AsyncIterator[Env]:
        store = SqliteStore(tmp_path / "wuzhao.db")
        await store.open()
        packages = CodePackages(tmp_path / "data", max_bytes=1 << 20, max_unpacked_bytes=1 << 22)
        clock = Clock()
        registry = FunctionRegistry(store, packages, clock=clock)
        await registry.load()
        env = Env(registry, store, packages, clock)

        async def listener(old: FunctionRecord, new: FunctionRecord | None) -> None:
            env.changes.append((old, new))

        registry.on_change(listener)
        try:
            yield env
        finally:
            await store.close()

    return open_


def test_create_needs_code(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            with pytest.raises(BadRequest) as info:
                await env.registry.put("default", "hello", FunctionUpdate(memory_mb=256))
            assert info.value.field == "code"
            assert await env.store.list_functions() == []

    asyncio.run(main())


def test_create_stores_the_record(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            record, created = await env.registry.put(
                "default", "hello", FunctionUpdate(code=main_code(), memory_mb=256)
            )
            assert created is True
            assert record.revision == 1
            assert record.config.memory_mb == 256
            assert (record.created_at, record.updated_at) == (1000.0, 1000.0)
            assert (env.packages.code_dir(record.code_sha256) / "main.py").is_file()
            assert await env.store.get_function("default", "hello") == record
            assert env.registry.get("default", "hello") == record
            assert env.registry.list("default") == [record]
            assert env.registry.list("other") == []
            assert env.changes == []  # creation retires nothing

    asyncio.run(main())


def test_redeploying_the_same_thing_keeps_the_revision(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            update = FunctionUpdate(code=main_code(), memory_mb=256, env={"A": "1"})
            first, _ = await env.registry.put("default", "hello", update)
            env.clock.now = 2000.0
            again, created = await env.registry.put("default", "hello", update)
            assert created is False
            assert again == first
            assert again.revision == 1 and again.updated_at == 1000.0
            no_code, _ = await env.registry.put("default", "hello", FunctionUpdate(memory_mb=256))
            assert no_code == first
            assert env.changes == []
            assert await env.store.get_function("default", "hello") == first

    asyncio.run(main())


def test_update_bumps_the_revision_and_notifies(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            first, _ = await env.registry.put("default", "hello", FunctionUpdate(code=main_code()))
            env.clock.now = 2000.0
            second, created = await env.registry.put("default", "hello", FunctionUpdate(timeout_s=60))
            assert created is False
            assert second.revision == 2
            assert second.config.timeout_s == 60
            assert second.code_sha256 == first.code_sha256
            assert (second.created_at, second.updated_at) == (1000.0, 2000.0)
            assert env.changes == [(first, second)]

            third, _ = await env.registry.put("default", "hello", FunctionUpdate(code=main_code("y = 2\n")))
            assert third.revision == 3
            assert third.code_sha256 != first.code_sha256
            assert third.config.timeout_s == 60
            assert env.changes[-1] == (second, third)
            assert await env.store.get_function("default", "hello") == third

    asyncio.run(main())


def test_delete_notifies_and_then_404(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            record, _ = await env.registry.put("default", "hello", FunctionUpdate(code=main_code()))
            await env.registry.delete("default", "hello")
            assert env.changes == [(record, None)]
            with pytest.raises(NotFound):
                env.registry.get("default", "hello")
            with pytest.raises(NotFound):
                await env.registry.delete("default", "hello")
            assert await env.store.get_function("default", "hello") is None
            assert env.changes == [(record, None)]
            # recreating starts again at revision 1
            again, created = await env.registry.put("default", "hello", FunctionUpdate(code=main_code()))
            assert (again.revision, created) == (1, True)

    asyncio.run(main())


def test_handler_change_is_checked_against_the_existing_package(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            first, _ = await env.registry.put("default", "hello", FunctionUpdate(code=main_code()))
            with pytest.raises(InvalidCode) as info:
                await env.registry.put("default", "hello", FunctionUpdate(handler="other.handler"))
            assert info.value.field == "handler"
            assert "other.py" in info.value.message
            assert env.registry.get("default", "hello") == first
            assert await env.store.get_function("default", "hello") == first
            assert env.changes == []
            # same module, another function in it: fine
            second, _ = await env.registry.put("default", "hello", FunctionUpdate(handler="main.other"))
            assert second.revision == 2 and second.config.handler == "main.other"

    asyncio.run(main())


def test_handler_change_with_new_code_checks_the_new_package(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            await env.registry.put("default", "hello", FunctionUpdate(code=main_code()))
            with pytest.raises(InvalidCode) as info:
                await env.registry.put(
                    "default", "hello", FunctionUpdate(handler="app.run", code=main_code())
                )
            assert info.value.field == "handler"
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as archive:
                archive.writestr("app/__init__.py", "def run(e, c): return 1\n")
            update = FunctionUpdate(handler="app.run", code=base64.b64encode(buffer.getvalue()).decode())
            record, _ = await env.registry.put("default", "hello", update)
            assert record.revision == 2 and record.config.handler == "app.run"

    asyncio.run(main())


@pytest.mark.parametrize(
    ("update", "error", "field_name"),
    [
        (FunctionUpdate(code="not base64!"), InvalidCode, "code"),
        (FunctionUpdate(code=base64.b64encode(b"not a zip").decode()), InvalidCode, "code"),
        (FunctionUpdate(code=main_code(), runtime="node20"), BadRequest, "runtime"),
        (FunctionUpdate(code=main_code(), env={"AWS_SECRET": "x"}), BadRequest, "env.AWS_SECRET"),
        (FunctionUpdate(code=main_code(), handler="lib.handler"), InvalidCode, "handler"),
    ],
)
def test_bad_creates_store_nothing(
    open_env: OpenEnv, update: FunctionUpdate, error: type[Exception], field_name: str
) -> None:
    async def main() -> None:
        async with open_env() as env:
            with pytest.raises(error) as info:
                await env.registry.put("default", "hello", update)
            assert getattr(info.value, "field", None) == field_name
            assert await env.store.list_functions() == []
            with pytest.raises(NotFound):
                env.registry.get("default", "hello")

    asyncio.run(main())


@pytest.mark.parametrize("name", ["Bad", "", "a/b", "x" * 65])
def test_bad_names_are_refused(open_env: OpenEnv, name: str) -> None:
    async def main() -> None:
        async with open_env() as env:
            with pytest.raises(BadRequest) as info:
                await env.registry.put("default", name, FunctionUpdate(code=main_code()))
            assert info.value.field == "name"

    asyncio.run(main())


def test_load_reads_what_the_store_holds(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            a, _ = await env.registry.put("default", "a", FunctionUpdate(code=main_code()))
            b, _ = await env.registry.put("team", "b", FunctionUpdate(code=main_code()))
        async with open_env() as env:
            assert env.registry.get("default", "a") == a
            assert env.registry.get("team", "b") == b
            assert env.registry.list("team") == [b]

    asyncio.run(main())


def test_concurrent_updates_of_one_function_get_distinct_revisions(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            await env.registry.put("default", "hello", FunctionUpdate(code=main_code()))
            results = await asyncio.gather(
                *(env.registry.put("default", "hello", FunctionUpdate(timeout_s=t)) for t in range(2, 12))
            )
            assert sorted(r.revision for r, _ in results) == list(range(2, 12))
            stored = await env.store.get_function("default", "hello")
            assert stored == env.registry.get("default", "hello")
            assert stored is not None and stored.revision == 11
            assert len(env.changes) == 10

    asyncio.run(main())
