"""The runtime wire protocol: framed messages on one stream socket.

This module is pure (no I/O but closing the descriptors a peer sent) and is
imported both by the worker and, inside the sandbox, by the Python runtime. The
full specification, written for people who implement a runtime in another
language, is ``docs/runtime-protocol.md``; keep the two in step.

A frame is::

    u32 big-endian  header length  (1 .. MAX_HEADER_BYTES)
    u32 big-endian  body length    (0 .. the decoder's max_body)
    header          UTF-8 JSON object with at least {"type": "<kind>"}
    body            opaque bytes (for invoke and result: the JSON document)

The event and the result travel as the body, untouched, so the worker never
re-encodes a payload on the hot path. While an ``invoke`` is in flight the
runtime may send ``call`` frames (a request of the function to the platform,
one at a time) and waits for the ``reply`` with the same ``seq``. A body of :data:`MEMFD_THRESHOLD` bytes
or more travels instead in a memfd passed with the frame (``SCM_RIGHTS``): the
header says ``"memfd": <body length>``, the prefix's body length is 0, and
exactly one descriptor arrives with the frame's bytes. Copying megabytes through
the socket costs a round trip per socket buffer (~200 KB) between the two
processes; a memfd is one write and one read (``wuzhao.runtimes.memfd`` says
who makes it, how it is sealed and what the reader checks).

The runtime side is hostile ground: the decoder raises :class:`ProtocolError`
on anything malformed (descriptors included), and the worker then kills that
instance.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import socket
import stat
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

PREFIX = struct.Struct(">II")
MAX_HEADER_BYTES = 64 * 1024
# Header field of a frame whose body is in the descriptor sent with it: the body's length.
MEMFD = "memfd"
# Bodies this large or larger are sent in a memfd; smaller ones inline. The
# sender's choice: a receiver takes either form at any size. Measured from the
# worker's channel to the Python runtime and back (an event of that size, a
# tiny result): inline is ~40 us faster at 64 KB, the memfd ~100 us faster at
# 128 KB and ~200 us at 1 MB, where the socket needs a round trip per buffer.
MEMFD_THRESHOLD = 128 * 1024
# What one frame can carry; more in one read is a violation (see FrameDecoder).
MAX_FDS_PER_FRAME = 1
# recvmsg's room for them: more sets MSG_CTRUNC, and the kernel closes the rest.
ANCILLARY_BYTES = socket.CMSG_SPACE(MAX_FDS_PER_FRAME * 4)

# Message kinds. Worker -> runtime:
INIT = "init"  # {handler, function_name, function_version, memory_limit_in_mb, layers, max_call_bytes}
INVOKE = "invoke"  # {id, deadline_ms}; body = event JSON
REPLY = "reply"  # {id, seq, ok, <result fields> | error: {code, message}}; body = the op's result
# Runtime -> worker:
READY = "ready"  # {} : the handler was imported, the instance takes calls
INIT_ERROR = "init_error"  # {error_type, message, traceback}; the runtime then exits
RESULT = "result"  # {id}; body = result JSON
ERROR = "error"  # {id, error_type, message, traceback}: the handler raised
CALL = "call"  # {id, seq, op, <arguments>}; body = the op's payload: a request to the platform

RUNTIME_KINDS = frozenset({READY, INIT_ERROR, RESULT, ERROR, CALL})
WORKER_KINDS = frozenset({INIT, INVOKE, REPLY})

# The operations of a CALL (the in-function API, ``wuzhao.fn``); arguments and results are in
# docs/runtime-protocol.md. An op name the worker does not know is answered with an error, not
# a violation, so a runtime can try an operation a newer worker has.
PUT_OBJECT = "put_object"  # {bucket, key, content_type?, metadata?} + the bytes -> {object}
GET_OBJECT = "get_object"  # {bucket, key} -> {object} + the bytes
DELETE_OBJECT = "delete_object"  # {bucket, key} -> {}
LIST_OBJECTS = "list_objects"  # {bucket, prefix?, after?, limit?} -> JSON {objects, next}
PUBLISH = "publish"  # {topic, attributes?} + the message as JSON -> {message_id, deliveries}
INVOKE_FUNCTION = "invoke"  # {function, qualifier?, async} + the event -> result / {invocation_id}
OPS = frozenset({PUT_OBJECT, GET_OBJECT, DELETE_OBJECT, LIST_OBJECTS, PUBLISH, INVOKE_FUNCTION})
MAX_OP_LENGTH = 64


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame of this protocol."""


class FrameTooLarge(ProtocolError):
    """A frame announced a body over the decoder's limit (e.g. a 20 MB result)."""

    def __init__(self, body_len: int, limit: int) -> None:
        super().__init__(f"body length {body_len} over the limit of {limit}")
        self.body_len = body_len
        self.limit = limit


@dataclass(frozen=True, slots=True)
class Frame:
    """One message. ``fd``: the descriptor holding the body (then ``body`` is
    empty and the header's ``memfd`` says its length); the receiver owns it and
    must read and close it (``wuzhao.runtimes.memfd``: ``take``, ``mapped``)."""

    header: dict[str, Any]
    body: bytes = b""
    fd: int | None = None

    @property
    def kind(self) -> str:
        return str(self.header["type"])

    @property
    def memfd_length(self) -> int:
        """The length of the body in ``fd`` (0 when the body is inline)."""
        return int(self.header.get(MEMFD, 0))


def encode(kind: str, header: dict[str, Any] | None = None, body: bytes = b"") -> bytes:
    head = dict(header or ())
    head["type"] = kind
    raw = json.dumps(head, separators=(",", ":")).encode()
    return PREFIX.pack(len(raw), len(body)) + raw + body


def encode_parts(kind: str, header: dict[str, Any], body: bytes) -> list[bytes]:
    """Like :func:`encode` but without joining a large body into a new buffer."""
    head = dict(header)
    head["type"] = kind
    raw = json.dumps(head, separators=(",", ":")).encode()
    return [PREFIX.pack(len(raw), len(body)), raw, body]


@dataclass
class FrameDecoder:
    """Incremental decoder: feed bytes (and the descriptors that came with them)
    as they arrive, get whole frames out.

    ``allowed`` restricts the kinds the peer may send; ``max_body`` bounds the
    memory a peer can make us hold for one frame, inline or in a memfd.

    Descriptors: one arrives with the first bytes of the frame that announces
    it (``"memfd"`` in its header), so by the time that frame is whole it is
    here. Each announcing frame takes the oldest descriptor held. A frame
    announcing one that did not arrive, a descriptor left over once the bytes
    decode to whole frames, or more descriptors than the partial frame still
    pending could take, is a :class:`ProtocolError`. On any error the decoder
    closes every descriptor it holds, and those of the frames it was about to
    return; :meth:`close` closes what it holds when the channel ends.
    """

    max_body: int
    allowed: frozenset[str] | None = None
    _buffer: bytearray = field(default_factory=bytearray)
    _fds: list[int] = field(default_factory=list)

    def feed(self, data: bytes, fds: Sequence[int] = ()) -> list[Frame]:
        self._buffer += data
        if fds:
            self._fds.extend(fds)
        frames: list[Frame] = []
        try:
            while (frame := self._next()) is not None:
                frames.append(frame)
            if self._fds and len(self._fds) > (MAX_FDS_PER_FRAME if self._buffer else 0):
                raise ProtocolError(f"{len(self._fds)} descriptor(s) that no frame announced")
        except ProtocolError:
            _close_all([f.fd for f in frames if f.fd is not None])
            self.close()
            raise
        return frames

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._buffer)

    def close(self) -> None:
        """Close the descriptors held for frames that never completed."""
        fds, self._fds = self._fds, []
        _close_all(fds)

    def _next(self) -> Frame | None:
        buf = self._buffer
        if len(buf) < PREFIX.size:
            return None
        header_len, body_len = PREFIX.unpack_from(buf)
        if not 0 < header_len <= MAX_HEADER_BYTES:
            raise ProtocolError(f"header length {header_len} out of range")
        if body_len > self.max_body:
            raise FrameTooLarge(body_len, self.max_body)
        end = PREFIX.size + header_len + body_len
        if len(buf) < end:
            return None
        raw_header = bytes(buf[PREFIX.size : PREFIX.size + header_len])
        body = bytes(buf[PREFIX.size + header_len : end])
        del buf[:end]
        try:
            header = json.loads(raw_header.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ProtocolError(f"header is not UTF-8 JSON: {exc}") from None
        if not isinstance(header, dict) or not isinstance(header.get("type"), str):
            raise ProtocolError("header is not an object with a string 'type'")
        if self.allowed is not None and header["type"] not in self.allowed:
            raise ProtocolError(f"unexpected message type {header['type']!r}")
        if MEMFD not in header:
            if self._fds and not buf:
                raise ProtocolError("a descriptor came with a frame that announced none")
            return Frame(header, body)
        length = header[MEMFD]
        if type(length) is not int or length < 0:
            raise ProtocolError(f"'{MEMFD}' is not a length: {length!r}")
        if body_len:
            raise ProtocolError(f"a frame with '{MEMFD}' has an inline body too")
        if length > self.max_body:
            raise FrameTooLarge(length, self.max_body)
        if not self._fds:
            raise ProtocolError("a frame announced a descriptor that did not arrive")
        return Frame(header, b"", self._fds.pop(0))


def check_call(header: dict[str, Any], invocation_id: str, seq: int) -> str:
    """The op of a CALL frame, if the frame itself is sound; else :class:`ProtocolError`.

    Sound: it belongs to the invocation in flight (``id``) and is the next of its calls
    (``seq``, 1 for the first and one more for each after it). Whether the op is known and its
    arguments are right is the worker's to answer, not a violation.
    """
    if header.get("id") != invocation_id:
        raise ProtocolError(f"a call for another invocation ({str(header.get('id'))[:64]!r})")
    got = header.get("seq")
    if type(got) is not int or got != seq:
        raise ProtocolError(f"a call numbered {str(got)[:32]!r} where {seq} was next")
    op = header.get("op")
    if not isinstance(op, str) or not 0 < len(op) <= MAX_OP_LENGTH:
        raise ProtocolError("a call without an 'op' string")
    return op


def received_fds(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    """The descriptors in what ``recvmsg`` returned as ancillary data."""
    fds = array.array("i")
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    return fds.tolist()


def fds_message(fds: Sequence[int]) -> list[tuple[int, int, array.array[int]]]:
    """The ancillary data that sends ``fds`` with ``sendmsg`` (none for no descriptor)."""
    return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []


def discard(fd: int) -> None:
    """Close a descriptor a peer sent, whatever it is, without waiting.

    ``close`` of the last reference to a socket with ``SO_LINGER`` set blocks
    until its unsent data is out: a hostile peer could stall the worker's event
    loop with one. Lingering is switched off first.
    """
    with contextlib.suppress(OSError):
        if stat.S_ISSOCK(os.fstat(fd).st_mode):
            sock = socket.socket(fileno=fd)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _NO_LINGER)
            finally:
                sock.detach()
    with contextlib.suppress(OSError):
        os.close(fd)


_NO_LINGER = struct.pack("ii", 0, 0)


def _close_all(fds: Iterable[int]) -> None:
    for fd in fds:
        discard(fd)
