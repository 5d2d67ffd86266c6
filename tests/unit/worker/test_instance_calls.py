"""Requests of a running function (``call`` frames) on a real channel, the test playing the runtime.

A sound runtime makes one request at a time, numbered, for the call in flight, and answers
only once its requests are answered. Anything else is hostile, and must end that instance
(RuntimeExited, or ResponseTooLarge for a frame over the cap) without stalling or failing
the worker; the call's deadline stands while a request is performed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from wuzhao.domain.functions import FunctionConfig
from wuzhao.domain.versions import Executable
from wuzhao.errors import InvocationError, ResponseTooLarge, RuntimeExited, Timeout
from wuzhao.runtimes import memfd, protocol
from wuzhao.runtimes.protocol import WORKER_KINDS, Frame, FrameDecoder, encode
from wuzhao.sandbox.api import ExitStatus
from wuzhao.worker.channel import RuntimeChannel
from wuzhao.worker.instance import Instance

Reply = tuple[dict[str, Any], bytes]


@dataclass
class FakeProcess:
    killed: bool = False

    def kill(self) -> None:
        self.killed = True

    def freeze(self) -> None: ...

    def thaw(self) -> None: ...

    async def wait(self) -> ExitStatus:
        return ExitStatus(code=None, signal=9)

    def oom_killed(self) -> bool:
        return False

    async def destroy(self) -> None: ...


class FakeOutput:
    def begin(self, invocation_id: str | None) -> None: ...

    def end(self) -> None: ...

    def close(self) -> None: ...


class Runtime:
    """The test's end of the channel: frames in and out, descriptors included."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.decoder = FrameDecoder(max_body=1 << 30, allowed=WORKER_KINDS)
        self.frames: list[Frame] = []

    async def receive(self) -> Frame:
        while not self.frames:
            data, ancillary, _, _ = await asyncio.to_thread(
                self.sock.recvmsg, 1 << 16, protocol.ANCILLARY_BYTES
            )
            assert data, "the worker closed the channel"
            self.frames += self.decoder.feed(data, protocol.received_fds(ancillary))
        return self.frames.pop(0)

    async def send(self, data: bytes) -> None:
        await asyncio.to_thread(self.sock.sendall, data)

    async def call(self, invocation_id: str, seq: int, op: str = "get_object", **arguments: Any) -> None:
        await self.send(encode(protocol.CALL, {"id": invocation_id, "seq": seq, "op": op, **arguments}))

    async def gone(self) -> bool:
        """The worker closed its end (or the instance was killed: the test's fake cannot)."""
        data = await asyncio.to_thread(self.sock.recv, 1 << 16)
        return data == b""


@dataclass
class Server:
    """Serves requests as the function API would: each a task whose result is the reply."""

    reply: Callable[[Frame], Reply] = lambda frame: ({"ok": True, "op": frame.header["op"]}, b"")
    hold: asyncio.Event | None = None  # requests wait for it
    seen: list[Frame] = field(default_factory=list)
    tasks: list[asyncio.Task[Reply]] = field(default_factory=list)

    def __call__(self, invocation_id: str, frame: Frame) -> asyncio.Task[Reply]:
        self.seen.append(frame)

        async def perform() -> Reply:
            if self.hold is not None:
                await self.hold.wait()
            return self.reply(frame)

        task = asyncio.get_running_loop().create_task(perform())
        self.tasks.append(task)
        return task


@contextlib.asynccontextmanager
async def instance(timeout_s: int = 30, max_body: int = 1 << 20) -> AsyncIterator[tuple[Instance, Runtime]]:
    ours, theirs = socket.socketpair()
    channel = await RuntimeChannel.connect(ours, max_body=max_body)
    target = Executable("default", "caller", "$LATEST", 1, FunctionConfig(timeout_s=timeout_s), "ab" * 32)
    process = FakeProcess()
    made = Instance("i-1", target, process, channel, FakeOutput(), 1000)  # type: ignore[arg-type]
    try:
        yield made, Runtime(theirs)
    finally:
        channel.close()
        theirs.close()


def run(main: Callable[[], Any]) -> Any:
    """Run ``main`` with every error the loop would only log (a future's exception never
    retrieved, a callback that raised) turned into a test failure."""
    problems: list[dict[str, Any]] = []

    async def wrapper() -> Any:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: problems.append(context))
        return await main()

    result = asyncio.run(wrapper())
    assert problems == []
    return result


def test_requests_are_served_in_turn_and_the_answer_follows_them() -> None:
    server = Server(
        reply=lambda frame: ({"ok": True, "n": frame.header["seq"]}, b"body-%d" % frame.header["seq"])
    )

    async def main() -> tuple[bytes, list[Frame]]:
        async with instance() as (made, runtime):
            call = asyncio.create_task(made.invoke("inv-1", b"{}", server))
            assert (await runtime.receive()).kind == protocol.INVOKE
            replies = []
            for seq in (1, 2, 3):
                await runtime.call("inv-1", seq, bucket="b", key=str(seq))
                replies.append(await runtime.receive())
            await runtime.send(encode(protocol.RESULT, {"id": "inv-1"}, b'"done"'))
            return await call, replies

    result, replies = run(main)
    assert result == b'"done"'
    assert [(r.kind, r.header, r.body) for r in replies] == [
        (protocol.REPLY, {"type": "reply", "ok": True, "n": n, "id": "inv-1", "seq": n}, b"body-%d" % n)
        for n in (1, 2, 3)
    ]
    assert [f.header["key"] for f in server.seen] == ["1", "2", "3"]


def test_a_large_reply_travels_in_the_instance_s_memfd() -> None:
    body = json.dumps("x" * (protocol.MEMFD_THRESHOLD * 2)).encode()
    server = Server(reply=lambda frame: ({"ok": True}, body))

    async def main() -> bytes:
        async with instance() as (made, runtime):
            call = asyncio.create_task(made.invoke("inv-1", b"{}", server))
            await runtime.receive()
            await runtime.call("inv-1", 1)
            reply = await runtime.receive()
            assert reply.fd is not None and reply.memfd_length == len(body)
            with memfd.mapped(reply.fd, reply.memfd_length) as view:
                got = bytes(view)
            await runtime.send(encode(protocol.RESULT, {"id": "inv-1"}, b"null"))
            await call
            return got

    assert run(main) == body


def test_a_large_request_comes_in_a_sealed_memfd() -> None:
    data = b"y" * (protocol.MEMFD_THRESHOLD + 1)
    server = Server()

    async def main() -> None:
        async with instance() as (made, runtime):
            call = asyncio.create_task(made.invoke("inv-1", b"{}", server))
            await runtime.receive()
            fd = memfd.make(data, "request")
            header = {"id": "inv-1", "seq": 1, "op": "put_object", protocol.MEMFD: len(data)}
            frame = encode(protocol.CALL, header)
            await asyncio.to_thread(runtime.sock.sendmsg, [frame], protocol.fds_message([fd]))
            await runtime.receive()
            await runtime.send(encode(protocol.RESULT, {"id": "inv-1"}, b"null"))
            await call

    run(main)
    (frame,) = server.seen
    assert (frame.body, frame.fd) == (data, None)  # read, and the descriptor closed


# name -> what the runtime sends once the call is in flight (``{id}`` is the call's id)
OUT_OF_TURN: dict[str, list[dict[str, Any]]] = {
    "another-invocation": [{"type": "call", "id": "someone-else", "seq": 1, "op": "get_object"}],
    "first-numbered-2": [{"type": "call", "id": "{id}", "seq": 2, "op": "get_object"}],
    "numbered-as-text": [{"type": "call", "id": "{id}", "seq": "1", "op": "get_object"}],
    "no-op": [{"type": "call", "id": "{id}", "seq": 1}],
    "op-not-text": [{"type": "call", "id": "{id}", "seq": 1, "op": {"get": 1}}],
    "two-at-once": [
        {"type": "call", "id": "{id}", "seq": 1, "op": "get_object"},
        {"type": "call", "id": "{id}", "seq": 2, "op": "get_object"},
    ],
    "same-twice": [
        {"type": "call", "id": "{id}", "seq": 1, "op": "get_object"},
        {"type": "call", "id": "{id}", "seq": 1, "op": "get_object"},
    ],
    "answer-while-a-request-is-performed": [
        {"type": "call", "id": "{id}", "seq": 1, "op": "get_object"},
        {"type": "result", "id": "{id}"},
    ],
}


@pytest.mark.parametrize("case", list(OUT_OF_TURN))
def test_a_request_out_of_turn_ends_the_instance_at_once(case: str) -> None:
    server = Server(hold=asyncio.Event())  # the first request is still being performed

    async def main() -> tuple[InvocationError, float, bool]:
        async with instance() as (made, runtime):
            call = asyncio.create_task(made.invoke("inv-1", b"{}", server))
            await runtime.receive()
            started = time.monotonic()
            data = b"".join(
                encode(
                    h["type"],
                    {k: (v.replace("{id}", "inv-1") if isinstance(v, str) else v) for k, v in h.items()},
                )
                for h in OUT_OF_TURN[case]
            )
            await runtime.send(data)
            with pytest.raises(RuntimeExited) as info:
                await call
            return info.value, time.monotonic() - started, made._process.killed  # type: ignore[attr-defined]

    error, elapsed, killed = run(main)
    assert "protocol" in error.message
    assert elapsed < 2  # not the deadline: at once
    assert killed


def test_a_request_where_none_is_served_ends_the_instance() -> None:
    async def main() -> None:
        async with instance() as (made, runtime):
            call = asyncio.create_task(made.invoke("inv-1", b"{}"))  # no server
            await runtime.receive()
            await runtime.call("inv-1", 1)
            with pytest.raises(RuntimeExited, match="none is served"):
                await call

    run(main)


def test_a_request_between_calls_closes_the_channel() -> None:
    async def main() -> None:
        async with instance() as (made, runtime):
            await runtime.call("inv-0", 1)  # nobody asked: no call is in flight
            assert await runtime.gone()
            with pytest.raises(RuntimeExited, match="unsolicited 'call'"):
                await made.invoke("inv-1", b"{}", Server())

    run(main)


def test_a_request_over_the_cap_is_refused_unread() -> None:
    async def main() -> None:
        async with instance(max_body=1024) as (made, runtime):
            call = asyncio.create_task(made.invoke("inv-1", b"{}", Server()))
            await runtime.receive()
            header = json.dumps({"type": "call", "id": "inv-1", "seq": 1, "op": "put_object"}).encode()
            await runtime.send(protocol.PREFIX.pack(len(header), 1 << 30) + header)  # a 1 GB body, announced
            with pytest.raises(ResponseTooLarge):
                await asyncio.wait_for(call, 5)

    run(main)


def test_the_deadline_stands_while_a_request_is_performed() -> None:
    server = Server(hold=asyncio.Event())  # never done

    async def main() -> tuple[float, bool]:
        async with instance(timeout_s=1) as (made, runtime):
            call = asyncio.create_task(made.invoke("inv-1", b"{}", server))
            await runtime.receive()
            started = time.monotonic()
            await runtime.call("inv-1", 1)
            with pytest.raises(Timeout):
                await call
            elapsed = time.monotonic() - started
            # The request is not cut short: it finishes on its own (here, when let go).
            (task,) = server.tasks
            running = not task.done()
            assert server.hold is not None
            server.hold.set()
            await task
            return elapsed, running

    elapsed, running = run(main)
    assert 0.5 < elapsed < 1.5
    assert running


def test_the_runtime_dying_during_a_request_is_seen_at_once() -> None:
    server = Server(hold=asyncio.Event())

    async def main() -> float:
        async with instance(timeout_s=30) as (made, runtime):
            call = asyncio.create_task(made.invoke("inv-1", b"{}", server))
            await runtime.receive()
            await runtime.call("inv-1", 1)
            await asyncio.sleep(0.05)
            started = time.monotonic()
            runtime.sock.close()
            with pytest.raises(RuntimeExited, match="exited"):
                await call
            assert server.hold is not None
            server.hold.set()
            return time.monotonic() - started

    assert run(main) < 5  # EXIT_WAIT_S at most, not the 30 s deadline


def test_a_call_cancelled_during_a_request_leaves_nothing_behind() -> None:
    server = Server(hold=asyncio.Event())

    async def main() -> None:
        async with instance() as (made, runtime):
            call = asyncio.create_task(made.invoke("inv-1", b"{}", server))
            await runtime.receive()
            await runtime.call("inv-1", 1)
            while not server.seen:
                await asyncio.sleep(0.01)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            made._channel.close()  # type: ignore[attr-defined]  # what stopping the instance does
            assert server.hold is not None
            server.hold.set()
            await asyncio.gather(*server.tasks)

    run(main)  # and no future was left with an exception nobody retrieved


def test_a_flood_of_requests_in_turn_is_served_without_stalling_the_loop() -> None:
    server = Server()
    count = 2000

    async def main() -> tuple[int, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        other = asyncio.create_task(ticker())
        async with instance() as (made, runtime):
            call = asyncio.create_task(made.invoke("inv-1", b"{}", server))
            await runtime.receive()
            for seq in range(1, count + 1):
                await runtime.call("inv-1", seq)
                assert (await runtime.receive()).header["seq"] == seq
            await runtime.send(encode(protocol.RESULT, {"id": "inv-1"}, b"1"))
            assert await call == b"1"
        other.cancel()
        return len(server.seen), ticks

    served, ticks = run(main)
    assert served == count
    assert ticks > count  # the loop kept running other work between requests
