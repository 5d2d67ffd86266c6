"""The runtime wire protocol: framed messages on one stream socket.

This module is pure (no I/O) and is imported both by the worker and, inside the
sandbox, by the Python runtime. The full specification, written for people who
implement a runtime in another language, is ``docs/runtime-protocol.md``; keep
the two in step.

A frame is::

    u32 big-endian  header length  (1 .. MAX_HEADER_BYTES)
    u32 big-endian  body length    (0 .. the decoder's max_body)
    header          UTF-8 JSON object with at least {"type": "<kind>"}
    body            opaque bytes (for invoke and result: the JSON document)

The event and the result travel as the body, untouched, so the worker never
re-encodes a payload on the hot path. The runtime side is hostile ground: the
decoder raises :class:`ProtocolError` on anything malformed, and the worker then
kills that instance.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

PREFIX = struct.Struct(">II")
MAX_HEADER_BYTES = 64 * 1024

# Message kinds. Worker -> runtime:
INIT = "init"  # {handler, function_name, function_version, memory_limit_in_mb, layers}
INVOKE = "invoke"  # {id, deadline_ms}; body = event JSON
# Runtime -> worker:
READY = "ready"  # {} : the handler was imported, the instance takes calls
INIT_ERROR = "init_error"  # {error_type, message, traceback}; the runtime then exits
RESULT = "result"  # {id}; body = result JSON
ERROR = "error"  # {id, error_type, message, traceback}: the handler raised

RUNTIME_KINDS = frozenset({READY, INIT_ERROR, RESULT, ERROR})
WORKER_KINDS = frozenset({INIT, INVOKE})


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
    header: dict[str, Any]
    body: bytes = b""

    @property
    def kind(self) -> str:
        return str(self.header["type"])


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
    """Incremental decoder: feed bytes as they arrive, get whole frames out.

    ``allowed`` restricts the kinds the peer may send; ``max_body`` bounds the
    memory a peer can make us hold for one frame.
    """

    max_body: int
    allowed: frozenset[str] | None = None
    _buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while True:
            frame = self._next()
            if frame is None:
                return frames
            frames.append(frame)

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._buffer)

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
        return Frame(header, body)
