"""The worker's end of the runtime channel of one instance.

Not an asyncio transport: a transport reads with ``recv``, and the kernel
drops (closes) descriptors that arrive with bytes read that way, while large
bodies come back as memfds passed with their frame (``runtimes.protocol``).
So the channel watches the socket itself (``add_reader``), reads with
``recvmsg`` and writes with ``sendmsg``; frames are decoded straight from the
read callback and handed to the one waiting call, which keeps the warm path
free of extra tasks and copies.

Everything the runtime sends is untrusted: a malformed frame, a frame nobody
asked for, or a descriptor that is not the sealed memfd of the frame that
announced it closes the channel, and the instance is then killed by its owner.
Every descriptor received is closed before the callback returns (a memfd once
read, anything else unread). Events travel in one memfd per instance, reused
while calls keep coming and truncated (so that a descriptor the runtime kept
holds nothing) once none came for ``EVENT_MEMFD_KEEP_S``, or the channel ends.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
from typing import Any

from wuzhao.runtimes import memfd
from wuzhao.runtimes.protocol import (
    ANCILLARY_BYTES,
    MEMFD,
    MEMFD_THRESHOLD,
    RUNTIME_KINDS,
    Frame,
    FrameDecoder,
    ProtocolError,
    discard,
    encode,
    fds_message,
    received_fds,
)

log = logging.getLogger(__name__)

RECV_BYTES = 1 << 16
# How long the memfd of an instance's events outlives its last call: calls that
# follow write into its pages instead of allocating new ones (~2 ms for 5 MB);
# after it, an idle instance costs the server no event memory.
EVENT_MEMFD_KEEP_S = 1.0
# Its capacity is the event's length rounded up to this: similar events fit.
EVENT_MEMFD_STEP = 1 << 20
_MSG_CMSG_CLOEXEC = socket.MSG_CMSG_CLOEXEC
_MSG_CTRUNC = socket.MSG_CTRUNC
_MSG_NOSIGNAL = socket.MSG_NOSIGNAL


class ChannelClosed(Exception):
    """The runtime closed the channel or broke the protocol; ``cause`` says which."""

    def __init__(self, cause: BaseException | None) -> None:
        super().__init__(str(cause) if cause else "the runtime closed its channel")
        self.cause = cause


class RuntimeChannel:
    def __init__(self, sock: socket.socket, max_body: int) -> None:
        self._sock = sock
        self._fd = sock.fileno()
        self._loop = asyncio.get_running_loop()
        self._decoder = FrameDecoder(max_body=max_body, allowed=RUNTIME_KINDS)
        self._waiter: asyncio.Future[Frame] | None = None
        self._closed: ChannelClosed | None = None
        # Bytes not yet written, each chunk with the descriptors to send with its first byte.
        self._out: collections.deque[tuple[bytes, list[int]]] = collections.deque()
        self._event_fd: int | None = None  # see memfd.reserve
        self._event_capacity = 0
        self._event_release: asyncio.TimerHandle | None = None
        sock.setblocking(False)
        self._loop.add_reader(self._fd, self._readable)

    @classmethod
    async def connect(cls, sock: socket.socket, *, max_body: int) -> RuntimeChannel:
        return cls(sock, max_body)

    # reading

    def _readable(self) -> None:
        try:
            data, ancillary, flags, _ = self._sock.recvmsg(RECV_BYTES, ANCILLARY_BYTES, _MSG_CMSG_CLOEXEC)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(exc)
            return
        fds = received_fds(ancillary) if ancillary else ()
        if not data or flags & _MSG_CTRUNC:
            _discard_all(fds)
            if data:
                self._fail(ProtocolError("more descriptors in one read than one frame carries"))
            else:
                self._fail(None)
            return
        try:
            frames = self._decoder.feed(data, fds)
        except ProtocolError as exc:
            self._fail(exc)
            return
        for i, frame in enumerate(frames):
            waiter = self._waiter
            if waiter is None or waiter.done():
                _discard_all(f.fd for f in frames[i:] if f.fd is not None)
                self._fail(ProtocolError(f"unsolicited {frame.kind!r} frame"))
                return
            if frame.fd is not None:
                try:
                    body = memfd.take(frame.fd, frame.memfd_length)
                except ProtocolError as exc:
                    _discard_all(f.fd for f in frames[i + 1 :] if f.fd is not None)
                    self._fail(exc)
                    return
                frame = Frame(frame.header, body)
            self._waiter = None
            waiter.set_result(frame)
            if self._event_fd is not None and self._event_release is None:
                self._event_release = self._loop.call_later(EVENT_MEMFD_KEEP_S, self._release_event_memfd)

    # writing

    def send(self, kind: str, header: dict[str, Any], body: bytes = b"") -> None:
        """Queue one frame; a body of ``MEMFD_THRESHOLD`` bytes or more goes in a memfd."""
        if self._closed is not None:
            raise self._closed
        if len(body) >= MEMFD_THRESHOLD:
            fd = self._event_memfd(body)
            if fd is not None:
                self._write(encode(kind, {**header, MEMFD: len(body)}), [fd])
                return
        self._write(encode(kind, header, body), [])

    def _event_memfd(self, body: bytes) -> int | None:
        """The instance's event memfd, holding ``body``; None if there is none (then: inline)."""
        if self._event_release is not None:
            self._event_release.cancel()
            self._event_release = None
        for _ in range(2):
            if self._event_fd is None or self._event_capacity < len(body):
                self._release_event_memfd()
                capacity = -(-len(body) // EVENT_MEMFD_STEP) * EVENT_MEMFD_STEP
                try:
                    self._event_fd = memfd.reserve(capacity, "wuzhao-event")
                except OSError as exc:  # out of descriptors or memory: the socket still works
                    log.warning("sending a %d-byte event inline: no memfd (%s)", len(body), exc)
                    return None
                self._event_capacity = capacity
            try:
                memfd.fill(self._event_fd, body)
                return self._event_fd
            except OSError:  # the runtime shrank it (its own event breaks): a new one
                self._release_event_memfd()
        return None

    def _release_event_memfd(self) -> None:
        self._event_release = None
        fd, self._event_fd = self._event_fd, None
        if fd is not None:
            memfd.revoke(fd)

    def _write(self, data: bytes, fds: list[int]) -> None:
        if self._out:
            self._out.append((data, fds))
            return
        rest = self._sendmsg(data, fds)
        if rest is not None:
            self._out.append(rest)
            self._loop.add_writer(self._fd, self._writable)

    def _writable(self) -> None:
        while self._out:
            data, fds = self._out.popleft()
            rest = self._sendmsg(data, fds)
            if rest is not None:
                self._out.appendleft(rest)
                return
        if self._closed is None:  # else _fail removed it already
            self._loop.remove_writer(self._fd)

    def _sendmsg(self, data: bytes, fds: list[int]) -> tuple[bytes, list[int]] | None:
        """Send what the socket takes now; what is left (None when nothing)."""
        try:
            if fds:
                sent = self._sock.sendmsg([data], fds_message(fds), _MSG_NOSIGNAL)
            else:
                sent = self._sock.send(data, _MSG_NOSIGNAL)
        except (BlockingIOError, InterruptedError):
            return data, fds
        except OSError as exc:
            self._fail(exc)
            return None
        # The descriptors went with the first byte: the rest goes without.
        return (data[sent:], []) if sent < len(data) else None

    # used by the instance

    def expect(self) -> asyncio.Future[Frame]:
        """A future for the next frame; call it *before* sending the request it answers.

        Registering first matters: the runtime may answer before the caller's
        next await, and a frame that finds nobody waiting is a protocol violation.
        Only one waiter at a time: one call per instance.
        """
        future: asyncio.Future[Frame] = self._loop.create_future()
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
        self._fail(None)

    def _fail(self, cause: BaseException | None) -> None:
        if self._closed is None:
            self._closed = ChannelClosed(cause)
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
            self._out.clear()
            self._decoder.close()
            if self._event_release is not None:
                self._event_release.cancel()
            self._release_event_memfd()
            self._sock.close()  # the runtime sees end of file
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(self._closed)
        self._waiter = None


def _discard_all(fds: Any) -> None:
    for fd in fds:
        discard(fd)
