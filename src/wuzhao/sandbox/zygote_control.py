"""One zygote as the launcher sees it: the exec'd process and its control socket.

The launcher runs one or two (``wuzhao.sandbox.zygote_launcher``); each is a
``wuzhao.runtimes.python.zygote`` started by exec with an empty environment
and only its control socket, so the process every instance is forked from
holds no platform secret. :meth:`ZygoteControl.start` returns once it said
``hello``; a zygote that could not import the modules it was to preload says
``broken`` instead and :class:`PreloadFailed` is raised. Every later message
(``spawned``, ``failed``, ``exit``) is handed to ``on_message``, and EOF on
the socket (the zygote died, taking its instances with it) to ``on_lost``.
Everything is non-blocking: messages arrive through ``loop.add_reader``, so
this works under uvloop too.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from collections.abc import Callable
from typing import Any

from wuzhao.errors import SandboxUnavailable

START_TIMEOUT = 30.0  # the zygote imports its modules (and the ones it preloads) before saying hello


class PreloadFailed(SandboxUnavailable):
    """A module to preload could not be imported: no zygote of this launcher can start."""


class ZygoteControl:
    def __init__(
        self,
        argv: list[str],
        *,
        on_message: Callable[[ZygoteControl, dict[str, Any]], None],
        on_lost: Callable[[ZygoteControl], None],
    ) -> None:
        self._argv = argv  # without --control-fd, added by start
        self._on_message = on_message
        self._on_lost = on_lost
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: socket.socket | None = None
        self._hello: asyncio.Future[int] | None = None
        self._send_lock = asyncio.Lock()
        self.lost = False  # EOF seen, or closed
        self.keeps_shells = False  # said in its hello (it runs from the runtime's images)

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def start(self) -> None:
        """Exec the zygote and wait for its hello. Run it on the event loop's own thread: the
        zygote's parent-death signal fires when the *thread* that forked it ends, not the process."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            self._process = subprocess.Popen(
                [*self._argv, "--control-fd", str(theirs.fileno())],
                env={},
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=[theirs.fileno()],
                start_new_session=True,  # the terminal's ^C is the worker's to handle
            )
        ours.setblocking(False)
        self._socket = ours
        loop = asyncio.get_running_loop()
        self._hello = loop.create_future()
        loop.add_reader(ours.fileno(), self._on_readable)
        try:
            await asyncio.wait_for(asyncio.shield(self._hello), START_TIMEOUT)
        except PreloadFailed:
            raise
        except (TimeoutError, SandboxUnavailable):
            raise SandboxUnavailable(
                "the zygote did not start; its error is on the server's stderr"
            ) from None

    async def send(self, data: bytes, fds: list[int]) -> None:
        """One request with its descriptors (SCM_RIGHTS), waiting while the socket is full."""
        control = self._socket
        assert control is not None
        loop = asyncio.get_running_loop()
        async with self._send_lock:
            while True:
                try:
                    socket.send_fds(control, [data], fds)
                    return
                except BlockingIOError:
                    writable = loop.create_future()
                    loop.add_writer(control.fileno(), _settle, writable)
                    try:
                        await writable
                    finally:
                        loop.remove_writer(control.fileno())

    async def close(self) -> None:
        """Close the socket (EOF: the zygote kills what is left of its instances and exits), reap it."""
        if self._socket is not None:
            if not self.lost:
                asyncio.get_running_loop().remove_reader(self._socket.fileno())
                self.lost = True
            self._socket.close()
        if self._process is not None:
            await _reap(self._process)

    def _on_readable(self) -> None:
        assert self._socket is not None
        while True:
            try:
                data = self._socket.recv(65536)
            except BlockingIOError:
                return
            except ConnectionResetError:
                data = b""
            if not data:
                self._lose()
                return
            message = json.loads(data)
            assert self._hello is not None
            if message["op"] == "hello":
                self.keeps_shells = message.get("shells", False)
                self._hello.set_result(message["pid"])
            elif message["op"] == "broken":
                self._hello.set_exception(PreloadFailed(message["error"]))
            else:
                self._on_message(self, message)

    def _lose(self) -> None:
        self.lost = True
        assert self._socket is not None
        asyncio.get_running_loop().remove_reader(self._socket.fileno())
        if self._hello is not None and not self._hello.done():
            self._hello.set_exception(SandboxUnavailable("the zygote exited"))
        self._on_lost(self)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _reap(process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while process.poll() is None:
        if loop.time() > deadline:
            process.kill()
            await asyncio.to_thread(process.wait)
            return
        await asyncio.sleep(0.01)
