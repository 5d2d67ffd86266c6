"""Entering the sandbox: runs in a child forked by the zygote, as root, before user code.

The only fork is in ``wuzhao.runtimes.python.zygote``; the child it makes is
already pid 1 of a new pid namespace (the zygote unshares the pid namespace
for its next child only). Everything here runs in that child, so it must:

- never return into the zygote's loop (the caller ends with ``os._exit``);
- import nothing lazily: the zygote imported every module beforehand, and
  after the pivot the host's paths are gone (``/root`` is 0700 anyway);
- keep the zygote's stderr (fd 2) until :func:`adopt_stdio`, so that a setup
  failure is reported in the server's log and never in the function's;
- run in this order, because each step needs the rights the next one drops:

1. :func:`join_cgroups` first, so no process of the instance escapes them.
2. :func:`isolate`: new mount, net, ipc and uts namespaces; the root of
   ``wuzhao.sandbox.rootfs``; ``lo`` up; hostname; then the identity drop to
   ``spec.uid`` and a user namespace mapping it to 0, leaving no capability
   on the host.
3. :func:`finish`: parent-death signal (after the last credential change,
   which would clear it), stdio and the channel at 0-3 with every other fd
   closed, environment exactly ``spec.env``, cwd the task root.

A seccomp filter, when there is one, goes at the end of :func:`finish`.
"""

from __future__ import annotations

import fcntl
import os
import resource
import signal
import socket
import struct
import sys

from wuzhao.sandbox import libc, rootfs
from wuzhao.sandbox.api import CHANNEL_FD, SandboxSpec

SETUP_FAILED = 125  # exit code of a child that could not enter its sandbox
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
_IFREQ = struct.Struct("16sH14x")


def join_cgroups(procs_files: list[str]) -> None:
    for path in procs_files:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, b"0")  # cgroup v1: 0 means the writing process
        finally:
            os.close(fd)


def isolate(spec: SandboxSpec, *, mountpoint: str, facts: rootfs.HostFacts) -> None:
    libc.unshare(libc.CLONE_NEWNS | libc.CLONE_NEWNET | libc.CLONE_NEWIPC | libc.CLONE_NEWUTS)
    rootfs.apply(rootfs.plan(spec, facts), mountpoint)
    _relocate_python(facts)
    _loopback_up()
    socket.sethostname(spec.hostname)
    _drop_identity(spec.uid)


def _relocate_python(facts: rootfs.HostFacts) -> None:
    """Point the interpreter at its installation's path inside the sandbox.

    Host entries with no place inside (the server's venv, its source tree)
    are dropped: the platform's own packages are not the function's business.
    """
    # The importer cache keeps its finders for host paths: clearing it would
    # free (and so copy) hundreds of pages shared with the zygote, and a finder
    # whose directory is gone finds nothing anyway. Packages already imported
    # were given their inside paths by the zygote.
    paths = (rootfs.sandbox_path(p, facts) for p in sys.path if p)
    sys.path[:] = [p for p in paths if p is not None]
    inside = rootfs.python_inside(facts)
    sys.prefix = sys.exec_prefix = sys.base_prefix = sys.base_exec_prefix = inside
    executable = rootfs.sandbox_path(facts.python_executable, facts)
    sys.executable = sys._base_executable = executable or ""  # type: ignore[attr-defined]


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = _IFREQ.pack(b"lo", 0)
        _, flags = _IFREQ.unpack(fcntl.ioctl(sock, SIOCGIFFLAGS, request))
        fcntl.ioctl(sock, SIOCSIFFLAGS, _IFREQ.pack(b"lo", flags | IFF_UP))


def _drop_identity(uid: int) -> None:
    # A core dump of user code could be handed to a host-side handler as root.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    # Leaving root made the process non-dumpable, which makes its /proc files
    # root's: it could not write its own uid_map below.
    libc.prctl(libc.PR_SET_DUMPABLE, 1)
    libc.unshare(libc.CLONE_NEWUSER)
    for name, content in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {uid} 1")):
        fd = os.open(f"/proc/self/{name}", os.O_WRONLY)
        try:
            os.write(fd, content.encode())
        finally:
            os.close(fd)


def finish(spec: SandboxSpec, *, task_root: str, channel: int, stdout: int, stderr: int) -> None:
    # The kernel clears the parent-death signal on every credential change, so
    # it is set last. The zygote is the parent: it dies with the worker, and
    # SIGKILL of pid 1 takes the whole pid namespace with it.
    libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
    adopt_stdio(channel=channel, stdout=stdout, stderr=stderr)
    os.environ.clear()
    os.environ.update(spec.env)
    os.chdir(task_root)


def adopt_stdio(*, channel: int, stdout: int, stderr: int) -> None:
    """Make 0-2 and the channel the only descriptors, at their contract numbers."""
    # The received descriptors may sit on the very numbers they go to: lift
    # them above 3 first so no dup2 closes one still needed.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, CHANNEL_FD + 1) for fd in (channel, stdout, stderr)]
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(high[1], 1)
    os.dup2(high[2], 2)
    # The channel is not inheritable: a program the function executes gets
    # only stdio, never the runtime's socket.
    os.dup2(high[0], CHANNEL_FD, inheritable=False)
    os.closerange(CHANNEL_FD + 1, os.sysconf("SC_OPEN_MAX"))
