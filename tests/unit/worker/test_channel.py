import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest

from wuzhao.runtimes import protocol
from wuzhao.runtimes.protocol import PREFIX, WORKER_KINDS, FrameDecoder, FrameTooLarge, ProtocolError, encode
from wuzhao.worker.channel import ChannelClosed, RuntimeChannel

Pair = tuple[RuntimeChannel, socket.socket]


@contextlib.asynccontextmanager
async def open_channel(max_body: int = 1024) -> AsyncIterator[Pair]:
    """A channel on one end of a socketpair; the test plays the runtime on the other."""
    ours, runtime = socket.socketpair()
    runtime.setblocking(False)
    try:
        channel = await RuntimeChannel.connect(ours, max_body=max_body)
        try:
            yield channel, runtime
        finally:
            channel.close()
    finally:
        runtime.close()
        ours.close()


async def send(runtime: socket.socket, data: bytes) -> None:
    await asyncio.get_running_loop().sock_sendall(runtime, data)


async def receive_closed(channel: RuntimeChannel) -> ChannelClosed:
    with pytest.raises(ChannelClosed) as info:
        await asyncio.wait_for(channel.expect(), 5)
    return info.value


async def peer_sees_eof(runtime: socket.socket) -> bool:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(5):
        while True:
            try:
                data = await loop.sock_recv(runtime, 65536)
            except ConnectionResetError:
                return True
            if not data:
                return True


def test_frames_are_received_in_order() -> None:
    sent = [
        encode(protocol.READY),
        encode(protocol.RESULT, {"id": "a"}, b'{"n": 1}'),
        encode(protocol.ERROR, {"id": "b", "error_type": "E", "message": "m", "traceback": ""}),
        encode(protocol.RESULT, {"id": "c"}, b"x" * 1000),
    ]

    async def main() -> list[tuple[str, dict[str, object], bytes]]:
        got = []
        async with open_channel() as (channel, runtime):
            for data in sent:
                waiting = channel.expect()
                await asyncio.sleep(0)
                for i in range(0, len(data), 7):  # trickled in small pieces
                    await send(runtime, data[i : i + 7])
                frame = await asyncio.wait_for(waiting, 5)
                got.append((frame.kind, frame.header, frame.body))
            assert channel.closed is None
        return got

    got = asyncio.run(main())
    assert [kind for kind, _, _ in got] == ["ready", "result", "error", "result"]
    assert got[1] == ("result", {"id": "a", "type": "result"}, b'{"n": 1}')
    assert got[3][2] == b"x" * 1000


def test_send_writes_frames_the_runtime_can_decode() -> None:
    async def main() -> list[protocol.Frame]:
        async with open_channel() as (channel, runtime):
            channel.send(protocol.INIT, {"handler": "main.handler"})
            channel.send(protocol.INVOKE, {"id": "i-1", "deadline_ms": 10}, b'{"event": true}')
            decoder = FrameDecoder(max_body=1024, allowed=WORKER_KINDS)
            frames: list[protocol.Frame] = []
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(5):
                while len(frames) < 2:
                    frames.extend(decoder.feed(await loop.sock_recv(runtime, 65536)))
            return frames

    init, invoke = asyncio.run(main())
    assert init.header == {"handler": "main.handler", "type": "init"}
    assert (invoke.kind, invoke.header["id"], invoke.body) == ("invoke", "i-1", b'{"event": true}')


def test_an_unsolicited_frame_closes_the_channel() -> None:
    async def main() -> None:
        async with open_channel() as (channel, runtime):
            await send(runtime, encode(protocol.READY))  # nobody asked
            async with asyncio.timeout(5):
                while channel.closed is None:
                    await asyncio.sleep(0.001)
            closed = await receive_closed(channel)
            assert isinstance(closed.cause, ProtocolError)
            assert "unsolicited" in str(closed.cause)
            assert closed is channel.closed
            with pytest.raises(ChannelClosed):
                channel.send(protocol.INVOKE, {"id": "x"})
            assert await peer_sees_eof(runtime)

    asyncio.run(main())


def test_a_second_frame_for_one_receive_is_unsolicited() -> None:
    async def main() -> None:
        async with open_channel() as (channel, runtime):
            waiting = channel.expect()
            await asyncio.sleep(0)
            await send(runtime, encode(protocol.RESULT, {"id": "a"}) + encode(protocol.RESULT, {"id": "b"}))
            frame = await asyncio.wait_for(waiting, 5)
            assert frame.header["id"] == "a"
            closed = await receive_closed(channel)
            assert isinstance(closed.cause, ProtocolError)

    asyncio.run(main())


@pytest.mark.parametrize(
    "data",
    [
        PREFIX.pack(8, 0) + b"not json",
        PREFIX.pack(2, 0) + b"[]",
        PREFIX.pack(0, 0),
        encode(protocol.INVOKE, {"id": "x"}),  # a worker's kind, from the runtime
    ],
    ids=["not-json", "not-object", "empty-header", "wrong-direction"],
)
def test_a_malformed_frame_closes_with_a_protocol_error(data: bytes) -> None:
    async def main() -> None:
        async with open_channel() as (channel, runtime):
            waiting = asyncio.ensure_future(receive_closed(channel))
            await asyncio.sleep(0)
            await send(runtime, data)
            closed = await waiting
            assert type(closed.cause) is ProtocolError
            assert str(closed) == str(closed.cause)
            assert await peer_sees_eof(runtime)

    asyncio.run(main())


def test_eof_closes_with_no_cause() -> None:
    async def main() -> None:
        async with open_channel() as (channel, runtime):
            waiting = asyncio.ensure_future(receive_closed(channel))
            await asyncio.sleep(0)
            runtime.shutdown(socket.SHUT_WR)
            closed = await waiting
            assert closed.cause is None
            assert "closed its channel" in str(closed)
            # every later receive fails the same way, at once
            assert await receive_closed(channel) is closed

    asyncio.run(main())


def test_eof_in_the_middle_of_a_frame_closes_too() -> None:
    async def main() -> None:
        async with open_channel() as (channel, runtime):
            waiting = asyncio.ensure_future(receive_closed(channel))
            await asyncio.sleep(0)
            await send(runtime, encode(protocol.RESULT, {"id": "a"}, b"body")[:-2])
            runtime.shutdown(socket.SHUT_WR)
            assert (await waiting).cause is None

    asyncio.run(main())


def test_frame_too_large_is_kept_as_the_cause() -> None:
    async def main() -> None:
        async with open_channel(max_body=10) as (channel, runtime):
            waiting = asyncio.ensure_future(receive_closed(channel))
            await asyncio.sleep(0)
            await send(runtime, PREFIX.pack(20, 20 * 1024 * 1024))  # announces a 20 MB result
            closed = await waiting
            assert isinstance(closed.cause, FrameTooLarge)
            assert (closed.cause.body_len, closed.cause.limit) == (20 * 1024 * 1024, 10)

    asyncio.run(main())


def test_close_fails_a_pending_receive() -> None:
    async def main() -> None:
        async with open_channel() as (channel, _runtime):
            waiting = asyncio.ensure_future(receive_closed(channel))
            await asyncio.sleep(0)
            channel.close()
            closed = await waiting
            assert closed.cause is None

    asyncio.run(main())
