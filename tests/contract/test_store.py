"""The store contract (``wuzhao.store.api``), run against every backend.

To add a backend, add one entry to ``BACKENDS``: a function that, given a fresh
temporary directory, returns a factory of unopened stores over one empty
database (each call a new connection to the same data, for close/reopen).
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from wuzhao.domain.functions import FunctionConfig, FunctionRecord
from wuzhao.errors import Conflict
from wuzhao.store.api import ApiKeyRecord, InvocationRecord, LogLine, Store
from wuzhao.store.sqlite import SqliteStore

StoreFactory = Callable[[], Store]


def sqlite_backend(tmp_path: Path) -> StoreFactory:
    path = tmp_path / "state" / "wuzhao.db"
    return lambda: SqliteStore(path)


BACKENDS: dict[str, Callable[[Path], StoreFactory]] = {"sqlite": sqlite_backend}


class Backend:
    def __init__(self, make: StoreFactory) -> None:
        self._make = make

    @contextlib.asynccontextmanager
    async def opened(self) -> AsyncIterator[Store]:
        store = self._make()
        await store.open()
        try:
            yield store
        finally:
            await store.close()

    def run(self, check: Callable[[Store], Awaitable[None]]) -> None:
        """Run ``check`` against one freshly opened store, in its own event loop."""

        async def main() -> None:
            async with self.opened() as store:
                await check(store)

        asyncio.run(main())


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return Backend(BACKENDS[request.param](tmp_path))


def function(
    name: str = "hello", *, namespace: str = "default", revision: int = 1, **config: object
) -> FunctionRecord:
    return FunctionRecord(
        namespace=namespace,
        name=name,
        config=FunctionConfig(**config),  # type: ignore[arg-type]
        code_sha256="ab" * 32,
        code_size=1234,
        revision=revision,
        created_at=1000.0,
        updated_at=1000.0 + revision,
    )


def line(
    message: str,
    *,
    timestamp: float = 1000.0,
    function: str = "hello",
    namespace: str = "default",
    invocation_id: str | None = "inv-1",
    stream: str = "stdout",
) -> LogLine:
    return LogLine(timestamp, namespace, function, invocation_id, stream, message)


def invocation(invocation_id: str = "inv-1", **changes: object) -> InvocationRecord:
    fields: dict[str, object] = {
        "id": invocation_id,
        "namespace": "default",
        "function": "hello",
        "revision": 1,
        "status": "succeeded",
        "started_at": 1000.5,
        "duration_ms": 12.25,
        "cold_start": False,
    }
    fields.update(changes)
    return InvocationRecord(**fields)  # type: ignore[arg-type]


def key(key_id: str, created_at: float = 1000.0, **changes: object) -> ApiKeyRecord:
    fields: dict[str, object] = {
        "key_id": key_id,
        "secret_hash": "f" * 64,
        "namespace": "default",
        "role": "admin",
        "created_at": created_at,
    }
    fields.update(changes)
    return ApiKeyRecord(**fields)  # type: ignore[arg-type]


def messages(lines: list[LogLine]) -> list[str]:
    return [ln.message for ln in lines]


# functions


def test_save_get_list_delete_functions(store: Backend) -> None:
    async def check(s: Store) -> None:
        assert await s.get_function("default", "hello") is None
        assert await s.list_functions() == []
        record = function("hello", handler="app.run", memory_mb=512, env={"A": "1"})
        await s.save_function(record)
        assert await s.get_function("default", "hello") == record
        assert await s.get_function("other", "hello") is None
        assert await s.list_functions("default") == [record]
        assert await s.delete_function("default", "hello") is True
        assert await s.get_function("default", "hello") is None
        assert await s.delete_function("default", "hello") is False
        assert await s.list_functions() == []

    store.run(check)


def test_list_functions_by_namespace_ordered_by_name(store: Backend) -> None:
    async def check(s: Store) -> None:
        for ns, name in [("b", "zeta"), ("a", "mid"), ("b", "alpha"), ("a", "alpha"), ("b", "mid")]:
            await s.save_function(function(name, namespace=ns))
        assert [f.name for f in await s.list_functions("b")] == ["alpha", "mid", "zeta"]
        assert [f.name for f in await s.list_functions("a")] == ["alpha", "mid"]
        assert await s.list_functions("c") == []
        everything = await s.list_functions()
        assert len(everything) == 5
        for ns in ("a", "b"):
            names = [f.name for f in everything if f.namespace == ns]
            assert names == sorted(names)

    store.run(check)


def test_same_name_in_two_namespaces_are_two_functions(store: Backend) -> None:
    async def check(s: Store) -> None:
        await s.save_function(function("f", namespace="a", memory_mb=256))
        await s.save_function(function("f", namespace="b", memory_mb=512))
        assert await s.delete_function("a", "f") is True
        remaining = await s.get_function("b", "f")
        assert remaining is not None and remaining.config.memory_mb == 512

    store.run(check)


def test_revision_compare_and_set(store: Backend) -> None:
    async def check(s: Store) -> None:
        with pytest.raises(Conflict):  # creating must be revision 1
            await s.save_function(function(revision=2))
        assert await s.get_function("default", "hello") is None

        first = function(revision=1, timeout_s=10)
        await s.save_function(first)
        with pytest.raises(Conflict):  # creating what exists
            await s.save_function(function(revision=1, timeout_s=20))
        with pytest.raises(Conflict):  # skipping a revision
            await s.save_function(function(revision=3, timeout_s=30))
        assert await s.get_function("default", "hello") == first

        second = function(revision=2, timeout_s=40)
        await s.save_function(second)
        with pytest.raises(Conflict):  # a writer that read revision 1 is now stale
            await s.save_function(function(revision=2, timeout_s=50))
        assert await s.get_function("default", "hello") == second

        await s.delete_function("default", "hello")
        recreated = function(revision=1, timeout_s=60)
        await s.save_function(recreated)
        assert await s.get_function("default", "hello") == recreated

    store.run(check)


def test_concurrent_writers_of_one_revision_only_one_wins(store: Backend) -> None:
    async def check(s: Store) -> None:
        await s.save_function(function(revision=1))
        attempts = [function(revision=2, timeout_s=t) for t in range(1, 21)]
        results = await asyncio.gather(*(s.save_function(r) for r in attempts), return_exceptions=True)
        winners = [r for r, res in zip(attempts, results, strict=True) if res is None]
        assert len(winners) == 1
        assert all(isinstance(res, Conflict) for res in results if res is not None)
        assert await s.get_function("default", "hello") == winners[0]

    store.run(check)


def test_a_conflict_does_not_leave_the_store_unusable(store: Backend) -> None:
    async def check(s: Store) -> None:
        await s.save_function(function(revision=1))
        with pytest.raises(Conflict):
            await s.save_function(function(revision=1))
        await s.save_function(function("other"))
        await s.append_logs([line("after the conflict")])
        assert len(await s.list_functions()) == 2
        assert messages(await s.query_logs("default", "hello")) == ["after the conflict"]

    store.run(check)


# durability


def test_everything_survives_close_and_reopen(store: Backend) -> None:
    record = function(revision=1, env={"K": "v"})
    failed = invocation("inv-9", status="failed", error={"code": "FunctionError", "message": "x"})

    async def main() -> None:
        async with store.opened() as s:
            await s.save_function(record)
            await s.add_key(key("k1"))
            await s.save_invocations([failed])
            await s.append_logs([line("one"), line("two")])
            before = await s.query_logs("default", "hello")
        async with store.opened() as s:
            assert await s.get_function("default", "hello") == record
            assert await s.get_key("k1") == key("k1")
            assert await s.get_invocation("inv-9") == failed
            assert await s.query_logs("default", "hello") == before
            await s.save_function(function(revision=2))
            await s.append_logs([line("three")])
            after = await s.query_logs("default", "hello")
            assert messages(after) == ["one", "two", "three"]
            assert after[2].seq > before[1].seq  # seq keeps growing across restarts
        async with store.opened() as s:
            stored = await s.get_function("default", "hello")
            assert stored is not None and stored.revision == 2

    asyncio.run(main())


# keys


def test_keys_add_get_list(store: Backend) -> None:
    async def check(s: Store) -> None:
        assert await s.get_key("nope") is None
        assert await s.list_keys() == []
        admin = key("k1", 1000.0, description="created by wuzhao serve")
        user = key("k2", 2000.0, namespace="team", role="user", secret_hash="0" * 64)
        await s.add_key(user)
        await s.add_key(admin)
        assert await s.get_key("k1") == admin
        assert await s.get_key("k2") == user
        listed = await s.list_keys()
        assert sorted(listed, key=lambda k: k.key_id) == [admin, user]

    store.run(check)


# invocations


def test_invocations_save_and_get(store: Backend) -> None:
    error = {"code": "Timeout", "message": "ran past 3 s", "nested": {"list": [1, 2.5, None, "ü"]}}
    cold = invocation("inv-cold", cold_start=True, init_duration_ms=321.5, revision=7)
    failed = invocation("inv-failed", status="failed", error=error, duration_ms=3000.0)

    async def check(s: Store) -> None:
        assert await s.get_invocation("inv-cold") is None
        await s.save_invocations([])
        await s.save_invocations([cold, failed])
        got_cold = await s.get_invocation("inv-cold")
        got_failed = await s.get_invocation("inv-failed")
        assert got_cold == cold
        assert got_cold is not None and got_cold.cold_start is True and got_cold.init_duration_ms == 321.5
        assert got_failed == failed
        assert got_failed is not None and got_failed.error == error and got_failed.init_duration_ms is None

    store.run(check)


def test_invocation_batches_are_all_or_nothing(store: Backend) -> None:
    async def check(s: Store) -> None:
        broken = invocation("inv-broken", status=None)  # NOT NULL column: the batch fails midway
        with pytest.raises(Exception):  # noqa: B017 - the backend's own integrity error
            await s.save_invocations([invocation("inv-ok"), broken])
        assert await s.get_invocation("inv-ok") is None
        await s.save_invocations([invocation("inv-ok")])
        assert await s.get_invocation("inv-ok") is not None

    store.run(check)


def test_history_outlives_the_function(store: Backend) -> None:
    async def check(s: Store) -> None:
        await s.save_function(function())
        await s.save_invocations([invocation("inv-1")])
        await s.append_logs([line("kept")])
        await s.delete_function("default", "hello")
        assert await s.get_invocation("inv-1") is not None
        assert messages(await s.query_logs("default", "hello")) == ["kept"]
        assert messages(await s.invocation_logs("inv-1")) == ["kept"]

    store.run(check)


# logs


def test_append_assigns_growing_seqs_and_keeps_fields(store: Backend) -> None:
    async def check(s: Store) -> None:
        await s.append_logs([])
        await s.append_logs([line("a", timestamp=1.5, stream="stderr", invocation_id=None)])
        await s.append_logs([line("b", function="other"), line("c")])
        (a, c) = await s.query_logs("default", "hello")
        (b,) = await s.query_logs("default", "other")
        assert (a.timestamp, a.stream, a.invocation_id, a.message) == (1.5, "stderr", None, "a")
        assert a.seq < b.seq < c.seq  # one sequence across the whole store
        assert a.seq > 0

    store.run(check)


def test_query_without_since_or_after_is_the_tail_oldest_first(store: Backend) -> None:
    async def check(s: Store) -> None:
        await s.append_logs([line(f"m{i}", timestamp=1000.0 + i) for i in range(10)])
        assert messages(await s.query_logs("default", "hello", limit=3)) == ["m7", "m8", "m9"]
        assert messages(await s.query_logs("default", "hello")) == [f"m{i}" for i in range(10)]
        assert messages(await s.query_logs("default", "hello", limit=100)) == [f"m{i}" for i in range(10)]

    store.run(check)


def test_query_since_is_the_first_lines_at_or_after_a_time(store: Backend) -> None:
    async def check(s: Store) -> None:
        await s.append_logs([line(f"m{i}", timestamp=1000.0 + i) for i in range(10)])
        assert messages(await s.query_logs("default", "hello", since=1004.0, limit=3)) == ["m4", "m5", "m6"]
        assert messages(await s.query_logs("default", "hello", since=1008.5)) == ["m9"]
        assert await s.query_logs("default", "hello", since=2000.0) == []
        assert len(await s.query_logs("default", "hello", since=0.0)) == 10

    store.run(check)


def test_query_after_follows_without_missing_lines(store: Backend) -> None:
    async def check(s: Store) -> None:
        await s.append_logs([line(f"m{i}") for i in range(5)])
        page = await s.query_logs("default", "hello", after=0, limit=2)
        assert messages(page) == ["m0", "m1"]
        page = await s.query_logs("default", "hello", after=page[-1].seq, limit=2)
        assert messages(page) == ["m2", "m3"]
        cursor = page[-1].seq
        await s.append_logs([line("m5"), line("late", function="other"), line("m6")])
        followed = await s.query_logs("default", "hello", after=cursor, limit=100)
        assert messages(followed) == ["m4", "m5", "m6"]
        assert await s.query_logs("default", "hello", after=followed[-1].seq) == []

    store.run(check)


def test_query_since_and_after_together(store: Backend) -> None:
    async def check(s: Store) -> None:
        await s.append_logs([line(f"m{i}", timestamp=1000.0 + i) for i in range(6)])
        everything = await s.query_logs("default", "hello")
        found = await s.query_logs("default", "hello", since=1002.0, after=everything[3].seq)
        assert messages(found) == ["m4", "m5"]

    store.run(check)


def test_logs_are_ordered_by_append_not_by_timestamp(store: Backend) -> None:
    async def check(s: Store) -> None:
        await s.append_logs([line("late clock", timestamp=2000.0), line("early clock", timestamp=1000.0)])
        assert messages(await s.query_logs("default", "hello")) == ["late clock", "early clock"]
        lines = await s.query_logs("default", "hello", after=0)
        assert [ln.seq for ln in lines] == sorted(ln.seq for ln in lines)

    store.run(check)


def test_logs_are_isolated_per_function_and_namespace(store: Backend) -> None:
    async def check(s: Store) -> None:
        await s.append_logs(
            [
                line("mine"),
                line("other function", function="other"),
                line("other namespace", namespace="team"),
                line("mine too"),
            ]
        )
        assert messages(await s.query_logs("default", "hello")) == ["mine", "mine too"]
        assert messages(await s.query_logs("default", "other")) == ["other function"]
        assert messages(await s.query_logs("team", "hello")) == ["other namespace"]
        assert await s.query_logs("team", "other") == []
        assert messages(await s.query_logs("default", "hello", since=0.0, after=0)) == ["mine", "mine too"]

    store.run(check)


def test_log_batches_are_all_or_nothing(store: Backend) -> None:
    async def check(s: Store) -> None:
        broken = LogLine(1.0, "default", "hello", None, "stdout", None)  # type: ignore[arg-type]
        with pytest.raises(Exception):  # noqa: B017 - the backend's own integrity error
            await s.append_logs([line("first"), broken])
        assert await s.query_logs("default", "hello") == []
        await s.append_logs([line("works")])
        assert messages(await s.query_logs("default", "hello")) == ["works"]

    store.run(check)


def test_invocation_logs(store: Backend) -> None:
    async def check(s: Store) -> None:
        await s.append_logs(
            [line(f"a{i}", invocation_id="inv-a") for i in range(5)]
            + [line("b0", invocation_id="inv-b"), line("none", invocation_id=None)]
        )
        await s.append_logs([line("a5", invocation_id="inv-a", stream="stderr")])
        assert messages(await s.invocation_logs("inv-a")) == [f"a{i}" for i in range(6)]
        assert messages(await s.invocation_logs("inv-a", limit=2)) == ["a4", "a5"]
        assert messages(await s.invocation_logs("inv-b")) == ["b0"]
        assert await s.invocation_logs("inv-unknown") == []

    store.run(check)


def test_concurrent_writers_do_not_corrupt_transactions(store: Backend) -> None:
    batches = 40
    per_batch = 25

    async def check(s: Store) -> None:
        writes = []
        for b in range(batches):
            fn = f"fn{b % 4}"
            writes.append(s.append_logs([line(f"{b}:{i}", function=fn) for i in range(per_batch)]))
            writes.append(s.save_function(function(f"f{b}")))
            writes.append(s.save_invocations([invocation(f"inv-{b}", function=fn)]))
        await asyncio.gather(*writes)

        assert len(await s.list_functions("default")) == batches
        seqs: list[int] = []
        for f in range(4):
            lines = await s.query_logs("default", f"fn{f}", after=0, limit=10_000)
            assert len(lines) == batches // 4 * per_batch
            seqs.extend(ln.seq for ln in lines)
            # each batch's lines come out whole and in their order
            by_batch: dict[str, list[int]] = {}
            for ln in lines:
                b, i = ln.message.split(":")
                by_batch.setdefault(b, []).append(int(i))
            assert all(order == list(range(per_batch)) for order in by_batch.values())
        assert len(set(seqs)) == len(seqs) == batches * per_batch
        for b in range(batches):
            assert await s.get_invocation(f"inv-{b}") is not None

    store.run(check)
