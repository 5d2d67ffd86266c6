"""Per-instance cgroup v1 groups: memory, cpu weight, pids, freezer.

Layout: ``<root>/<controller>/<prefix>/<instance>`` where the prefix is
``wuzhao/<server-id>``, so several servers on one host (tests run several)
never touch each other's groups. The groups hang off the top of each
hierarchy rather than the server's own cgroup so that a restarted server finds
(and sweeps) the leftovers of its crashed predecessor at the same place.

The worker creates and removes groups; the forked child joins them itself (see
``wuzhao.sandbox.enter``) before it can fork anything. A shell (a child the
zygote prepares before it has a function) joins a group made with no limit
(:meth:`CgroupTree.make`); the worker sets the limits (:meth:`Cgroup.limit`)
when it gives that shell a function, before the shell goes on. Such a group
keeps the shell's name, ``shell.<hex>``, as the instance's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CFS_PERIOD_US = 100_000  # the period a hard CPU quota is measured over
CONTROLLERS = ("memory", "cpu", "pids", "freezer")


def _write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Cgroup:
    """One group, present in every controller of ``CONTROLLERS``."""

    dirs: dict[str, Path]  # controller -> directory

    @property
    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files a process writes its pid to, to join."""
        return [str(d / "cgroup.procs") for d in self.dirs.values()]

    @property
    def tasks_files(self) -> list[str]:
        """The ``tasks`` files a single-threaded process writes 0 to, to join (``enter.join_cgroups``).

        ``cgroup.procs`` moves a whole thread group, under a lock whose writer
        first waits for an RCU grace period whenever no other move came lately
        (5-20 ms on a small VM, holding the cgroup mutex meanwhile); ``tasks``
        moves one thread without it. A process with one thread is moved whole.
        """
        return [str(d / "tasks") for d in self.dirs.values()]

    def pids(self) -> list[int]:
        """Host pids of the processes in the group (none once it is removed)."""
        try:
            return [int(pid) for pid in (self.dirs["pids"] / "cgroup.procs").read_text().split()]
        except FileNotFoundError:
            return []

    def kill_all(self) -> None:
        """SIGKILL every process now in the group.

        A process that forks between the read and the kill escapes this pass, so
        callers that need an empty group repeat it (``remove`` does).
        """
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def oom_kills(self) -> int:
        """How many processes the kernel OOM-killed for exceeding the memory limit."""
        text = (self.dirs["memory"] / "memory.oom_control").read_text()
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def limit(
        self, *, memory_mb: int, cpu_shares: int, pids_max: int, cpu_quota_us: int | None = None
    ) -> None:
        """Set an instance's limits on a group that has none yet."""
        memory = self.dirs["memory"]
        limit = str(memory_mb * 1024 * 1024)
        _write(memory / "memory.limit_in_bytes", limit)
        # With swap on, the limit alone lets a process swap instead of being
        # OOM-killed; memory+swap must then be capped too (after the limit).
        memsw = memory / "memory.memsw.limit_in_bytes"
        if memsw.exists():
            _write(memsw, limit)
        _write(self.dirs["cpu"] / "cpu.shares", str(cpu_shares))
        if cpu_quota_us is not None:
            _write(self.dirs["cpu"] / "cpu.cfs_period_us", str(CFS_PERIOD_US))
            _write(self.dirs["cpu"] / "cpu.cfs_quota_us", str(cpu_quota_us))
        _write(self.dirs["pids"] / "pids.max", str(pids_max))

    def freeze(self) -> None:
        _write(self.dirs["freezer"] / "freezer.state", "FROZEN")

    def thaw(self) -> None:
        _write(self.dirs["freezer"] / "freezer.state", "THAWED")

    def freezer_state(self) -> str:
        return (self.dirs["freezer"] / "freezer.state").read_text().strip()

    def try_remove(self) -> bool:
        """One attempt to remove the group; True once it is gone everywhere.

        rmdir fails with EBUSY while a process is still in the group, and for
        about a second after an OOM kill: the caller retries after a pause.
        """
        self.kill_all()
        # A frozen process keeps its SIGKILL pending until thawed (cgroup v1): the
        # idle instances of a server killed with -9 stay frozen, and their group
        # would stay busy forever. Killed first, they die as soon as they thaw.
        with contextlib.suppress(OSError):
            self.thaw()
        gone = True
        for path in self.dirs.values():
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                gone = False
        return gone

    def remove(self, timeout: float = 5.0) -> None:
        """Blocking removal with retries (for sweeps, not for the event loop)."""
        deadline = time.monotonic() + timeout
        while not self.try_remove():
            if time.monotonic() > deadline:
                raise TimeoutError(f"cgroup {self.dirs['memory']} still busy after {timeout}s")
            time.sleep(0.05)


@dataclass(frozen=True)
class CgroupTree:
    """All the groups of one server: ``<root>/<controller>/<prefix>``."""

    prefix: str  # "wuzhao/<server-id>"
    root: Path = CGROUP_ROOT

    def _base(self, controller: str) -> Path:
        return self.root / controller / self.prefix

    def group(self, name: str) -> Cgroup:
        return Cgroup({c: self._base(c) / name for c in CONTROLLERS})

    def create(
        self, name: str, *, memory_mb: int, cpu_shares: int, pids_max: int, cpu_quota_us: int | None = None
    ) -> Cgroup:
        group = self.make(name)
        group.limit(memory_mb=memory_mb, cpu_shares=cpu_shares, pids_max=pids_max, cpu_quota_us=cpu_quota_us)
        return group

    def make(self, name: str) -> Cgroup:
        """A group with no limit yet (a shell's, until :meth:`Cgroup.limit` makes it an instance's)."""
        group = self.group(name)
        for path in group.dirs.values():
            path.mkdir(parents=True)
        return group

    def create_prefix(self) -> None:
        for controller in CONTROLLERS:
            self._base(controller).mkdir(parents=True, exist_ok=True)

    def leftovers(self) -> list[Cgroup]:
        names: set[str] = set()
        for controller in CONTROLLERS:
            base = self._base(controller)
            if base.is_dir():
                names.update(p.name for p in base.iterdir() if p.is_dir())
        return [self.group(name) for name in sorted(names)]

    def sweep(self, timeout: float = 5.0) -> None:
        """Kill and remove every group under the prefix, then the prefix itself.

        Used at start (leftovers of a crashed run) and at close. The shared
        ``wuzhao`` parent goes too once no other server has a prefix in it (a
        server creating its prefix meanwhile recreates it: ``mkdir(parents=True)``
        retries a parent that vanished).
        """
        for group in self.leftovers():
            group.remove(timeout)
        for controller in CONTROLLERS:
            base = self._base(controller)
            with contextlib.suppress(FileNotFoundError):
                base.rmdir()
            with contextlib.suppress(OSError):  # not empty: another server's prefix
                base.parent.rmdir()

    def controllers_missing(self) -> list[str]:
        return [c for c in CONTROLLERS if not (self.root / c / "cgroup.procs").exists()]
