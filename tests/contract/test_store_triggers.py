"""The store contract for triggers and their ticks, run against every backend of ``test_store``."""

import asyncio

from tests.contract.test_store import Backend, function, store

from wuzhao.domain.triggers import CronTrigger, HttpTrigger, TriggerSpec
from wuzhao.store.api import Store, TriggerRecord

__all__ = ["store"]  # the backend-parametrised fixture, shared with test_store


def trigger(
    name: str = "tick",
    spec: TriggerSpec | None = None,
    *,
    namespace: str = "default",
    updated_at: float = 1000.0,
) -> TriggerRecord:
    spec = spec or CronTrigger(function="hello", schedule="rate(1 minute)")
    return TriggerRecord(namespace, name, spec, 1000.0, updated_at)


def http(path: str = "/users/{id}", **changes: object) -> HttpTrigger:
    fields: dict[str, object] = {"function": "hello", "path": path, "methods": ["GET"], "auth": "none"}
    fields.update(changes)
    return HttpTrigger(**fields)  # type: ignore[arg-type]


def test_save_get_list_delete(store: Backend) -> None:
    async def check(s: Store) -> None:
        assert await s.get_trigger("default", "tick") is None
        assert await s.list_triggers() == []
        cron = trigger("tick", CronTrigger(function="hello", schedule="0 3 * * *", timezone="Europe/Paris"))
        route = trigger("users", http(qualifier="live"))
        await s.save_trigger(route)
        await s.save_trigger(cron)
        assert await s.get_trigger("default", "tick") == cron
        assert await s.get_trigger("default", "users") == route
        assert await s.get_trigger("other", "tick") is None
        assert await s.list_triggers("default") == [cron, route]
        assert await s.delete_trigger("default", "tick") is True
        assert await s.delete_trigger("default", "tick") is False
        assert await s.list_triggers() == [route]

    store.run(check)


def test_list_by_namespace_ordered(store: Backend) -> None:
    async def check(s: Store) -> None:
        for namespace, name in [("b", "zeta"), ("a", "mid"), ("b", "alpha"), ("a", "alpha")]:
            await s.save_trigger(trigger(name, namespace=namespace))
        assert [t.name for t in await s.list_triggers("b")] == ["alpha", "zeta"]
        assert [(t.namespace, t.name) for t in await s.list_triggers()] == [
            ("a", "alpha"),
            ("a", "mid"),
            ("b", "alpha"),
            ("b", "zeta"),
        ]
        assert await s.list_triggers("c") == []

    store.run(check)


def test_saving_again_replaces_the_spec_and_keeps_the_tick(store: Backend) -> None:
    async def check(s: Store) -> None:
        await s.save_trigger(trigger())
        assert await s.record_tick("default", "tick", 1060) is True
        changed = trigger(spec=CronTrigger(function="other", schedule="rate(5 minutes)"), updated_at=2000.0)
        await s.save_trigger(changed)
        assert await s.get_trigger("default", "tick") == changed
        assert await s.last_ticks() == {("default", "tick"): 1060}

    store.run(check)


def test_ticks_are_recorded_per_trigger_and_go_with_it(store: Backend) -> None:
    async def check(s: Store) -> None:
        assert await s.record_tick("default", "tick", 60) is False  # no such trigger: nothing kept
        assert await s.last_ticks() == {}
        await s.save_trigger(trigger("tick"))
        await s.save_trigger(trigger("tick", namespace="team"))
        await s.save_trigger(trigger("never"))
        assert await s.record_tick("default", "tick", 60) is True
        assert await s.record_tick("default", "tick", 120) is True
        assert await s.record_tick("team", "tick", 2**40) is True
        assert await s.last_ticks() == {("default", "tick"): 120, ("team", "tick"): 2**40}
        await s.delete_trigger("default", "tick")
        await s.save_trigger(trigger("tick"))  # made again: it starts without a tick
        assert await s.last_ticks() == {("team", "tick"): 2**40}

    store.run(check)


def test_deleting_a_function_deletes_its_triggers(store: Backend) -> None:
    async def check(s: Store) -> None:
        await s.save_function(function("hello"))
        await s.save_function(function("other"))
        await s.save_trigger(trigger("a", http()))
        await s.save_trigger(trigger("b"))
        await s.save_trigger(trigger("c", CronTrigger(function="other", schedule="rate(1 hour)")))
        await s.save_trigger(trigger("d", namespace="team"))  # a function "hello" of another namespace
        await s.record_tick("default", "b", 60)
        assert await s.delete_function("default", "hello") is True
        assert [t.name for t in await s.list_triggers("default")] == ["c"]
        assert [t.name for t in await s.list_triggers("team")] == ["d"]
        assert await s.last_ticks() == {}

    store.run(check)


def test_triggers_and_ticks_survive_close_and_reopen(store: Backend) -> None:
    record = trigger("users", http(path="/files/{proxy+}", methods=["ANY"], auth="key"))

    async def main() -> None:
        async with store.opened() as s:
            await s.save_trigger(record)
            await s.save_trigger(trigger("tick"))
            await s.record_tick("default", "tick", 1_700_000_000)
        async with store.opened() as s:
            assert await s.get_trigger("default", "users") == record
            assert await s.last_ticks() == {("default", "tick"): 1_700_000_000}

    asyncio.run(main())
