"""The worker's side of one zygote's shells: children prepared before they have a function.

A shell (``wuzhao.runtimes.python.zygote``) is forked on request, joins a
cgroup the pool made for it with no limit yet, enters its namespaces, builds
the part of the root no function decides (``wuzhao.sandbox.enter.prepare``)
and says ``ready``; then it waits. :meth:`ShellPool.take` hands a ready one
to ``launch``, which sets the instance's limits on its cgroup and names it
in the spawn request; the shell does the function's part and runs the
runtime. The fork, the cgroups, the namespaces and most of the mounts are
then off the cold start (``docs/performance.md``).

A shell is used once, for one instance, and nothing of it is shared: it is a
fork of the zygote, which never reads a function's request (a memfd only the
child reads), and its cgroup becomes that instance's. Its memory is charged
to that cgroup from its join on, so to the instance it becomes; only what the
fork itself allocated before (page tables, a few pages) is the zygote's.

The pool refills :data:`REFILL_DELAY` after each take, not at once, so that
forking and preparing the next shell does not take a core from the instance
just started. A shell that dies before it is ready counts as a failure; after
:data:`MAX_FAILURES` in a row the pool stops asking (the zygote forks every
instance, as with no pool). Everything here runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from dataclasses import dataclass

from wuzhao.sandbox.cgroups import Cgroup, CgroupTree
from wuzhao.sandbox.zygote_control import ZygoteControl

log = logging.getLogger(__name__)

REFILL_DELAY = 0.005
MAX_FAILURES = 3


@dataclass(eq=False)
class Shell:
    name: str  # its cgroup's name too; a dot keeps it apart from every instance id
    cgroup: Cgroup
    pid: int | None = None  # once ready


class ShellPool:
    def __init__(self, zygote: ZygoteControl, cgroups: CgroupTree, size: int) -> None:
        self._zygote = zygote
        self._cgroups = cgroups
        self._size = size
        self._shells: dict[str, Shell] = {}  # asked for or ready, until taken or lost
        self._failures = 0  # shells lost in a row before they were ready
        self._refill: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Future[None]] = set()
        self._closed = False

    @property
    def ready(self) -> list[int]:
        """The host pids of the shells ready to be taken."""
        return [shell.pid for shell in self._shells.values() if shell.pid is not None]

    def start(self) -> None:
        self._schedule(0.0)

    def take(self) -> Shell | None:
        """A ready shell, now the caller's (its cgroup with it); None when none is ready."""
        shell = next((s for s in self._shells.values() if s.pid is not None), None)
        if shell is not None:
            del self._shells[shell.name]
            self._schedule(REFILL_DELAY)
        return shell

    def on_ready(self, name: str, pid: int) -> None:
        shell = self._shells.get(name)
        if shell is not None:
            shell.pid = pid
            self._failures = 0

    def on_lost(self, name: str) -> None:
        """The zygote says a shell is gone before it was taken (it failed, or was killed)."""
        shell = self._shells.pop(name, None)
        if shell is None:
            return
        if shell.pid is None:
            self._failures += 1
            if self._failures == MAX_FAILURES:
                log.error("%d shells in a row failed to prepare: instances are forked directly", MAX_FAILURES)
        self._background(_discard(shell.cgroup))
        self._schedule(REFILL_DELAY)

    async def close(self) -> None:
        """Forget every shell (the caller stops the zygote, which kills them) and remove their cgroups."""
        self._closed = True
        if self._refill is not None:
            self._refill.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        shells, self._shells = list(self._shells.values()), {}
        await asyncio.gather(*(_discard(shell.cgroup) for shell in shells), return_exceptions=True)

    def _schedule(self, delay: float) -> None:
        if self._refill is None and not self._closed:
            self._refill = asyncio.get_running_loop().call_later(delay, self._fill)

    def _fill(self) -> None:
        self._refill = None
        missing = self._size - len(self._shells)
        if self._closed or self._zygote.lost or self._failures >= MAX_FAILURES:
            return
        for _ in range(missing):
            name = f"shell.{secrets.token_hex(6)}"
            try:
                cgroup = self._cgroups.make(name)
            except OSError:
                log.exception("cannot make a shell's cgroup")
                return
            self._shells[name] = Shell(name, cgroup)
            self._background(self._ask(name, cgroup))

    async def _ask(self, name: str, cgroup: Cgroup) -> None:
        message = {"op": "shell", "id": name, "cgroups": cgroup.tasks_files}
        try:
            await self._zygote.send(json.dumps(message).encode(), [])
        except OSError:  # the zygote is gone: its loss is handled where it is seen
            self._shells.pop(name, None)
            await _discard(cgroup)

    def _background(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _discard(cgroup: Cgroup, timeout: float = 10.0) -> None:
    """Kill what is left in a shell's cgroup and remove it (EBUSY for a moment after a death)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    with contextlib.suppress(OSError):
        while not cgroup.try_remove():
            if loop.time() > deadline:
                log.warning("cgroup %s still busy; the next sweep removes it", cgroup.dirs["memory"])
                return
            await asyncio.sleep(0.05)
