"""The worker's end of the runtime channel of one instance.

An asyncio protocol, not a stream: frames are decoded straight from
``data_received`` and handed to the one waiting call, which keeps the warm path
free of extra tasks and copies. Everything the runtime sends is untrusted: a
malformed frame, or a frame nobody asked for, closes the channel, and the
instance is then killed by its owner.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from wuzhao.runtimes.protocol import RUNTIME_KINDS, Frame, FrameDecoder, ProtocolError, encode_parts


class ChannelClosed(Exception):
    """The runtime closed the channel or broke the protocol; ``cause`` says which."""

    def __init__(self, cause: BaseException | None) -> None:
        super().__init__(str(cause) if cause else "the runtime closed its channel")
        self.cause = cause


class RuntimeChannel(asyncio.Protocol):
    def __init__(self, max_body: int) -> None:
        self._decoder = FrameDecoder(max_body=max_body, allowed=RUNTIME_KINDS)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Frame] | None = None
        self._closed: ChannelClosed | None = None

    @classmethod
    async def connect(cls, sock: socket.socket, *, max_body: int) -> RuntimeChannel:
        loop = asyncio.get_running_loop()
        _, channel = await loop.create_unix_connection(lambda: cls(max_body), sock=sock)
        return channel

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's UnixTransport is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._decoder.feed(data)
        except ProtocolError as exc:
            self._fail(exc)
            return
        for frame in frames:
            waiter = self._waiter
            if waiter is None or waiter.done():
                self._fail(ProtocolError(f"unsolicited {frame.kind!r} frame"))
                return
            self._waiter = None
            waiter.set_result(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc)

    # used by the instance

    def send(self, kind: str, header: dict[str, Any], body: bytes = b"") -> None:
        if self._closed is not None:
            raise self._closed
        assert self._transport is not None
        self._transport.writelines(encode_parts(kind, header, body))

    def expect(self) -> asyncio.Future[Frame]:
        """A future for the next frame; call it *before* sending the request it answers.

        Registering first matters: the runtime may answer before the caller's
        next await, and a frame that finds nobody waiting is a protocol violation.
        Only one waiter at a time: one call per instance.
        """
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        if self._closed is not None:
            future.set_exception(self._closed)
            return future
        assert self._waiter is None or self._waiter.done(), "two receivers on one runtime channel"
        self._waiter = future
        return future

    @property
    def pending(self) -> int:
        """Bytes received that do not form a whole frame yet."""
        return self._decoder.pending

    @property
    def closed(self) -> ChannelClosed | None:
        return self._closed

    def close(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, cause: BaseException | None) -> None:
        if self._closed is None:
            self._closed = ChannelClosed(cause)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(self._closed)
        self._waiter = None
        if self._transport is not None:
            self._transport.abort()
