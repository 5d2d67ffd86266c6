"""The worker's side of the zygote: a :class:`~wuzhao.sandbox.api.Launcher`.

The worker (root, asyncio) starts one zygote (``wuzhao.runtimes.python.zygote``)
by exec, with an empty environment and only its control socket, so the
process every instance is forked from holds no platform secret
(``wuzhao.sandbox.zygote_control``). ``launch`` creates the instance's
cgroups, a socketpair (the runtime channel) and two pipes (stdout, stderr),
hands the child's ends to the zygote with SCM_RIGHTS and returns as soon as
the zygote reports the host pid. Everything is non-blocking: replies arrive
through ``loop.add_reader`` on the control socket, so this works under uvloop
too.

Preloading: given modules to ``preload`` (``WUZHAO_RUNTIME_PRELOAD``), the
launcher starts a second zygote that imports them from the runtime layers,
mounted in its namespace where instances have them, before it says hello
(``wuzhao.runtimes.python.preload``); one that cannot import them stops the
start (:class:`PreloadFailed`). An instance whose ``spec.preloaded`` is set is
forked from that one, any other from the plain zygote: forking the bigger
process costs each cold start about half a millisecond more, worth it only
to a function that imports what it holds (the worker decides which).

Exit statuses come from the zygote, the instances' parent, which reaps them.
An instance that could not enter its sandbox exits with
:data:`SETUP_FAILED`; its traceback is in the server's stderr, never in the
function's logs. If the zygote dies, its instances die with it (parent-death
signal), their ``wait`` resolves as killed by SIGKILL and ``launch`` raises
:class:`~wuzhao.errors.SandboxUnavailable`.

Mounts: at start the launcher makes (once per machine) and attaches to loop
devices the images of the Python runtime and of the wuzhao package, and an
image of each of the operator's runtime layers (host directories, made again
only when a directory's tree changed, ``images.layer_image``); each code
package's image (``spec.code_image``) and each function layer's
(``LayerMount.image``) at its first instance; it holds the devices until
``close`` (``wuzhao.sandbox.images.Attached``). The zygote runs from those
images and its children mount them (layers at ``/opt/<name>``; a layer with no
image is one of the runtime layers, mounted from the image made at start), so
no mount, module or mapped file inside a sandbox names a host path. The
zygote's namespace has the runtime layers at ``/opt/<name>`` too (a runtime
layer whose image could not be made is bound there, and its instances bind it
from there). Where images cannot be used (no loop devices, no mkfs.erofs) the
launcher warns loudly and binds host directories.

Network: an instance whose ``spec.network`` is ``"outbound"`` writes one byte
on its channel once its network namespace exists; ``launch`` then starts a
slirp4netns for it (``wuzhao.sandbox.slirp``), waits until slirp configured
the interface, answers one byte, and only then returns; the child meanwhile
adds the routes of ``wuzhao.sandbox.network`` (planned here, with the host's
addresses of the moment and the allow-list) before it drops its identity.
``destroy`` kills and reaps the slirp4netns. A ``"none"`` instance skips all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import re
import shutil
import signal
import socket
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from wuzhao.errors import SandboxUnavailable
from wuzhao.sandbox import images, network, rootfs
from wuzhao.sandbox.api import ExitStatus, LayerMount, SandboxSpec
from wuzhao.sandbox.cgroups import CGROUP_ROOT, Cgroup, CgroupTree
from wuzhao.sandbox.enter import SETUP_FAILED
from wuzhao.sandbox.shell_pool import Shell, ShellPool
from wuzhao.sandbox.slirp import Slirp
from wuzhao.sandbox.zygote_control import PreloadFailed, ZygoteControl

__all__ = ["SETUP_FAILED", "PreloadFailed", "ZygoteLauncher", "ZygoteProcess", "check_host"]

log = logging.getLogger(__name__)

DEFAULT_SHELLS = 2  # config.Settings.zygote_shells
REMOVE_TIMEOUT = 10.0  # rmdir of a cgroup stays EBUSY for ~1 s after an OOM kill
NETWORK_TIMEOUT = 10.0  # an outbound instance's slirp4netns takes ~4 ms to be ready
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_SERVER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_HOSTNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}")
_LAYER = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # mounted at /opt/<name>


def check_host(cgroup_root: Path = CGROUP_ROOT) -> None:
    """Raise :class:`SandboxUnavailable` saying why this host cannot make sandboxes."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the server does not run as root (namespaces, mounts and cgroups need it)")
    missing_ns = [n for n in ("user", "mnt", "pid", "net", "ipc", "uts") if not _exists_ns(n)]
    if missing_ns:
        problems.append(f"the kernel lacks namespaces: {', '.join(missing_ns)}")
    # The instance creates its user namespace after leaving root, so
    # unprivileged user namespaces must be allowed.
    if _sysctl("user/max_user_namespaces") == 0:
        problems.append("user namespaces are disabled (sysctl user.max_user_namespaces=0)")
    if _sysctl("kernel/unprivileged_userns_clone") == 0:
        problems.append("unprivileged user namespaces are off (kernel.unprivileged_userns_clone=0)")
    if _sysctl("kernel/apparmor_restrict_unprivileged_userns") == 1:
        problems.append(
            "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1)"
        )
    missing = CgroupTree("", cgroup_root).controllers_missing()
    if missing:
        problems.append(
            f"no cgroup v1 {', '.join(missing)} controller under {cgroup_root} "
            "(cgroup v2-only hosts are not supported yet)"
        )
    try:
        ctypes.CDLL("libseccomp.so.2")
    except OSError:
        problems.append("libseccomp is not installed (Debian package libseccomp2): no syscall filter")
    if problems:
        raise SandboxUnavailable(
            "this host cannot run sandboxes: "
            + "; ".join(problems)
            + ". For development only, --insecure-no-sandbox runs functions without isolation."
        )


def _exists_ns(name: str) -> bool:
    return os.path.exists(f"/proc/self/ns/{name}")


def _sysctl(name: str) -> int | None:
    try:
        return int(Path("/proc/sys", name).read_text())
    except (OSError, ValueError):
        return None


class ZygoteProcess:
    """One instance, as the worker sees it (a :class:`~wuzhao.sandbox.api.SandboxedProcess`)."""

    def __init__(
        self,
        launcher: ZygoteLauncher,
        spec: SandboxSpec,
        channel: socket.socket,
        stdout_fd: int,
        stderr_fd: int,
        cgroup: Cgroup | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.spec = spec
        self.cgroup = cgroup
        self._launcher = launcher
        self._channel = channel
        self._stdout_fd = stdout_fd
        self._stderr_fd = stderr_fd
        self._spawned: asyncio.Future[int] = loop.create_future()
        self._exit: asyncio.Future[ExitStatus] = loop.create_future()
        self._oom: bool | None = None  # remembered at destroy, when the cgroup goes
        self._destroying: asyncio.Future[None] | None = None
        self.slirp: Slirp | None = None  # the network of an outbound instance
        self.zygote: ZygoteControl | None = None  # the one it is forked from, set by launch
        self.from_shell = False  # made from one of the zygote's prepared shells, not by a fork then

    @property
    def pid(self) -> int:
        return self._spawned.result()

    @property
    def channel(self) -> socket.socket:
        return self._channel

    @property
    def stdout_fd(self) -> int:
        return self._stdout_fd

    @property
    def stderr_fd(self) -> int:
        return self._stderr_fd

    def kill(self) -> None:
        # Once reaped, the pid may belong to someone else: never signal it again.
        if self._spawned.done() and not self._spawned.exception() and not self._exit.done():
            # The pid itself first: just after launch the child may not lead its
            # process group or sit in its cgroups yet. Then the group: without a
            # pid namespace (isolate=False) that still reaches its children.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.kill_all()
            # cgroup v1 holds a SIGKILL for a frozen task until it is thawed.
            self.thaw()

    def freeze(self) -> None:
        if self.cgroup is not None:
            self.cgroup.freeze()

    def thaw(self) -> None:
        if self.cgroup is not None:
            with contextlib.suppress(FileNotFoundError):
                self.cgroup.thaw()

    async def wait(self) -> ExitStatus:
        return await asyncio.shield(self._exit)

    def oom_killed(self) -> bool:
        if self._oom is None:
            return self.cgroup is not None and self.cgroup.oom_kills() > 0
        return self._oom

    async def destroy(self) -> None:
        if self._destroying is None:
            self._destroying = asyncio.ensure_future(self._destroy())
        await asyncio.shield(self._destroying)

    async def _destroy(self) -> None:
        try:
            await self._spawned
            self.kill()
            await self._exit
        except SandboxUnavailable:
            pass  # no process was made, or the zygote is gone and took it along
        if self.slirp is not None:
            await self.slirp.stop()
        self._oom = self.oom_killed()
        stdout, stderr = partial(os.close, self._stdout_fd), partial(os.close, self._stderr_fd)
        for close in (self._channel.close, stdout, stderr):
            try:
                close()
            except OSError:
                # Someone else closed it (a transport that owned the channel):
                # say so, but the other descriptors and the cgroups must still go.
                log.exception("instance %s: closing a descriptor failed", self.spec.instance_id)
        if self.cgroup is not None:
            await _remove(self.cgroup)
        self._launcher._forget(self)


def _memfd(data: bytes) -> int:
    fd = os.memfd_create("spawn", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        raise
    return fd


async def _remove(cgroup: Cgroup) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REMOVE_TIMEOUT
    while not cgroup.try_remove():
        if loop.time() > deadline:
            log.warning("cgroup %s still busy; the next sweep removes it", cgroup.dirs["memory"])
            return
        await asyncio.sleep(0.05)


class ZygoteLauncher:
    """Launches instances forked from a pre-initialised Python zygote (or, preloaded, a second one)."""

    def __init__(
        self,
        *,
        state_dir: Path,
        server_id: str,
        isolate: bool = True,
        python: str = sys.executable,
        network_allow: Sequence[network.Network] = (),
        image_cache: Path = images.DEFAULT_CACHE_DIR,
        runtime_layers: Sequence[LayerMount] = (),
        preload: Sequence[str] = (),
        shells: int = DEFAULT_SHELLS,
    ) -> None:
        if not _SERVER_ID.fullmatch(server_id):
            raise ValueError(f"server id {server_id!r} must match {_SERVER_ID.pattern}")
        self._mountpoint = Path(state_dir) / "sandbox-root"  # stays empty on the host
        self._isolate = isolate
        self._python = python
        self._network_allow = tuple(network_allow)  # reachable by outbound instances although blocked
        self._slirp_binary: str | None = None  # found by start
        self._images = images.Attached(image_cache)  # attached by start, until close
        self._runtime_layers = tuple(runtime_layers)  # the operator's host directories, imaged at start
        self._preload = tuple(preload)  # modules the second zygote imports from the runtime layers
        self._shells = shells  # prepared children each zygote keeps (wuzhao.sandbox.shell_pool)
        self._cgroups: CgroupTree | None = CgroupTree(f"wuzhao/{server_id}")
        self._plain: ZygoteControl | None = None
        self._preloaded: ZygoteControl | None = None  # only with modules to preload
        self._launching: dict[str, ZygoteProcess] = {}  # by instance id, until "spawned"
        self._by_pid: dict[int, ZygoteProcess] = {}  # until "exit"
        self._live: dict[str, ZygoteProcess] = {}  # until destroyed
        self._tasks: set[asyncio.Future[None]] = set()  # destroys nobody awaits
        self._pools: dict[ZygoteControl, ShellPool] = {}  # by zygote, when it keeps shells

    @property
    def zygote_pid(self) -> int | None:
        """The plain zygote's pid."""
        return None if self._plain is None else self._plain.pid

    @property
    def preloaded_zygote_pid(self) -> int | None:
        return None if self._preloaded is None else self._preloaded.pid

    async def start(self) -> None:
        """Sweep this server's leftovers and start the zygote (and the preloaded one).

        Run it on the event loop's own thread: the zygote's parent-death signal
        fires when the *thread* that forked it ends, not the process.
        """
        if self._isolate:
            check_host()
            self._slirp_binary = shutil.which("slirp4netns")
            if self._slirp_binary is None:
                log.warning(
                    "slirp4netns is not installed: functions with network 'outbound' cannot start "
                    "(scripts/install installs it)"
                )
        await self._prepare_cgroups()
        self._mountpoint.mkdir(parents=True, exist_ok=True)
        if self._isolate:
            await asyncio.to_thread(self._attach_images)  # the first build takes ~1 s
        try:
            await self._start_zygotes()
        except SandboxUnavailable as exc:
            if not self._images.active or isinstance(exc, PreloadFailed):  # binds would not help
                await self.close()
                raise
            # Never fail to start for the images: fall back to binds, loudly.
            images.warn_fallback("the zygote could not start from the runtime's images")
            await self._stop_zygotes()
            await self._images.close()
            try:
                await self._start_zygotes()
            except SandboxUnavailable:
                await self.close()
                raise

    def _attach_images(self) -> None:
        self._images.attach_runtime()
        self._images.attach_runtime_layers(self._runtime_layers)

    def ready_shells(self, *, preloaded: bool = False) -> list[int]:
        """Host pids of the shells of the plain (or the preloaded) zygote ready for an instance."""
        zygote = self._preloaded if preloaded else self._plain
        pool = None if zygote is None else self._pools.get(zygote)
        return [] if pool is None else pool.ready

    @property
    def uses_images(self) -> bool:
        """Whether instances mount images (else binds of host directories, see the module doc)."""
        return self._images.active

    async def _start_zygotes(self) -> None:
        self._plain = self._zygote(self._zygote_argv())
        await self._plain.start()
        self._start_pool(self._plain, self._shells)
        if self._preload:
            self._preloaded = self._zygote([*self._zygote_argv(), f"--preload={','.join(self._preload)}"])
            try:
                await self._preloaded.start()
            except PreloadFailed as exc:
                layers = ", ".join(f"{layer.name}={layer.directory}" for layer in self._runtime_layers)
                raise PreloadFailed(
                    f"WUZHAO_RUNTIME_PRELOAD: the zygote cannot preload from the runtime layers "
                    f"({layers or 'none'}): {exc}"
                ) from None
            # A shell of the bigger process costs what one of the plain zygote does (~1.8 MB of
            # its own, docs/performance.md): the same number, for the same gain.
            self._start_pool(self._preloaded, self._shells)

    def _start_pool(self, zygote: ZygoteControl, size: int) -> None:
        # Shells need the zygote's own namespace (images) and cgroups to join.
        if size > 0 and zygote.keeps_shells and self._cgroups is not None:
            pool = ShellPool(zygote, self._cgroups, size)
            self._pools[zygote] = pool
            pool.start()

    def _zygote(self, argv: list[str]) -> ZygoteControl:
        return ZygoteControl(argv, on_message=self._dispatch, on_lost=self._on_zygote_lost)

    def _zygote_argv(self) -> list[str]:
        argv = [self._python, "-I", "-m", "wuzhao.runtimes.python.zygote"]
        if not self._isolate:
            argv.append("--no-isolate")
        argv += self._images.zygote_args()
        # Both zygotes' namespaces have the runtime layers where instances have them: the preloaded
        # one imports from there, and an instance binds a layer with no image from there (its host
        # directory may lie under /var or /opt, which the zygote's namespace hides).
        sources = self._images.runtime_layer_sources(self._runtime_layers)
        return argv + [f"--layer={source}" for source in sources]

    async def _stop_zygotes(self) -> None:
        """Stop zygotes that have no instance (one never said hello), to start others."""
        for zygote in (self._plain, self._preloaded):
            if zygote is not None:
                await zygote.close()
        await self._close_pools()
        self._plain = self._preloaded = None

    async def _close_pools(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        await asyncio.gather(*(pool.close() for pool in pools))

    async def _prepare_cgroups(self) -> None:
        cgroups = self._cgroups
        assert cgroups is not None
        try:
            await asyncio.to_thread(cgroups.sweep)  # leftovers of a crashed run
            cgroups.create_prefix()
        except OSError:
            if self._isolate:
                raise
            log.warning("cannot use cgroups here: instances run without resource limits")
            self._cgroups = None

    async def launch(self, spec: SandboxSpec) -> ZygoteProcess:
        # Without its preloaded zygote (it died) an instance imports the modules itself: slower, the same.
        preloaded = self._preloaded is not None and not self._preloaded.lost
        zygote = self._preloaded if spec.preloaded and preloaded else self._plain
        if zygote is None or zygote.lost:
            raise SandboxUnavailable("the zygote is not running")
        if not _NAME.fullmatch(spec.instance_id):
            raise ValueError(f"instance id {spec.instance_id!r} must match {_NAME.pattern}")
        if spec.instance_id in self._launching or spec.instance_id in self._live:
            raise ValueError(f"instance id {spec.instance_id!r} is in use")
        if self._isolate and not 0 < spec.uid < 2**32 - 1:
            raise ValueError(f"uid {spec.uid} is not an unprivileged uid")
        if not _HOSTNAME.fullmatch(spec.hostname):  # it is written into /etc/hosts
            raise ValueError(f"hostname {spec.hostname!r} must match {_HOSTNAME.pattern}")
        if spec.network not in network.MODES:
            raise ValueError(f"network {spec.network!r} must be one of {', '.join(network.MODES)}")
        # Without namespaces (isolate=False) an instance has the host's network whatever its mode.
        outbound = self._isolate and spec.network == "outbound"
        if outbound and self._slirp_binary is None:
            raise SandboxUnavailable("network 'outbound' needs slirp4netns, which is not installed")
        routes = self._routes() if outbound else []
        names = [layer.name for layer in spec.layers]
        bad = [name for name in names if not _LAYER.fullmatch(name)]
        if bad or len(set(names)) != len(names):
            raise ValueError(f"layer names {names!r} must be distinct and match {_LAYER.pattern}")
        code_device = self._images.code_device(spec.code_image)
        layer_devices = self._images.layer_devices(spec.layers)
        shell = self._take_shell(zygote, spec)
        cgroup = shell.cgroup if shell is not None else None
        if cgroup is None and self._cgroups is not None:
            cgroup = self._cgroups.create(
                spec.instance_id,
                memory_mb=spec.memory_mb,
                cpu_shares=spec.cpu_shares,
                pids_max=spec.pids_max,
                cpu_quota_us=spec.cpu_quota_us,
            )
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        for fd in (ours.fileno(), out_r, err_r):
            os.set_blocking(fd, False)
        proc = ZygoteProcess(self, spec, ours, out_r, err_r, cgroup)
        proc.zygote = zygote
        self._launching[spec.instance_id] = proc
        self._live[spec.instance_id] = proc
        # The zygote reads only the id: the rest (the environment, secrets included) goes in a
        # memfd that only the instance's own process reads, so no fork of the zygote holds it.
        request = {
            "spec": {**vars(spec), "env": dict(spec.env), "layers": [vars(layer) for layer in spec.layers]},
            "cgroups": [] if cgroup is None else cgroup.tasks_files,
            # In its own namespace (images) the zygote has a mountpoint of its own.
            "mountpoint": rootfs.ZYGOTE_MOUNTPOINT if self._images.active else str(self._mountpoint),
            "code_device": code_device,
            "layer_devices": layer_devices,
            "routes": routes,
        }
        request_fd = -1
        try:
            request_fd = _memfd(json.dumps(request).encode())
            shell_name = None if shell is None else shell.name
            message = json.dumps({"op": "spawn", "id": spec.instance_id, "shell": shell_name}).encode()
            await zygote.send(message, [theirs.fileno(), out_w, err_w, request_fd])
        except BaseException as exc:
            self._launching.pop(spec.instance_id, None)
            if not proc._spawned.done():
                proc._spawned.set_exception(SandboxUnavailable(f"spawn request failed: {exc}"))
            await proc.destroy()
            raise
        finally:
            # The zygote holds its own copies now (or never will).
            theirs.close()
            os.close(out_w)
            os.close(err_w)
            if request_fd >= 0:
                os.close(request_fd)
        try:
            await asyncio.shield(proc._spawned)
        except asyncio.CancelledError:
            # The zygote may still make the process: destroy it once it does.
            self._background(proc.destroy())
            raise
        except SandboxUnavailable:
            await proc.destroy()
            raise
        if outbound:
            try:
                await asyncio.wait_for(self._attach_network(proc), NETWORK_TIMEOUT)
            except asyncio.CancelledError:
                self._background(proc.destroy())
                raise
            except Exception as exc:
                await proc.destroy()
                if isinstance(exc, SandboxUnavailable):
                    raise
                reason = "timed out" if isinstance(exc, TimeoutError) else repr(exc)
                raise SandboxUnavailable(f"the network of an outbound instance failed: {reason}") from exc
        return proc

    def _take_shell(self, zygote: ZygoteControl, spec: SandboxSpec) -> Shell | None:
        """A ready shell of ``zygote`` with the instance's limits set on its cgroup, if there is one."""
        pool = self._pools.get(zygote)
        shell = None if pool is None else pool.take()
        if shell is None:
            return None
        try:
            shell.cgroup.limit(
                memory_mb=spec.memory_mb,
                cpu_shares=spec.cpu_shares,
                pids_max=spec.pids_max,
                cpu_quota_us=spec.cpu_quota_us,
            )
        except OSError:
            log.exception("cannot limit shell %s: the instance is forked directly", shell.name)
            shell.cgroup.kill_all()  # the shell: its zygote sees it die
            self._background(_remove(shell.cgroup))
            return None
        return shell

    def _routes(self) -> list[str]:
        """The unreachable routes of an outbound instance, with the host's addresses of now."""
        return list(network.route_plan(self._network_allow, tuple(network.host_addresses())))

    async def _attach_network(self, proc: ZygoteProcess) -> None:
        """Attach slirp4netns once the child made its namespace; let the child go on once it is up."""
        loop = asyncio.get_running_loop()
        if await loop.sock_recv(proc.channel, 1) != network.NETNS_MADE:
            raise SandboxUnavailable("the instance exited before its network was attached")
        assert self._slirp_binary is not None
        # The child is blocked until we answer: its pid and namespace are still its own.
        proc.slirp = Slirp.start(self._slirp_binary, f"/proc/{proc.pid}/ns/net")
        await proc.slirp.ready()
        await loop.sock_sendall(proc.channel, network.ATTACHED)

    def _background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _dispatch(self, zygote: ZygoteControl, message: dict[str, Any]) -> None:
        op = message["op"]
        if op == "spawned":
            proc = self._launching.pop(message["id"])
            self._by_pid[message["pid"]] = proc
            proc.from_shell = message.get("shell", False)
            proc._spawned.set_result(message["pid"])
        elif op == "failed":
            proc = self._launching.pop(message["id"])
            error = SandboxUnavailable(f"the zygote could not launch: {message['error']}")
            proc._spawned.set_exception(error)
        elif op == "ready" and zygote in self._pools:
            self._pools[zygote].on_ready(message["shell"], message["pid"])
        elif op == "lost" and zygote in self._pools:
            self._pools[zygote].on_lost(message["shell"])
        elif op == "exit":
            proc = self._by_pid.pop(message["pid"])
            if message["code"] == SETUP_FAILED:
                log.error("instance %s could not enter its sandbox", proc.spec.instance_id)
            proc._exit.set_result(ExitStatus(message["code"], message["signal"]))

    def _on_zygote_lost(self, zygote: ZygoteControl) -> None:
        pool = self._pools.pop(zygote, None)
        if pool is not None:  # its shells died with it (parent-death signal); their cgroups go
            self._background(pool.close())
        lost = SandboxUnavailable("the zygote exited")
        for instance_id, proc in list(self._launching.items()):
            if proc.zygote is zygote:
                proc._spawned.set_exception(lost)
                del self._launching[instance_id]
        # Their parent-death signal killed them; make sure of it before saying so.
        for pid, proc in list(self._by_pid.items()):
            if proc.zygote is zygote:
                if proc.cgroup is not None:
                    proc.cgroup.kill_all()
                proc._exit.set_result(ExitStatus(None, signal.SIGKILL))
                del self._by_pid[pid]

    def _forget(self, proc: ZygoteProcess) -> None:
        self._live.pop(proc.spec.instance_id, None)

    async def close(self) -> None:
        """Destroy every instance, stop the zygotes, remove this server's cgroups."""
        live = list(self._live.values())
        results = await asyncio.gather(*(p.destroy() for p in live), return_exceptions=True)
        for proc, result in zip(live, results, strict=True):
            if isinstance(result, Exception):  # the zygote and the sweep below still run
                log.error("instance %s: destroy failed", proc.spec.instance_id, exc_info=result)
        for zygote in (self._plain, self._preloaded):
            if zygote is not None:
                await zygote.close()  # EOF: the zygote kills what is left (shells too) and exits
        await self._close_pools()
        await self._images.close()  # nothing mounts them any more: the kernel detaches them
        if self._cgroups is not None:
            await asyncio.to_thread(self._cgroups.sweep)
