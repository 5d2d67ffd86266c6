"""The sandbox contract: how the worker gets an isolated process to run a function.

A :class:`Launcher` turns a :class:`SandboxSpec` into a running
:class:`SandboxedProcess`. The guarantees every launcher gives:

1. Before any user code runs, the process has joined its own cgroups (memory =
   ``memory_mb``, pids, cpu weight) and entered its own user, mount, pid, ipc,
   uts and network namespaces; it runs as the unprivileged host uid
   ``spec.uid`` and sees itself as uid 0; its root is read-only, ``/tmp`` is
   the only writable place, the code is at ``/var/task`` read-only, each of
   ``spec.layers`` at ``/opt/<name>`` read-only (nosuid, nodev; ``/opt``
   exists, read-only, even with no layer); where the launcher can mount
   images, no mount inside names a host path; its environment is exactly
   ``spec.env``; its open descriptors are 0, 1, 2 (stdin is /dev/null; stdout
   and stderr are pipes the worker reads) and the runtime channel at fd 3. It
   has no capability, at most ``spec.nofile`` open files, no core dumps, and
   runs under the syscall filter of ``wuzhao.sandbox.seccomp``.
2. ``launch`` returns once the process exists; the runtime then speaks the
   protocol of ``wuzhao.runtimes.protocol`` on ``channel``. Launch does not wait
   for the handler to be imported.
3. ``kill`` is idempotent and kills the whole process tree of the instance
   (every process in its pid namespace and cgroups), including processes the
   function left behind.
4. ``wait`` resolves once the instance's first process is gone; ``destroy``
   kills, waits, closes the worker's descriptors and removes the cgroups. After
   ``destroy`` nothing of the instance is left on the host. It is idempotent.
5. ``oom_killed`` tells whether the kernel killed a process of the instance for
   exceeding its memory limit (read before ``destroy``).
6. ``Launcher.close`` destroys every process it launched and stops the zygote.
   A launcher started on a host with leftovers of a previous run (cgroups of a
   crashed server) removes them in ``start``.
7. ``freeze`` stops every process of the instance from running (its cgroup is
   frozen) until ``thaw``; the worker freezes idle instances so that whatever a
   function left running uses no CPU between calls. ``kill`` works on a frozen
   instance too. Both are cheap and idempotent.
8. ``network`` is the instance's network mode. ``"none"``: its network
   namespace has only its own loopback. ``"outbound"``: it can also open TCP
   and UDP connections (IPv4) to the internet through a user-space network
   stack outside the sandbox, and can reach neither the host (its loopback,
   its addresses, so none of the platform's ports) nor link-local, private,
   shared, multicast or reserved addresses, unless the launcher's allow-list
   names them (the host's own addresses stay unreachable); connecting to a
   blocked address fails at once (EHOSTUNREACH) and sends no packet. The
   function cannot change its routes. ``launch`` of an outbound instance
   returns once its network is up, so user code never runs before it;
   ``destroy`` stops the network stack too. ``"none"`` costs nothing extra.
9. ``preloaded``: the runtime of such an instance starts with the modules the
   launcher was given to preload already imported, from the layers among
   ``spec.layers`` that the launcher was given as runtime layers, at the
   paths the instance sees them; everything else (the sandbox, its paths, the
   handler imported inside it) is as for any instance.
10. A launcher may prepare what depends on no spec before it is asked (the
    zygote launcher keeps prepared shells: namespaces, cgroup, the root's
    base). What it prepares serves one instance only, holds nothing of any
    other, and guarantee 1 holds all the same; ``launch`` then only shortens.

A launcher built with ``isolate=False`` (``--insecure-no-sandbox``) keeps the
process model and the cgroups it can get but skips namespaces and identity; it
exists only for development on hosts without namespaces.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

TASK_ROOT = "/var/task"  # where the function's code appears inside the sandbox
CHANNEL_FD = 3  # the runtime channel's descriptor number inside the sandbox
LAYERS_ROOT = "/opt"  # each layer appears at LAYERS_ROOT/<name> inside the sandbox


@dataclass(frozen=True)
class LayerMount:
    """A layer, mounted read-only at ``/opt/<name>`` (and put on the runtime's import path)."""

    name: str
    directory: str  # host directory with the layer's files
    image: str | None = None  # its read-only image, mounted instead of binding ``directory``


@dataclass(frozen=True)
class SandboxSpec:
    instance_id: str  # unique, [a-z0-9-]; names the cgroups
    code_dir: str  # host directory with the unpacked code, mounted read-only at TASK_ROOT
    uid: int  # unprivileged host uid (and gid) the instance runs as
    memory_mb: int
    cpu_shares: int  # cgroup v1 cpu.shares (1024 ~ one core of weight)
    pids_max: int = 256
    cpu_quota_us: int | None = None  # hard CPU cap per 100 ms period (cfs quota); None: weight only
    tmp_size_mb: int = 512
    nofile: int = 1024  # RLIMIT_NOFILE, soft and hard (as on Lambda)
    hostname: str = "sandbox"
    env: Mapping[str, str] = field(default_factory=dict)
    network: str = "none"  # "none" or "outbound" (guarantee 8)
    # An image of code_dir (wuzhao.sandbox.images), mounted instead of binding code_dir
    # where loop devices work: a bind would show code_dir's host path in /proc/self/mountinfo.
    code_image: str | None = None
    layers: tuple[LayerMount, ...] = ()  # at /opt/<name>, in this order on the import path
    # Started from a runtime that already imported the launcher's preloaded modules (guarantee 9);
    # a launcher with none to preload ignores it.
    preloaded: bool = False


@dataclass(frozen=True)
class ExitStatus:
    code: int | None  # exit code when the process exited
    signal: int | None  # signal number when it was killed


class SandboxedProcess(Protocol):
    @property
    def pid(self) -> int:
        """Host pid of the instance's first process (pid 1 in its namespace)."""

    @property
    def channel(self) -> socket.socket:
        """Worker's end of the runtime channel (non-blocking stream socket)."""

    @property
    def stdout_fd(self) -> int:
        """Read end of the instance's stdout pipe (non-blocking)."""

    @property
    def stderr_fd(self) -> int:
        """Read end of the instance's stderr pipe (non-blocking)."""

    def kill(self) -> None: ...

    def freeze(self) -> None: ...

    def thaw(self) -> None: ...

    async def wait(self) -> ExitStatus: ...

    def oom_killed(self) -> bool: ...

    async def destroy(self) -> None: ...


class Launcher(Protocol):
    async def start(self) -> None: ...

    async def launch(self, spec: SandboxSpec) -> SandboxedProcess: ...

    async def close(self) -> None: ...
