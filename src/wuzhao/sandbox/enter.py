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
2. :func:`isolate`: new cgroup, mount, net, ipc and uts namespaces; the root
   of ``wuzhao.sandbox.rootfs``; ``lo`` up; for an ``outbound`` instance the
   handshake and routes of ``wuzhao.sandbox.network`` (the worker attaches
   slirp4netns meanwhile); hostname; then the identity drop to ``spec.uid``
   and a user namespace mapping it to 0, leaving no capability on the host.
3. :func:`finish`: parent-death signal (after the last credential change,
   which would clear it), stdio and the channel at 0-3 with every other fd
   closed, environment exactly ``spec.env``, cwd the task root; then the
   hardening that must come last: ``RLIMIT_NOFILE`` = ``spec.nofile``, no
   core dumps, not dumpable, and the seccomp filter of
   ``wuzhao.sandbox.seccomp`` with no_new_privs (compiled once, when the
   zygote imported this module; a child only loads it).

A shell (a child the zygote makes before it has a function for it, see the
zygote's module) runs the same steps in the same order, split where the
function comes in: before, :func:`join_cgroups` (a group the worker made
for the shell, with no limit yet) and :func:`prepare` (the namespaces, the
root's part of ``rootfs.base_plan``, ``lo`` up); once given a function,
:func:`complete_root` (its code and layers, the pivot, the seal) and
:func:`lock_down` (network, hostname, identity), then :func:`finish`.

:func:`isolate` ends by dropping every capability (bounding set, ambient,
effective, permitted, inheritable; securebits ``NOROOT`` locked), so uid 0
inside has none, not even over its own namespaces.
"""

from __future__ import annotations

import fcntl
import os
import resource
import signal
import socket
import struct
import sys
from collections.abc import Sequence

from wuzhao.sandbox import libc, network, rootfs, seccomp
from wuzhao.sandbox.api import CHANNEL_FD, SandboxSpec

SETUP_FAILED = 125  # exit code of a child that could not enter its sandbox
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
_IFREQ = struct.Struct("16sH14x")


def _last_capability() -> int:
    """The highest capability number the running kernel knows."""
    cap = 0
    while True:
        try:
            libc.prctl(libc.PR_CAPBSET_READ, cap + 1)
        except OSError:  # EINVAL: no such capability
            return cap
        cap += 1


# Prepared when the zygote imports this module, before any fork, so that a
# child only acts: the syscall filter (building it costs milliseconds, loading
# it a tenth of one) and the capability count.
SECCOMP_FILTER = seccomp.prepare()
LAST_CAPABILITY = _last_capability()


def join_cgroups(tasks_files: list[str]) -> None:
    """Move this process into each group (``Cgroup.tasks_files``): it must have one thread."""
    # A task directory's link count is 2 + its threads. A fork has one, and nothing here starts one.
    if os.stat("/proc/self/task").st_nlink != 3:
        raise RuntimeError("a process with threads would leave all but one outside its cgroups")
    for path in tasks_files:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, b"0")  # cgroup v1: 0 means the writing thread
        finally:
            os.close(fd)


def isolate(
    spec: SandboxSpec,
    *,
    mountpoint: str,
    facts: rootfs.HostFacts,
    channel: int = -1,
    routes: Sequence[str] = (),
) -> None:
    """Enter the namespaces; ``channel`` and ``routes`` serve an outbound instance's network."""
    _unshare_namespaces()
    if spec.network == "outbound":
        network.announce(channel)  # the worker starts slirp4netns while we build the root
    _prepare_root(facts, mountpoint)
    complete_root(spec, mountpoint=mountpoint, facts=facts)
    lock_down(spec, channel=channel, routes=routes, announced=True)


def prepare(*, mountpoint: str, facts: rootfs.HostFacts) -> None:
    """A shell's part of :func:`isolate`, before it has a function: nothing here depends on one."""
    _unshare_namespaces()
    _prepare_root(facts, mountpoint)


def complete_root(spec: SandboxSpec, *, mountpoint: str, facts: rootfs.HostFacts) -> None:
    """The function's part of the root, the pivot into it and the seal; its command line."""
    rootfs.seal(rootfs.instance_plan(spec, facts), mountpoint)
    _show_own_command_line(spec)


def lock_down(spec: SandboxSpec, *, channel: int, routes: Sequence[str], announced: bool) -> None:
    """The network of an outbound instance, the hostname, then the identity drop."""
    if spec.network == "outbound":
        if not announced:
            network.announce(channel)
        network.seal(channel, routes)
    socket.sethostname(spec.hostname)
    _drop_identity(spec.uid)


def _unshare_namespaces() -> None:
    # The cgroup namespace after join_cgroups: /proc/self/cgroup shows "/", not the server's groups.
    libc.unshare(libc.CLONE_NEWCGROUP)
    libc.unshare(libc.CLONE_NEWNS | libc.CLONE_NEWNET | libc.CLONE_NEWIPC | libc.CLONE_NEWUTS)


def _prepare_root(facts: rootfs.HostFacts, mountpoint: str) -> None:
    rootfs.prepare(rootfs.base_plan(facts), mountpoint)
    _relocate_python(facts)
    _loopback_up()


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


def _show_own_command_line(spec: SandboxSpec) -> None:
    """Make /proc/1/cmdline and /proc/1/environ the runtime's, not the zygote's.

    A fork shows its parent's: the zygote's command line names its options
    (its control fd, the devices of its images) and, without images, the
    host path of the server's Python. (Not dumpable, the instance cannot read
    its environ; its cmdline anyone can.)
    """
    environ = "".join(f"{name}={value}\0" for name, value in spec.env.items())
    libc.set_process_strings(os.fsencode(sys.executable) + b"\0", os.fsencode(environ))


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
    _drop_capabilities()


def _drop_capabilities() -> None:
    """Leave uid 0 inside without any capability, now and after any execve.

    The new user namespace gave the process every capability over the
    namespaces it owns; they are not needed past this point.
    """
    # NOROOT: executing a program as uid 0 grants nothing; locked, like
    # ambient raising, so that nothing later can undo it.
    securebits = (
        libc.SECBIT_NOROOT
        | libc.SECBIT_NOROOT_LOCKED
        | libc.SECBIT_NO_CAP_AMBIENT_RAISE
        | libc.SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED
    )
    libc.prctl(libc.PR_SET_SECUREBITS, securebits)
    for cap in range(LAST_CAPABILITY + 1):
        libc.prctl(libc.PR_CAPBSET_DROP, cap)
    libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_CLEAR_ALL)
    libc.clear_capabilities()


def finish(spec: SandboxSpec, *, task_root: str, channel: int, stdout: int, stderr: int) -> None:
    # The kernel clears the parent-death signal on every credential change, so
    # it is set last. The zygote is the parent: it dies with the worker, and
    # SIGKILL of pid 1 takes the whole pid namespace with it.
    libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
    adopt_stdio(channel=channel, stdout=stdout, stderr=stderr)
    os.environ.clear()
    os.environ.update(spec.env)
    os.chdir(task_root)
    _limit_resources(spec)
    # Not dumpable: /proc/1/mem, environ and the like become root's, so no
    # process the function starts can read them (ptrace is filtered anyway).
    libc.prctl(libc.PR_SET_DUMPABLE, 0)
    SECCOMP_FILTER.load()  # last: from here on only what the policy allows


def _limit_resources(spec: SandboxSpec) -> None:
    # After adopt_stdio: a descriptor numbered above the limit must be closed, not kept.
    resource.setrlimit(resource.RLIMIT_NOFILE, (spec.nofile, spec.nofile))
    # A core dump of user code could be handed to a host-side handler as root.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # SCHED_BATCH: a woken instance does not preempt the process that woke it.
    # The worker hands a call over and goes on answering others instead of being
    # switched out mid-write; with 16 busy connections on 2 cores that is about
    # a quarter more calls per second (bench/suite.py), at no cost to a lone
    # call (an idle core still runs the instance at once).
    os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


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
