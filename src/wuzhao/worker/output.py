"""Capture of an instance's stdout and stderr, outside the sandbox, bounded per call.

The function writes into pipes whose read ends only the worker holds. Lines are
attributed to the call running at the time; the runtime flushes its output
before it answers, so draining the pipes when the answer arrives attributes every
line the call printed to that call. Each call keeps at most ``cap`` bytes; past
it, lines are read and dropped (so a function printing a gigabyte costs the
worker only a chunk buffer) and one marker line says how much was cut.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

CHUNK = 64 * 1024
MAX_LINE = 16 * 1024  # longer lines are split: a newline-free flood cannot grow a buffer

# (stream, invocation id, text) -> None
LineSink = Callable[[str, str | None, str], None]


class OutputCapture:
    def __init__(self, stdout_fd: int, stderr_fd: int, sink: LineSink, *, cap: int) -> None:
        self._fds = {stdout_fd: "stdout", stderr_fd: "stderr"}
        self._partial: dict[int, bytes] = {stdout_fd: b"", stderr_fd: b""}
        self._sink = sink
        self._cap = cap
        self._invocation: str | None = None
        self._kept = 0
        self._dropped = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for fd in self._fds:
            self._loop.add_reader(fd, self._read, fd)

    def begin(self, invocation_id: str | None) -> None:
        """Attribute what follows to this call, with a fresh budget."""
        self._invocation = invocation_id
        self._kept = 0
        self._dropped = 0

    def end(self) -> None:
        """Take everything the call wrote so far, then close its budget."""
        for fd in self._fds:
            self._read(fd)
            if self._partial[fd]:
                self._emit(fd, self._partial[fd])
                self._partial[fd] = b""
        if self._dropped:
            self._sink(
                "stderr",
                self._invocation,
                f"[wuzhao] output truncated: {self._dropped} bytes past the {self._cap}-byte limit dropped",
            )
            self._dropped = 0

    def close(self) -> None:
        if self._loop is not None:
            for fd in self._fds:
                self._loop.remove_reader(fd)
            self._loop = None

    def _read(self, fd: int) -> None:
        # Reads what is there now, in bounded chunks; never blocks (non-blocking fd).
        for _ in range(64):  # yield to the loop after 4 MB, a flood must not starve it
            try:
                data = os.read(fd, CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                if self._loop is not None:
                    self._loop.remove_reader(fd)
                return
            self._split(fd, data)

    def _split(self, fd: int, data: bytes) -> None:
        buffer = self._partial[fd] + data
        *lines, rest = buffer.split(b"\n")
        for line in lines:
            # Split whole lines too, so where a line is cut never depends on
            # how the pipe happened to chunk it.
            while len(line) > MAX_LINE:
                self._emit(fd, line[:MAX_LINE])
                line = line[MAX_LINE:]
            self._emit(fd, line)
        while len(rest) > MAX_LINE:
            self._emit(fd, rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        self._partial[fd] = rest

    def _emit(self, fd: int, line: bytes) -> None:
        size = len(line) + 1
        if self._dropped or self._kept + size > self._cap:  # no holes: once cut, cut to the end
            self._dropped += size
            return
        self._kept += size
        self._sink(self._fds[fd], self._invocation, line.decode("utf-8", "replace"))
