import asyncio
import contextlib
import fcntl
import json
import os
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from wuzhao.runtimes import memfd, protocol
from wuzhao.runtimes.protocol import (
    ANCILLARY_BYTES,
    MEMFD,
    MEMFD_THRESHOLD,
    PREFIX,
    WORKER_KINDS,
    FrameDecoder,
    FrameTooLarge,
    ProtocolError,
    encode,
    fds_message,
    received_fds,
)
from wuzhao.worker import channel as channel_module
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


def channel_fd(channel: RuntimeChannel) -> int:
    """The worker's end, which the channel closes when it fails."""
    return channel._fd


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


# Bodies in memfds: results from the runtime, events to it.


def open_fds() -> set[str]:
    """This process's descriptors as "number target" (the listing's own is gone by then)."""
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):
            fds.add(f"{name} {os.readlink(f'/proc/self/fd/{name}')}")
    return fds


def without(fds: set[str], fd: int) -> set[str]:
    return {entry for entry in fds if not entry.startswith(f"{fd} ")}


def sealed(data: bytes, seals: int = memfd.FROM_RUNTIME, size: int | None = None) -> int:
    fd = os.memfd_create("test", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, data)
    if size is not None:
        os.ftruncate(fd, size)
    if seals:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    return fd


async def send_with_fds(runtime: socket.socket, data: bytes, fds: list[int]) -> None:
    """What a runtime does: the frame's bytes, its descriptors with the first of them."""
    sent = runtime.sendmsg([data], fds_message(fds))
    await send(runtime, data[sent:])
    for fd in fds:
        os.close(fd)  # in flight, the message holds them


def result_frame(length: int, body: bytes = b"") -> bytes:
    return encode(protocol.RESULT, {"id": "a", MEMFD: length}, body)


def test_a_result_in_a_sealed_memfd_is_read_and_closed() -> None:
    body = json.dumps({"blob": "é" * 200_000}, ensure_ascii=False).encode()

    async def main() -> None:
        async with open_channel(max_body=1 << 20) as (channel, runtime):
            before = open_fds()
            waiting = channel.expect()
            await asyncio.sleep(0)
            await send_with_fds(runtime, result_frame(len(body)), [sealed(body)])
            frame = await asyncio.wait_for(waiting, 5)
            assert (frame.header["id"], frame.body, frame.fd) == ("a", body, None)
            assert channel.closed is None
            assert open_fds() == before

    asyncio.run(main())


def test_events_go_in_one_reused_memfd_released_when_calls_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(channel_module, "EVENT_MEMFD_KEEP_S", 0.2)
    small = b'{"n": 1}'
    big = json.dumps({"blob": "x" * MEMFD_THRESHOLD}).encode()
    decoder = FrameDecoder(max_body=1 << 30, allowed=WORKER_KINDS)

    async def receive(runtime: socket.socket) -> protocol.Frame:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(5):
            while True:
                await loop.sock_recv(runtime, 0)  # wait until readable
                data, ancillary, _, _ = runtime.recvmsg(1 << 20, ANCILLARY_BYTES, socket.MSG_CMSG_CLOEXEC)
                frames = decoder.feed(data, received_fds(ancillary))
                if frames:
                    return frames[0]

    async def call(channel: RuntimeChannel, runtime: socket.socket, event: bytes) -> protocol.Frame:
        answer = channel.expect()
        channel.send(protocol.INVOKE, {"id": "a", "deadline_ms": 0}, event)
        frame = await receive(runtime)
        await send(runtime, encode(protocol.RESULT, {"id": "a"}, b"1"))
        await asyncio.wait_for(answer, 5)
        return frame

    async def main() -> None:
        async with open_channel() as (channel, runtime):
            before = open_fds()
            inline = await call(channel, runtime, small)
            assert (inline.fd, inline.body) == (None, small)
            first = await call(channel, runtime, big)
            assert first.fd is not None and first.memfd_length == len(big)
            assert os.readlink(f"/proc/self/fd/{first.fd}") == "/memfd:wuzhao-event (deleted)"
            with memfd.mapped(os.dup(first.fd), len(big)) as view:
                assert bytes(view) == big
            second = await call(channel, runtime, big[:-3] + b'y"}')
            assert second.fd is not None
            assert os.fstat(second.fd).st_ino == os.fstat(first.fd).st_ino  # the same memfd, rewritten
            with memfd.mapped(os.dup(second.fd), len(big)) as view:
                assert bytes(view).endswith(b'y"}')
            kept = first.fd  # a runtime that keeps the descriptor...
            os.close(second.fd)
            assert os.fstat(kept).st_size >= len(big)
            await asyncio.sleep(0.5)
            assert os.fstat(kept).st_size == 0  # ...keeps an empty file, not the server's memory
            os.close(kept)
            assert open_fds() == before  # and the worker closed its own

    asyncio.run(main())


def test_the_event_memfd_is_released_when_the_channel_closes() -> None:
    big = b"1" * MEMFD_THRESHOLD

    async def main() -> None:
        async with open_channel() as (channel, runtime):
            before = open_fds()
            channel.send(protocol.INVOKE, {"id": "a", "deadline_ms": 0}, big)
            await asyncio.sleep(0.05)
            _, ancillary, _, _ = runtime.recvmsg(1 << 16, ANCILLARY_BYTES, socket.MSG_CMSG_CLOEXEC)
            (kept,) = received_fds(ancillary)
            channel.close()
            assert os.fstat(kept).st_size == 0
            os.close(kept)
            assert open_fds() == without(before, channel_fd(channel))

    asyncio.run(main())


def test_a_new_event_memfd_when_the_runtime_shrank_the_old_one() -> None:
    big = b"1" * MEMFD_THRESHOLD

    async def main() -> None:
        async with open_channel() as (channel, runtime):
            channel.send(protocol.INVOKE, {"id": "a", "deadline_ms": 0}, big)
            await asyncio.sleep(0.05)
            _, ancillary, _, _ = runtime.recvmsg(1 << 16, ANCILLARY_BYTES, socket.MSG_CMSG_CLOEXEC)
            (first,) = received_fds(ancillary)
            os.ftruncate(first, 1)  # hostile, or clumsy: its own next event would break
            channel.send(protocol.INVOKE, {"id": "b", "deadline_ms": 0}, big)
            await asyncio.sleep(0.05)
            _, ancillary, _, _ = runtime.recvmsg(1 << 16, ANCILLARY_BYTES, socket.MSG_CMSG_CLOEXEC)
            (second,) = received_fds(ancillary)
            assert os.fstat(second).st_ino != os.fstat(first).st_ino
            assert os.pread(second, len(big), 0) == big
            assert channel.closed is None
            os.close(first)
            os.close(second)

    asyncio.run(main())


SHRINK_AND_GROW = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW  # not write: its bytes may change


def read_end_of_a_pipe() -> int:
    read_end, write_end = os.pipe()
    os.close(write_end)
    return read_end


# What a hostile runtime may send along: name -> (frame bytes, descriptors made by a factory).
BAD_DESCRIPTORS: dict[str, tuple[bytes, Callable[[], list[int]]]] = {
    "announced-but-missing": (result_frame(4), list),
    "not-announced": (encode(protocol.RESULT, {"id": "a"}, b'"ok"'), lambda: [sealed(b'"ok"')]),
    "two-descriptors": (result_frame(4), lambda: [sealed(b'"ok"'), sealed(b'"ok"')]),
    "many-descriptors": (result_frame(4), lambda: [sealed(b'"ok"') for _ in range(8)]),
    "a-pipe": (result_frame(4), lambda: [read_end_of_a_pipe()]),
    "a-socket": (result_frame(4), lambda: [socket.socket().detach()]),
    "unsealed-memfd": (result_frame(4), lambda: [sealed(b'"ok"', seals=0)]),
    "writable-memfd": (result_frame(4), lambda: [sealed(b'"ok"', seals=SHRINK_AND_GROW)]),
    "shorter-than-announced": (result_frame(100), lambda: [sealed(b'"ok"')]),
    "huge-sparse-memfd": (result_frame(4), lambda: [sealed(b"", size=1 << 40)]),
    "inline-body-too": (result_frame(4, b'"ok"'), lambda: [sealed(b'"ok"')]),
}


@pytest.mark.parametrize("name", list(BAD_DESCRIPTORS))
def test_a_bad_descriptor_closes_the_channel_and_nothing_stays_open(name: str) -> None:
    data, make = BAD_DESCRIPTORS[name]

    async def main() -> None:
        async with open_channel(max_body=1 << 20) as (channel, runtime):
            before = open_fds()
            waiting = asyncio.ensure_future(receive_closed(channel))
            await asyncio.sleep(0)
            await send_with_fds(runtime, data, make())
            closed = await waiting
            assert type(closed.cause) is ProtocolError
            assert await peer_sees_eof(runtime)
            assert open_fds() == without(before, channel_fd(channel))

    asyncio.run(main())


def test_a_memfd_announced_over_the_cap_is_frame_too_large_unread() -> None:
    async def main() -> None:
        async with open_channel(max_body=1024) as (channel, runtime):
            before = open_fds()
            waiting = asyncio.ensure_future(receive_closed(channel))
            await asyncio.sleep(0)
            await send_with_fds(runtime, result_frame(1 << 30), [sealed(b"", size=1 << 30)])
            closed = await waiting
            assert isinstance(closed.cause, FrameTooLarge)
            assert (closed.cause.body_len, closed.cause.limit) == (1 << 30, 1024)
            assert open_fds() == without(before, channel_fd(channel))

    asyncio.run(main())


def test_descriptors_with_an_unsolicited_frame_are_closed() -> None:
    async def main() -> None:
        async with open_channel() as (channel, runtime):
            before = open_fds()
            await send_with_fds(runtime, result_frame(4), [sealed(b'"ok"')])  # nobody asked
            async with asyncio.timeout(5):
                while channel.closed is None:
                    await asyncio.sleep(0.001)
            closed = await receive_closed(channel)
            assert "unsolicited" in str(closed.cause)
            assert open_fds() == without(before, channel_fd(channel))

    asyncio.run(main())
