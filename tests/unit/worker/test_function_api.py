"""The in-function API's worker side: each request performed as the calling function, in its
namespace, continuing its chain, and every failure turned into an error reply.

Objects, the queue and deliveries are the real embedded ones; the worker and the topics are fakes
that record what they were asked.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest

from wuzhao.config import Settings
from wuzhao.control.objects import Objects
from wuzhao.domain import chains
from wuzhao.domain.chains import Chain
from wuzhao.domain.functions import FunctionConfig
from wuzhao.domain.versions import Executable
from wuzhao.errors import BadRequest, FunctionError, NotFound, WuzhaoError
from wuzhao.gateway.objects import object_view as api_object_view
from wuzhao.objects.api import ObjectEvent
from wuzhao.objects.local import LocalObjectStore
from wuzhao.observe.metrics import Metrics
from wuzhao.queue.sqlite import SqliteQueue
from wuzhao.runtimes import protocol
from wuzhao.runtimes.protocol import Frame
from wuzhao.worker.deliveries import Deliveries
from wuzhao.worker.function_api import Caller, FunctionApi, Reply, error_reply, object_view
from wuzhao.worker.notifications import Published
from wuzhao.worker.worker import Outcome

CONFIGS = {
    "caller": FunctionConfig(),
    "callee": FunctionConfig(max_chain_calls=2),
    "free": FunctionConfig(max_chain_calls=1, recursive_loop="allow"),
}
CHAIN = Chain("chain-1", 2, {"caller": 1, "callee": 1})
CALLER = Caller("default", "caller", "inv-1", CHAIN)


def resolve(namespace: str, function: str, qualifier: str | None) -> Executable:
    if function not in CONFIGS:
        raise NotFound(f"function {function!r} does not exist")
    return Executable(namespace, function, qualifier or "$LATEST", 1, CONFIGS[function], "ab" * 32)


@dataclass
class FakeNotifications:
    published: list[dict[str, Any]] = field(default_factory=list)

    async def publish(
        self, namespace: str, topic: str, message: Any, attributes: Any = None, *, cause: Chain | None = None
    ) -> Published:
        self.published.append(
            {
                "namespace": namespace,
                "topic": topic,
                "message": message,
                "attributes": attributes,
                "cause": cause,
            }
        )
        return Published("msg-1", 3)


@dataclass
class FakeWorker:
    outcome: Callable[[Executable, bytes], Outcome] = lambda target, event: Outcome(
        "callee-inv", False, 1.0, target.version, result=b'{"echo":' + event + b"}"
    )
    calls: list[tuple[Executable, bytes, Chain | None]] = field(default_factory=list)

    async def invoke(self, target: Executable, event: bytes, *, chain: Chain | None = None) -> Outcome:
        self.calls.append((target, event, chain))
        return self.outcome(target, event)


@dataclass
class World:
    api: FunctionApi
    objects: Objects
    queue: SqliteQueue
    notifications: FakeNotifications
    worker: FakeWorker
    metrics: Metrics
    changes: list[tuple[ObjectEvent, Chain | None]]
    seq: int = 0

    async def request(self, op: str, body: bytes = b"", caller: Caller = CALLER, **arguments: Any) -> Reply:
        self.seq += 1
        header = {"type": protocol.CALL, "id": caller.invocation_id, "seq": self.seq, "op": op, **arguments}
        return await self.api.start(caller, Frame(header, body))

    def counted(self, op: str, outcome: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "wuzhao_function_api_calls_total",
            {"namespace": "default", "function": "caller", "op": op, "outcome": outcome},
        )
        return value or 0.0


def run(tmp_path: Path, scenario: Callable[[World], Awaitable[None]], **settings: str) -> None:
    async def main() -> None:
        config = Settings.load(settings, data_dir=tmp_path)
        queue = SqliteQueue(tmp_path / "queue.db")
        await queue.open()
        changes: list[tuple[ObjectEvent, Chain | None]] = []

        async def on_change(event: ObjectEvent, cause: Chain | None) -> None:
            changes.append((event, cause))

        objects = Objects(
            LocalObjectStore(tmp_path / "objects"), max_object_bytes=1 << 20, on_change=on_change
        )
        await objects.open()
        metrics = Metrics()
        notifications = FakeNotifications()
        worker = FakeWorker()
        api = FunctionApi(
            config,
            objects=objects,
            notifications=notifications,  # type: ignore[arg-type]
            deliveries=Deliveries(queue, config, resolve=resolve, metrics=metrics),
            resolve=resolve,
            worker=worker,  # type: ignore[arg-type]
            metrics=metrics,
        )
        try:
            await objects.create_bucket("default", "mine")
            await objects.create_bucket("team", "theirs")
            await scenario(World(api, objects, queue, notifications, worker, metrics, changes))
            await api.close()
        finally:
            await objects.close()
            await queue.close()

    asyncio.run(main())


def error_of(reply: Reply) -> dict[str, Any]:
    header, body = reply
    assert header["ok"] is False, header
    return {**header["error"], **(json.loads(body) if body else {})}


def test_objects_are_the_caller_s_and_its_changes_continue_its_chain(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        header, body = await world.request(
            "put_object", b"hello", bucket="mine", key="a.txt", content_type="text/plain"
        )
        assert (header["ok"], header["created"], body) == (True, True, b"")
        written = header["object"]
        assert (written["key"], written["size"], written["content_type"]) == ("a.txt", 5, "text/plain")
        header, body = await world.request("get_object", bucket="mine", key="a.txt")
        assert (header["object"], body) == (written, b"hello")
        header, body = await world.request("list_objects", bucket="mine", prefix="a")
        assert json.loads(body) == {"objects": [written], "next": None}
        assert await world.request("delete_object", bucket="mine", key="a.txt") == ({"ok": True}, b"")
        assert [(event.kind, event.namespace, cause) for event, cause in world.changes] == [
            ("created", "default", CHAIN),
            ("deleted", "default", CHAIN),
        ]
        assert world.counted("put_object", "ok") == 1

    run(tmp_path, scenario)


@pytest.mark.parametrize(
    ("op", "body", "arguments"),
    [
        ("get_object", b"", {"bucket": "theirs", "key": "k"}),
        ("put_object", b"x", {"bucket": "theirs", "key": "k"}),
        ("delete_object", b"", {"bucket": "theirs", "key": "k"}),
        ("list_objects", b"", {"bucket": "theirs"}),
    ],
)
def test_another_namespace_s_bucket_does_not_exist_for_a_function(
    tmp_path: Path, op: str, body: bytes, arguments: dict[str, Any]
) -> None:
    async def scenario(world: World) -> None:
        await world.objects.put("team", "theirs", "k", _chunks(b"theirs"))
        assert error_of(await world.request(op, body, **arguments))["code"] == "NotFound"
        reader = await world.objects.read("team", "theirs", "k")
        await reader.close()
        assert reader.record.size == 6  # untouched

    run(tmp_path, scenario)


def test_an_object_larger_than_a_function_receives_is_refused_unread(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        await world.objects.put("default", "mine", "big", _chunks(b"x" * 2000))
        error = error_of(await world.request("get_object", bucket="mine", key="big"))
        assert error["code"] == "PayloadTooLarge"
        assert "2000 bytes" in error["message"] and "1024" in error["message"]

    run(tmp_path, scenario, WUZHAO_MAX_REQUEST_BYTES="1024")


def test_a_message_is_published_in_the_caller_s_namespace_under_its_chain(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        reply = await world.request("publish", b'{"n":1}', topic="orders", attributes={"kind": "refund"})
        assert reply == ({"ok": True, "message_id": "msg-1", "deliveries": 3}, b"")
        assert world.notifications.published == [
            {
                "namespace": "default",
                "topic": "orders",
                "message": {"n": 1},
                "attributes": {"kind": "refund"},
                "cause": CHAIN,
            }
        ]

    run(tmp_path, scenario)


def test_a_synchronous_invoke_runs_the_callee_one_call_further_along_the_chain(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        header, body = await world.request("invoke", b'{"n":1}', function="callee", qualifier="7")
        assert header == {"ok": True, "invocation_id": "callee-inv", "version": "7"}
        assert body == b'{"echo":{"n":1}}'
        ((target, event, chain),) = world.worker.calls
        assert (target.namespace, target.function, event) == ("default", "callee", b'{"n":1}')
        assert chain == Chain("chain-1", 3, {"caller": 1, "callee": 2})

    run(tmp_path, scenario)


def test_a_synchronous_invoke_that_would_close_a_loop_is_refused(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        looping = Caller("default", "caller", "inv-2", Chain("chain-1", 5, {"callee": 2}))
        error = error_of(await world.request("invoke", b"{}", caller=looping, function="callee"))
        assert error["code"] == "RecursiveLoop"
        assert "'callee' was called 2 times" in error["message"]
        assert world.worker.calls == []
        loops = world.metrics.registry.get_sample_value(
            "wuzhao_recursive_loops_total", {"namespace": "default", "function": "callee"}
        )
        assert loops == 1
        # A function that opted out is called all the same.
        free = Caller("default", "caller", "inv-3", Chain("chain-1", 5, {"free": 9}))
        header, _ = await world.request("invoke", b"{}", caller=free, function="free")
        assert header["ok"] is True

    run(tmp_path, scenario)


def test_the_callee_s_failure_comes_back_whole_with_its_invocation_id(tmp_path: Path) -> None:
    failure = FunctionError("no way", error_type="ValueError", traceback=["line 1\n", "line 2\n"])

    async def scenario(world: World) -> None:
        world.worker.outcome = lambda target, event: Outcome(
            "callee-inv", False, 1.0, "$LATEST", error=failure
        )
        header, body = await world.request("invoke", b"{}", function="callee")
        assert header == {"ok": False, "error": {"code": "FunctionError", "message": "no way"}}
        assert json.loads(body) == {
            "error_type": "ValueError",
            "traceback": ["line 1\n", "line 2\n"],
            "invocation_id": "callee-inv",
        }
        assert world.counted("invoke", "FunctionError") == 1

    run(tmp_path, scenario)


def test_an_asynchronous_invoke_is_queued_under_the_chain_and_made_once_per_attempt(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        header, _ = await world.request("invoke", b'{"n":1}', function="callee", **{"async": True})
        call_id = header["invocation_id"]
        state = await world.queue.get(call_id)
        assert state is not None and state.status == "queued"
        assert (state.call.function, state.call.event) == ("callee", b'{"n":1}')
        assert chains.from_origin(state.call.origin, call_id, "callee") == Chain(
            "chain-1", 3, {"caller": 1, "callee": 2}
        )
        assert state.call.origin["caller"] == "inv-1"
        # The same request of a retried attempt (same invocation, same place, same call): no second.
        world.seq = 0
        again, _ = await world.request("invoke", b'{"n":1}', function="callee", **{"async": True})
        assert again["invocation_id"] == call_id
        world.seq = 0
        other, _ = await world.request("invoke", b'{"n":2}', function="callee", **{"async": True})
        assert other["invocation_id"] != call_id

    run(tmp_path, scenario)


def test_an_asynchronous_invoke_closing_a_loop_is_recorded_dead_and_its_id_returned(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        looping = Caller("default", "caller", "inv-2", Chain("chain-1", 5, {"callee": 2}))
        header, _ = await world.request("invoke", b"{}", caller=looping, function="callee", **{"async": True})
        state = await world.queue.get(header["invocation_id"])
        assert state is not None and state.status == "dead"
        assert state.error is not None and state.error["code"] == "RecursiveLoop"

    run(tmp_path, scenario)


def test_an_asynchronous_invoke_of_a_function_that_does_not_exist_is_not_found_now(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        error = error_of(await world.request("invoke", b"{}", function="ghost", **{"async": True}))
        assert error["code"] == "NotFound"
        assert await world.queue.dead_letters("default", "ghost", limit=10) == []

    run(tmp_path, scenario)


def test_an_unknown_op_is_an_error_reply_counted_without_its_name(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        error = error_of(await world.request("launch_missiles", b"", target="moon"))
        assert (error["code"], error["field"]) == ("BadRequest", "op")
        assert world.counted("unknown", "BadRequest") == 1
        assert world.counted("launch_missiles", "BadRequest") == 0

    run(tmp_path, scenario)


def test_a_failure_inside_the_platform_is_an_error_reply_not_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(world: World) -> None:
        async def broken(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("the disk is on fire")

        world.objects.list = broken  # type: ignore[method-assign]
        error = error_of(await world.request("list_objects", bucket="mine"))
        assert error == {"code": "InternalError", "message": "list_objects failed inside the platform"}
        assert world.counted("list_objects", "InternalError") == 1

    run(tmp_path, scenario)
    assert "the disk is on fire" in caplog.text


def test_an_error_reply_keeps_its_header_small_and_the_rest_in_the_body() -> None:
    long = "m" * 5000
    header, body = error_reply(BadRequest(long, field="f" * 1000))
    assert header["error"]["message"] == "m" * 1024
    assert header["error"]["field"] == "f" * 256
    assert json.loads(body) == {"message": long}  # whole, where its size is no risk
    assert len(protocol.encode(protocol.REPLY, header)) < 4096
    assert error_reply(NotFound("gone")) == (
        {"ok": False, "error": {"code": "NotFound", "message": "gone"}},
        b"",
    )
    header, body = error_reply(WuzhaoError("x", hint="y"), invocation_id="i")
    assert json.loads(body) == {"hint": "y", "invocation_id": "i"}


def test_an_object_looks_as_the_http_api_shows_it(tmp_path: Path) -> None:
    async def main() -> None:
        objects = Objects(LocalObjectStore(tmp_path / "objects"), max_object_bytes=1 << 20)
        await objects.open()
        try:
            await objects.create_bucket("default", "box")
            record, _ = await objects.put("default", "box", "k", _chunks(b"x"), metadata={"a": "1"})
            assert msgspec.json.encode(object_view(record)) == msgspec.json.encode(api_object_view(record))
        finally:
            await objects.close()

    asyncio.run(main())


def test_close_waits_for_the_requests_under_way(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        gate = asyncio.Event()

        async def slow(target: Executable, event: bytes, *, chain: Chain | None = None) -> Outcome:
            await gate.wait()
            return Outcome("c", False, 1.0, "$LATEST", result=b"1")

        world.worker.invoke = slow  # type: ignore[method-assign]
        header = {"type": protocol.CALL, "id": "inv-1", "seq": 1, "op": "invoke", "function": "callee"}
        task = world.api.start(CALLER, Frame(header, b"{}"))
        closing = asyncio.create_task(world.api.close())
        await asyncio.sleep(0.05)
        assert not closing.done()
        gate.set()
        await closing
        assert task.result()[0]["ok"] is True

    run(tmp_path, scenario)


async def _chunks(data: bytes):  # type: ignore[no-untyped-def]
    yield data
