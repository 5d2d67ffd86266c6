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
from wuzhao.control.triggers import Triggers
from wuzhao.control.versions import Versions
from wuzhao.domain.functions import FunctionUpdate
from wuzhao.domain.routes import split_path
from wuzhao.domain.triggers import CronTrigger, HttpTrigger, ObjectTrigger, TopicTrigger
from wuzhao.errors import BadRequest, Conflict, NotFound
from wuzhao.store.sqlite import SqliteStore


def main_code() -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("main.py", "def handler(event, context):\n    return event\n")
    return base64.b64encode(buffer.getvalue()).decode()


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Env:
    triggers: Triggers
    registry: FunctionRegistry
    versions: Versions
    store: SqliteStore
    clock: Clock
    changes: list[None] = field(default_factory=list)

    async def deploy(self, name: str = "api", namespace: str = "default") -> None:
        await self.registry.put(namespace, name, FunctionUpdate(code=main_code()))


OpenEnv = Callable[[], AbstractAsyncContextManager[Env]]


@pytest.fixture
def open_env(tmp_path: Path) -> OpenEnv:
    """Factory: Triggers over a real store, registry and versions; call again to restart."""

    @asynccontextmanager
    async def open_() -> AsyncIterator[Env]:
        store = SqliteStore(tmp_path / "wuzhao.db")
        await store.open()
        clock = Clock()
        registry = FunctionRegistry(
            store, CodePackages(tmp_path / "data", max_bytes=1 << 20, max_unpacked_bytes=1 << 22), clock=clock
        )
        await registry.load()
        versions = Versions(store, registry, clock=clock)
        await versions.load()
        triggers = Triggers(store, registry, versions, clock=clock)
        await triggers.load()
        env = Env(triggers, registry, versions, store, clock)
        triggers.on_change(lambda: env.changes.append(None))
        try:
            yield env
        finally:
            await store.close()

    return open_


def http(path: str = "/users/{id}", **changes: object) -> HttpTrigger:
    fields: dict[str, object] = {"function": "api", "path": path, "methods": ["get"], "auth": "none"}
    fields.update(changes)
    return HttpTrigger(**fields)  # type: ignore[arg-type]


def cron(schedule: str = "rate(1 minute)", **changes: object) -> CronTrigger:
    fields: dict[str, object] = {"function": "api", "schedule": schedule}
    fields.update(changes)
    return CronTrigger(**fields)  # type: ignore[arg-type]


def test_put_get_find_delete(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            await env.deploy()
            await env.deploy("job")
            record, created = await env.triggers.put("default", "users", http())
            assert created is True
            assert record.spec.methods == ["GET"]  # type: ignore[union-attr]
            assert (record.created_at, record.updated_at) == (1000.0, 1000.0)
            timer, _ = await env.triggers.put("default", "nightly", cron(function="job"))
            assert env.triggers.get("default", "users") == record
            assert env.triggers.find("default") == [timer, record]
            assert env.triggers.find("default", "job") == [timer]
            assert env.triggers.find("other") == []
            assert await env.store.list_triggers() == [timer, record]
            await env.triggers.delete("default", "users")
            with pytest.raises(NotFound):
                env.triggers.get("default", "users")
            with pytest.raises(NotFound):
                await env.triggers.delete("default", "users")
            assert await env.store.list_triggers() == [timer]
            assert len(env.changes) == 3

    asyncio.run(main())


def test_putting_the_same_again_changes_nothing_and_a_change_restarts_the_schedule(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            await env.deploy()
            first, _ = await env.triggers.put("default", "tick", cron())
            env.clock.now = 2000.0
            same, created = await env.triggers.put("default", "tick", cron())
            assert (same, created) == (first, False)
            assert len(env.changes) == 1
            changed, created = await env.triggers.put("default", "tick", cron("rate(5 minutes)"))
            assert created is False
            assert (changed.created_at, changed.updated_at) == (1000.0, 2000.0)
            assert env.triggers.timers() == [(changed, changed.spec)]

    asyncio.run(main())


def test_the_function_and_qualifier_must_exist(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            with pytest.raises(BadRequest) as caught:
                await env.triggers.put("default", "users", http())
            assert caught.value.field == "function"
            await env.deploy()
            await env.deploy(namespace="team")
            with pytest.raises(BadRequest) as caught:
                await env.triggers.put("default", "users", http(qualifier="live"))
            assert caught.value.field == "qualifier"
            with pytest.raises(BadRequest) as caught:
                await env.triggers.put("default", "users", http(qualifier="3"))
            assert caught.value.field == "qualifier"
            await env.versions.publish("default", "api")
            await env.versions.put_alias("default", "api", "live", version=1)
            record, _ = await env.triggers.put("default", "users", http(qualifier="live"))
            assert record.spec.qualifier == "live"
            await env.triggers.put("default", "pinned", http("/pinned", qualifier="1"))
            with pytest.raises(BadRequest) as caught:
                await env.triggers.put("default", "orders", TopicTrigger(function="nope", topic="orders"))
            assert caught.value.field == "function"
            with pytest.raises(BadRequest) as caught:
                await env.triggers.put("default", "photos", ObjectTrigger(function="api", bucket="p..x"))
            assert caught.value.field == "bucket"
            assert [t.name for t in env.triggers.find("default")] == ["pinned", "users"]

    asyncio.run(main())


def test_routes_are_matched_per_namespace_and_may_not_clash(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            await env.deploy()
            await env.deploy(namespace="team")
            await env.triggers.put("default", "users", http())
            await env.triggers.put("default", "me", http("/users/me"))
            await env.triggers.put("team", "users", http("/users/{uid}"))  # another namespace: no clash
            with pytest.raises(Conflict) as caught:
                await env.triggers.put("default", "clash", http("/users/{uid}", methods=["ANY"]))
            assert "trigger 'users' already answers GET /users/{id}" in caught.value.message
            assert caught.value.field == "path"
            # the same trigger may change its own route
            await env.triggers.put("default", "users", http("/users/{uid}", methods=["GET", "PUT"]))

            def matched(namespace: str, method: str, path: str) -> tuple[str | None, dict[str, str]]:
                match = env.triggers.match(namespace, method, split_path(path))
                return (match.route.name if match.route else None, match.parameters)

            assert matched("default", "GET", "/users/42") == ("users", {"uid": "42"})
            assert matched("default", "GET", "/users/me") == ("me", {})
            assert matched("team", "GET", "/users/me") == ("users", {"uid": "me"})
            assert matched("nowhere", "GET", "/users/me") == (None, {})
            assert env.triggers.match("default", "DELETE", ["users", "1"]).allowed == {"GET", "PUT"}
            await env.triggers.put("default", "users", cron())  # no longer a route
            assert matched("default", "GET", "/users/42") == (None, {})

    asyncio.run(main())


def test_deleting_the_function_deletes_its_triggers(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            await env.deploy()
            await env.deploy("other")
            await env.triggers.put("default", "users", http())
            await env.triggers.put("default", "tick", cron())
            await env.triggers.put("default", "kept", cron(function="other"))
            await env.triggers.record_tick("default", "tick", 1060)
            await env.registry.delete("default", "api")
            assert [t.name for t in env.triggers.find("default")] == ["kept"]
            assert env.triggers.match("default", "GET", ["users", "1"]).route is None
            assert env.triggers.last_tick("default", "tick") is None
            assert [t.name for t in await env.store.list_triggers()] == ["kept"]

    asyncio.run(main())


def test_triggers_and_ticks_survive_a_restart(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            await env.deploy()
            users, _ = await env.triggers.put("default", "users", http())
            await env.triggers.put("default", "tick", cron())
            await env.triggers.record_tick("default", "tick", 1060)
            assert env.triggers.last_tick("default", "tick") == 1060
        async with open_env() as env:
            assert env.triggers.get("default", "users") == users
            assert env.triggers.match("default", "GET", ["users", "7"]).parameters == {"id": "7"}
            assert env.triggers.last_tick("default", "tick") == 1060

    asyncio.run(main())


def test_a_tick_of_a_deleted_trigger_is_not_kept(open_env: OpenEnv) -> None:
    async def main() -> None:
        async with open_env() as env:
            await env.deploy()
            await env.triggers.put("default", "tick", cron())
            await env.triggers.delete("default", "tick")
            await env.triggers.record_tick("default", "tick", 1060)
            assert env.triggers.last_tick("default", "tick") is None
            assert await env.store.last_ticks() == {}

    asyncio.run(main())


def test_object_and_topic_subscribers_are_kept_per_namespace(open_env: OpenEnv) -> None:
    def names(found: list[tuple[object, object]]) -> list[str]:
        return [record.name for record, _ in found]  # type: ignore[attr-defined]

    async def main() -> None:
        async with open_env() as env:
            await env.deploy()
            await env.deploy("job")
            await env.deploy(namespace="team")
            await env.triggers.put("default", "b-photos", ObjectTrigger(function="api", bucket="photos"))
            await env.triggers.put("default", "a-logs", ObjectTrigger(function="job", bucket="logs"))
            await env.triggers.put("team", "photos", ObjectTrigger(function="api", bucket="photos"))
            await env.triggers.put("default", "refunds", TopicTrigger(function="api", topic="orders"))
            await env.triggers.put("default", "audit", TopicTrigger(function="job", topic="orders"))
            await env.triggers.put("default", "other", TopicTrigger(function="job", topic="news"))
            await env.triggers.put("default", "users", http())
            assert names(env.triggers.object_triggers("default")) == ["a-logs", "b-photos"]
            assert names(env.triggers.object_triggers("team")) == ["photos"]
            assert env.triggers.object_triggers("nobody") == []
            assert names(env.triggers.topic_triggers("default", "orders")) == ["audit", "refunds"]
            assert names(env.triggers.topic_triggers("default", "news")) == ["other"]
            assert env.triggers.topic_triggers("team", "orders") == []
            # A trigger changed to another topic moves; a deleted function takes its triggers along.
            await env.triggers.put("default", "refunds", TopicTrigger(function="api", topic="news"))
            assert names(env.triggers.topic_triggers("default", "orders")) == ["audit"]
            await env.registry.delete("default", "job")
            assert names(env.triggers.object_triggers("default")) == ["b-photos"]
            assert names(env.triggers.topic_triggers("default", "news")) == ["refunds"]
            await env.triggers.delete("default", "b-photos")
            assert env.triggers.object_triggers("default") == []
        async with open_env() as env:  # and a restart finds them again
            assert names(env.triggers.object_triggers("team")) == ["photos"]
            (record, spec) = env.triggers.topic_triggers("default", "news")[0]
            assert (record.name, spec.function) == ("refunds", "api")

    asyncio.run(main())
