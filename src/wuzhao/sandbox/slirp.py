"""The worker's side of an ``outbound`` instance's network: one slirp4netns process per instance.

slirp4netns (the Debian package of that name) is a user-space TCP/IP stack:
it creates ``tap0`` in the instance's network namespace, configures it
(``--configure``: address, MTU, default route) and turns the instance's
connections into ordinary sockets of the host. It runs outside the sandbox,
as root in its own mount namespace with every capability dropped and its own
seccomp filter (``--enable-sandbox --enable-seccomp``), and joins only the
instance's network namespace (``--netns-type=path``), never its user
namespace. It cannot open connections to the host's loopback
(``--disable-host-loopback``); everything else it must not reach is refused by
routes inside the instance (:mod:`wuzhao.sandbox.network`).

Its lifetime: :meth:`Slirp.start` execs it (no shell, empty environment, only
the ready and exit pipes passed), :meth:`Slirp.ready` waits for the byte it
writes on ``--ready-fd`` once the interface is configured, :meth:`Slirp.stop`
kills and reaps it. The worker holds the write end of its ``--exit-fd`` pipe:
if the worker dies without stopping it, the pipe closes and slirp4netns exits
by itself, so a crashed server leaves no slirp4netns behind either.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess

from wuzhao.errors import SandboxUnavailable
from wuzhao.sandbox.network import MTU, SLIRP_CIDR, TAP

OUTPUT_KEPT = 4096  # bytes of slirp4netns's output kept for an error message


class Slirp:
    """One running slirp4netns, serving one network namespace."""

    def __init__(self, process: subprocess.Popen[bytes], ready_fd: int, exit_fd: int, output_fd: int) -> None:
        self.process = process
        self._ready_fd = ready_fd
        self._exit_fd = exit_fd  # closing it tells slirp4netns to exit
        self._output_fd = output_fd
        self._pidfd = os.pidfd_open(process.pid)
        self._output = b""
        self._draining = False
        self._stopped: asyncio.Future[None] | None = None

    @classmethod
    def start(cls, binary: str, netns_path: str) -> Slirp:
        netns = _open_foreign_netns(netns_path)
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        exit_r, exit_w = os.pipe2(os.O_CLOEXEC)
        output_r, output_w = os.pipe2(os.O_CLOEXEC)
        argv = [
            binary,
            "--configure",
            f"--mtu={MTU}",
            f"--cidr={SLIRP_CIDR}",
            "--disable-host-loopback",
            "--enable-sandbox",
            "--enable-seccomp",
            f"--ready-fd={ready_w}",
            f"--exit-fd={exit_r}",
            "--netns-type=path",
            # The namespace we opened and checked, not the path: a path under
            # /proc/<pid> may still name the server's own namespace a moment
            # before that process unshares, and slirp would configure the host.
            f"/proc/self/fd/{netns}",
            TAP,
        ]
        try:
            process = subprocess.Popen(
                argv,
                env={},
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=output_w,
                stderr=output_w,
                pass_fds=(ready_w, exit_r, netns),
                start_new_session=True,  # the terminal's ^C is the worker's to handle
            )
        except BaseException:
            for fd in (ready_r, exit_w, output_r):
                os.close(fd)
            raise
        finally:
            for fd in (ready_w, exit_r, output_w, netns):
                os.close(fd)
        for fd in (ready_r, output_r):
            os.set_blocking(fd, False)
        return cls(process, ready_r, exit_w, output_r)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def ready(self) -> None:
        """Return once the interface is configured; SandboxUnavailable if slirp4netns exits first."""
        loop = asyncio.get_running_loop()
        loop.add_reader(self._output_fd, self._drain)
        self._draining = True
        readable: asyncio.Future[None] = loop.create_future()
        loop.add_reader(self._ready_fd, _settle, readable)
        try:
            await readable
        finally:
            loop.remove_reader(self._ready_fd)
        if os.read(self._ready_fd, 1) != b"1":
            self._drain()
            output = self._output.decode(errors="replace").strip()
            raise SandboxUnavailable(f"slirp4netns could not set up the network: {output or 'no output'}")

    def _drain(self) -> None:
        # Read whatever slirp4netns prints (a few lines at start), so that it
        # never blocks on a full pipe; keep the start of it for errors.
        try:
            while chunk := os.read(self._output_fd, 65536):
                if len(self._output) < OUTPUT_KEPT:
                    self._output += chunk[: OUTPUT_KEPT - len(self._output)]
        except BlockingIOError:
            return
        self._stop_draining()  # EOF: it exited

    def _stop_draining(self) -> None:
        if self._draining:
            asyncio.get_running_loop().remove_reader(self._output_fd)
            self._draining = False

    async def stop(self) -> None:
        """Kill and reap slirp4netns; idempotent."""
        if self._stopped is None:
            self._stopped = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopped)

    async def _stop(self) -> None:
        loop = asyncio.get_running_loop()
        self._stop_draining()
        os.close(self._exit_fd)
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            exited: asyncio.Future[None] = loop.create_future()
            loop.add_reader(self._pidfd, _settle, exited)
            try:
                await exited
            finally:
                loop.remove_reader(self._pidfd)
            self.process.wait()
        for fd in (self._pidfd, self._ready_fd, self._output_fd):
            os.close(fd)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _open_foreign_netns(path: str) -> int:
    """Open a network namespace that is not the server's own (never configure the host)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise SandboxUnavailable(f"could not set up the network: cannot open netns {path}: {exc}") from None
    own = os.stat("/proc/self/ns/net")
    found = os.fstat(fd)
    if (found.st_dev, found.st_ino) == (own.st_dev, own.st_ino):
        os.close(fd)
        raise SandboxUnavailable(
            f"could not set up the network: {path} is the server's own network namespace"
        )
    return fd
