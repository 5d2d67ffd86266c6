"""The Python zygote: a pre-initialised root process that forks every instance.

Started by ``wuzhao.sandbox.zygote_launcher`` by exec, with an empty
environment and no descriptor but its control socket (stdin and stdout are
/dev/null; stderr is the server's, for the zygote's own failures and for
sandbox setup failures). It imports everything the sandbox entry and the
runtime need, then makes one child per spawn request: a fork there and
then, or a shell forked earlier (below). This is the only module that forks;
every child first leaves the zygote behind (:meth:`Zygote._leave_zygote`):
signal handlers and the wakeup fd reset, every descriptor of the zygote's
closed at once (the worker must see EOF when the zygote dies, not when its
last child ends), ``random`` reseeded (``random`` registers that at-fork hook
itself), and ``os._exit`` on every path, so a child never returns into the
loop. All children share the zygote's hash seed: that is the price of forking.

Control protocol, on a SOCK_SEQPACKET socket, one JSON object per message:

    worker -> zygote  {"op": "spawn", "id", "shell": a ready shell's name, or null}
                      with SCM_RIGHTS [channel, stdout write end, stderr write end, request]:
                      the request is a memfd of {"spec": {SandboxSpec fields},
                      "cgroups": [tasks files], "mountpoint": for the root, "code_device",
                      "layer_devices": loop devices of its images,
                      "routes": [CIDRs unreachable for an outbound instance]}, read by
                      the child only, so that no fork of the zygote holds a function's data
                      {"op": "shell", "id", "cgroups": [tasks files]}   prepare a shell
    zygote -> worker  {"op": "hello", "pid", "shells"}  once, when ready ("shells": it can keep some)
                      {"op": "broken", "error"}         instead, when it cannot preload (then exits)
                      {"op": "ready", "shell", "pid"}   a shell waits for a spawn
                      {"op": "lost", "shell"}           a shell died before it was given one
                      {"op": "spawned", "id", "pid", "shell"}  host pid of the instance; from a shell?
                      {"op": "failed", "id", "error"}   no process was made
                      {"op": "exit", "pid", "code", "signal"}  always after "spawned"

Shells: asked by the worker (``wuzhao.sandbox.shell_pool``), the zygote forks
a child that joins the cgroups the worker made for it (with no limit yet),
does what no function decides (``enter.prepare``: its namespaces, pid 1 of
its own pid namespace, the base of its root, ``lo`` up), says READY on a
socketpair of its own and blocks. A spawn naming it is handed over on that
socket; the shell reads its request, builds the function's part of the root
(``enter.complete_root``) and says TAKEN, then goes on as a forked child does
(``enter.lock_down``, ``enter.finish``, the runtime). Until TAKEN the zygote
keeps the spawn's descriptors: a shell that dies first, says anything else
or is not done within :data:`TAKE_TIMEOUT` is killed and the zygote forks
the instance itself, into the same cgroups, so a spawn never fails for a
shell. No shell is forked while another holds a spawn (it would inherit that
function's descriptors, if only until it closes them). Shells die with the
zygote: parent-death signal, and EOF on their socket if it died before.

EOF on the control socket (the worker closed it or died) makes the zygote
SIGKILL and reap its children and exit; PR_SET_PDEATHSIG covers a worker that
dies before the socket is noticed, and a worker that died before the signal
was armed left an EOF to read. The command line names nothing of the server
(no data dir, no pid); an instance shows its own in ``/proc/1/cmdline`` anyway.

Given the runtime's images (``--runtime-device``, and ``--lang-device`` for a
Python outside /usr), the zygote first moves into a mount namespace of its own
where they are mounted where a sandbox sees them (``rootfs.enter_runtime``) and
re-executes itself from there: the runtime's Python at /var/lang, this package
from /var/runtime. Then no module, code object, mapped library or executable
of the zygote, all inherited by each instance, names a host path. That Python
has the standard library and this package only: nothing the zygote imports
may come from elsewhere, except what it preloads.

Given the runtime layers as ``--layer name=source`` (the loop device of the
layer's image, or its directory), the zygote's namespace also has each at
/opt/<name>, where instances have them: a child binds a layer with no image
from there. Given modules to ``--preload``, the zygote imports them from those
layers before it says hello (``preload``): a preloaded zygote. Without images
it imports them from the layers' host directories and gives their packages
the /opt path as a second ``__path__`` entry, as it does for the standard
library.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from typing import Any, NoReturn

from wuzhao.runtimes.python import bootstrap, preload
from wuzhao.sandbox import enter, libc, rootfs
from wuzhao.sandbox.api import CHANNEL_FD, LAYERS_ROOT, TASK_ROOT, LayerMount, SandboxSpec

MAX_REQUEST = 4096  # the control message: the instance's request travels in a descriptor
MAX_FDS = 4  # channel, stdout, stderr, the request
# A shell's messages to the zygote, and the zygote's one message to a shell.
READY, TAKEN, SPAWN = b"ready", b"taken", b"spawn"
# How long a shell may take from its spawn to TAKEN before the zygote makes the instance itself.
TAKE_TIMEOUT = 2.0
# The zygote's second start, by the runtime's Python, from the runtime's images.
_FROM_RUNTIME = "import sys; sys.path.insert(0, {root!r}); from {module} import main; sys.exit(main())"


@dataclasses.dataclass(frozen=True)
class _Request:
    """What a child needs to become one instance, read from the descriptor the worker wrote it to."""

    spec: SandboxSpec
    cgroups: list[str]
    mountpoint: str
    routes: list[str]
    facts: rootfs.HostFacts


@dataclasses.dataclass(eq=False)
class _Shell:
    """A prepared child waiting for its function, as the zygote sees it."""

    name: str  # the worker's
    cgroups: list[str]  # joined as it prepares
    pid: int
    sock: socket.socket  # the zygote's end of the shell's socketpair
    ready: bool = False
    reaped: bool = False
    # The spawn it was handed, until it says TAKEN: kept to make the instance directly instead.
    request_id: str | None = None
    fds: list[int] = dataclasses.field(default_factory=list)
    deadline: float = 0.0


class Zygote:
    def __init__(
        self,
        control: socket.socket,
        *,
        isolate: bool,
        images: rootfs.Images | None = None,
        bound_layers: dict[str, str] | None = None,
    ) -> None:
        self._control = control
        self._isolate = isolate
        # Runtime layers with no image that this zygote's namespace has bound at /opt/<name>
        # (host directory -> there): a child binds them from there, the host's path may be hidden.
        self._bound_layers = bound_layers or {}
        self.facts = dataclasses.replace(rootfs.probe_host(), images=images or rootfs.Images())
        self._children: set[int] = set()  # instances the worker knows, until their "exit"
        self._shells: dict[str, _Shell] = {}  # by name, until TAKEN or lost
        self._to_make: list[tuple[str, list[str]]] = []  # shells asked for, not forked yet
        self._dropped: set[int] = set()  # shells killed and not yet reaped: no "exit" for them
        # The zygote's own pid namespace, to return to after each child is
        # made in a new one (unshare(CLONE_NEWPID) affects the next fork only
        # until undone).
        self._pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        self._selector = selectors.DefaultSelector()
        self._selector.register(control, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)

    @property
    def keeps_shells(self) -> bool:
        """Shells build their root on the mountpoint of this zygote's own namespace: only a zygote
        running from the runtime's images has one (without, each request names a host directory)."""
        return self._isolate and self.facts.images.runtime is not None

    def serve(self) -> None:
        self._send({"op": "hello", "pid": os.getpid(), "shells": self.keeps_shells})
        while True:
            for key, _ in self._selector.select(self._timeout()):
                if key.fileobj is self._control:
                    if not self._handle_request():
                        return self._shutdown()
                elif isinstance(key.data, _Shell):
                    self._on_shell(key.data)
                else:
                    self._drain_wakeups()
                    self._reap()
            self._expire()
            self._make_shell()

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _send(self, message: dict[str, Any]) -> None:
        self._control.send(json.dumps(message).encode())

    def _handle_request(self) -> bool:
        data, fds, _, _ = socket.recv_fds(self._control, MAX_REQUEST, MAX_FDS)
        if not data:
            _close(fds)
            return False
        request: dict[str, Any] = {}
        try:
            request = json.loads(data)
            if request["op"] == "shell":
                if self.keeps_shells:
                    self._to_make.append((request["id"], request["cgroups"]))
                else:
                    self._send({"op": "lost", "shell": request["id"]})
                return True
            # Only the id: the instance's request (its environment, its secrets) is in fds[3],
            # read by the child alone, so no fork of this process ever holds a function's data.
            if len(fds) != MAX_FDS:
                raise ValueError(f"expected {MAX_FDS} descriptors, got {len(fds)}")
            shell = self._shells.get(request.get("shell") or "")
            if shell is not None and self._assign(shell, request["id"], fds):
                fds = []  # the shell's until it says TAKEN
            else:
                if shell is not None:  # its cgroups are the instance's now: it must not stay in them
                    self._drop_shell(shell)
                self._spawn(request["id"], fds)
        except Exception as exc:
            self._send({"op": "failed", "id": request.get("id"), "error": repr(exc)})
        finally:
            _close(fds)
        return True

    def _spawn(self, request_id: str, fds: list[int]) -> None:
        """Make the instance by a fork of this process (no shell given, or it failed)."""
        pid = self._fork()
        if pid == 0:
            self._child(fds)
        self._children.add(pid)
        self._send({"op": "spawned", "id": request_id, "pid": pid, "shell": False})

    def _fork(self) -> int:
        if not self._isolate:
            return os.fork()
        libc.unshare(libc.CLONE_NEWPID)
        try:
            pid = os.fork()
        except BaseException:
            libc.setns(self._pidns, libc.CLONE_NEWPID)
            raise
        if pid:
            libc.setns(self._pidns, libc.CLONE_NEWPID)
        return pid

    def _leave_zygote(self, keep: list[int]) -> None:
        """In a new child: drop what it inherited of the zygote but ``keep``, at once.

        Closed through their objects, so that nothing collected later closes a
        number reused meanwhile. Other spawns' descriptors (held for a shell
        that has not taken its spawn yet) are another function's: never kept.
        """
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        # The worker must see EOF when the zygote dies, not when its last child ends.
        self._control.close()
        self._selector.close()
        for fd in (self._wake_r, self._wake_w, self._pidns):
            os.close(fd)
        for shell in self._shells.values():
            shell.sock.close()
            _close([fd for fd in shell.fds if fd not in keep])

    def _child(self, fds: list[int]) -> NoReturn:
        task_root, layer_dirs = "", dict[str, str]()
        try:
            self._leave_zygote(keep=fds)
            # Its own process group: the worker's killpg reaches the whole tree
            # even without a pid namespace (isolate=False).
            os.setsid()
            request = self._read_request(fds[3])
            spec = request.spec
            enter.join_cgroups(request.cgroups)
            task_root, layer_dirs = _paths(spec, inside=self._isolate)
            if self._isolate:
                mountpoint, facts = request.mountpoint, request.facts
                enter.isolate(spec, mountpoint=mountpoint, facts=facts, channel=fds[0], routes=request.routes)
            enter.finish(spec, task_root=task_root, channel=fds[0], stdout=fds[1], stderr=fds[2])
        except BaseException:
            _setup_failed()
        os._exit(_run_runtime(task_root, layer_dirs))

    def _read_request(self, fd: int) -> _Request:
        size = os.fstat(fd).st_size
        fields = json.loads(os.pread(fd, size, 0))
        os.close(fd)
        spec_fields = fields["spec"]
        layers = tuple(self._as_seen_here(LayerMount(**layer)) for layer in spec_fields.get("layers", ()))
        spec = SandboxSpec(**{**spec_fields, "layers": layers})
        facts = self._instance_facts(fields.get("code_device"), fields.get("layer_devices"))
        return _Request(spec, fields["cgroups"], fields["mountpoint"], fields.get("routes", []), facts)

    def _as_seen_here(self, layer: LayerMount) -> LayerMount:
        if layer.image is None and layer.directory in self._bound_layers:
            return dataclasses.replace(layer, directory=self._bound_layers[layer.directory])
        return layer

    def _instance_facts(
        self, code_device: str | None, layer_devices: list[str | None] | None
    ) -> rootfs.HostFacts:
        """The facts of one instance: the zygote's, plus the devices of its code's and layers' images."""
        if self.facts.images.runtime is None or (code_device is None and not layer_devices):
            return self.facts
        images = dataclasses.replace(self.facts.images, task=code_device, layers=tuple(layer_devices or ()))
        return dataclasses.replace(self.facts, images=images)

    # Shells: made when the worker asks (it keeps the pool), each used once.

    def _make_shell(self) -> None:
        """Fork one shell asked for, unless a shell holds a spawn: a fork would copy its descriptors."""
        if not self._to_make or any(s.request_id is not None for s in self._shells.values()):
            return
        name, cgroups = self._to_make.pop(0)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = self._fork()
        except OSError as exc:
            ours.close()
            theirs.close()
            print(f"zygote: cannot fork a shell: {exc!r}", file=sys.stderr)
            self._send({"op": "lost", "shell": name})
            return
        if pid == 0:
            ours.close()
            self._shell(theirs, cgroups)
        theirs.close()
        ours.setblocking(False)
        shell = _Shell(name, cgroups, pid, ours)
        self._shells[name] = shell
        self._selector.register(ours, selectors.EVENT_READ, shell)

    def _shell(self, sock: socket.socket, cgroups: list[str]) -> NoReturn:
        """A shell: prepare what no function decides, wait for one, then become its instance."""
        try:
            self._leave_zygote(keep=[])
            os.setsid()
            # It dies with the zygote; if the zygote is already gone, the recv below sees EOF.
            libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
            enter.join_cgroups(cgroups)  # nothing forked yet: nothing escapes them
            enter.prepare(mountpoint=rootfs.ZYGOTE_MOUNTPOINT, facts=self.facts)
            sock.send(READY)
            message, fds, _, _ = socket.recv_fds(sock, len(SPAWN), MAX_FDS)
        except BaseException:
            _setup_failed()
        if message != SPAWN or len(fds) != MAX_FDS:
            os._exit(0)  # the zygote closed its end: it is stopping
        try:
            request = self._read_request(fds[3])
            if request.cgroups != cgroups:
                raise ValueError("a spawn for other cgroups than the shell's")
            spec = request.spec
            enter.complete_root(spec, mountpoint=rootfs.ZYGOTE_MOUNTPOINT, facts=request.facts)
            sock.send(TAKEN)  # up to here a failure leaves the spawn to the zygote
            sock.close()
            task_root, layer_dirs = _paths(spec, inside=True)
            enter.lock_down(spec, channel=fds[0], routes=request.routes, announced=False)
            enter.finish(spec, task_root=task_root, channel=fds[0], stdout=fds[1], stderr=fds[2])
        except BaseException:
            _setup_failed()
        os._exit(_run_runtime(task_root, layer_dirs))

    def _assign(self, shell: _Shell, request_id: str, fds: list[int]) -> bool:
        """Hand a spawn to a ready shell; False if it cannot take it (the zygote forks instead)."""
        if not shell.ready or shell.request_id is not None:
            return False
        try:
            socket.send_fds(shell.sock, [SPAWN], fds)
        except OSError:  # it died meanwhile
            return False
        shell.request_id, shell.fds = request_id, fds
        shell.deadline = time.monotonic() + TAKE_TIMEOUT
        return True

    def _on_shell(self, shell: _Shell) -> None:
        try:
            message = shell.sock.recv(64)
        except BlockingIOError:
            if not shell.reaped:
                return
            message = b""  # dead, and nothing left to read
        except ConnectionResetError:
            message = b""
        if message == READY and not shell.ready:
            shell.ready = True
            self._send({"op": "ready", "shell": shell.name, "pid": shell.pid})
        elif message == TAKEN and shell.request_id is not None:
            self._forget_shell(shell)
            _close(shell.fds)
            self._children.add(shell.pid)
            self._send({"op": "spawned", "id": shell.request_id, "pid": shell.pid, "shell": True})
        else:  # EOF: it failed or was killed; anything else: it is not behaving
            self._lose_shell(shell)

    def _lose_shell(self, shell: _Shell) -> None:
        """A shell that failed: a spawn it was handed is made by a fork instead, else the worker is told."""
        self._drop_shell(shell)
        if shell.request_id is None:
            self._send({"op": "lost", "shell": shell.name})
            return
        try:
            self._spawn(shell.request_id, shell.fds)
        except Exception as exc:
            self._send({"op": "failed", "id": shell.request_id, "error": repr(exc)})
        finally:
            _close(shell.fds)

    def _drop_shell(self, shell: _Shell) -> None:
        self._forget_shell(shell)
        if not shell.reaped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(shell.pid, signal.SIGKILL)
            self._dropped.add(shell.pid)

    def _forget_shell(self, shell: _Shell) -> None:
        del self._shells[shell.name]
        self._selector.unregister(shell.sock)
        shell.sock.close()

    def _timeout(self) -> float | None:
        """How long the loop may sleep: until a shell's deadline; not at all with a shell to make."""
        deadlines = [s.deadline for s in self._shells.values() if s.request_id is not None]
        if deadlines:
            return max(0.0, min(deadlines) - time.monotonic())
        return 0.0 if self._to_make else None

    def _expire(self) -> None:
        now = time.monotonic()
        for shell in list(self._shells.values()):
            if shell.request_id is not None and now >= shell.deadline:
                self._on_shell(shell)  # a TAKEN that came with the deadline still counts
                if shell.name not in self._shells:
                    continue
                print(f"zygote: shell {shell.pid} did not take its spawn in time", file=sys.stderr)
                self._lose_shell(shell)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self._dropped:
                self._dropped.discard(pid)
                continue
            shell = next((s for s in self._shells.values() if s.pid == pid), None)
            if shell is not None:
                shell.reaped = True
                while shell.name in self._shells:  # a TAKEN it sent before it died still counts
                    self._on_shell(shell)
            if pid in self._children:
                self._children.discard(pid)
                code = os.waitstatus_to_exitcode(status)
                exited = code >= 0
                message = {"op": "exit", "pid": pid, "code": code if exited else None}
                self._send({**message, "signal": None if exited else -code})

    def _shutdown(self) -> None:
        for shell in list(self._shells.values()):
            _close(shell.fds)
            self._drop_shell(shell)
        for pid in self._children | self._dropped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in self._children | self._dropped:
            os.waitpid(pid, 0)


def _paths(spec: SandboxSpec, *, inside: bool) -> tuple[str, dict[str, str]]:
    """The code's directory and each layer's, as the runtime sees them."""
    if not inside:
        return spec.code_dir, {layer.name: layer.directory for layer in spec.layers}
    return TASK_ROOT, {layer.name: f"{LAYERS_ROOT}/{layer.name}" for layer in spec.layers}


def _setup_failed() -> NoReturn:
    traceback.print_exc()
    sys.stderr.flush()
    os._exit(enter.SETUP_FAILED)


def _close(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _run_runtime(task_root: str, layer_dirs: dict[str, str]) -> int:
    try:
        return bootstrap.run(CHANNEL_FD, task_root, layer_dirs)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed pipe: nothing more to say
                stream.flush()


def _alias_packages(facts: rootfs.HostFacts, layer_dirs: dict[str, str]) -> None:
    """Give every package imported so far its sandbox location as a second path.

    A package finds its submodules through its own ``__path__``, not
    ``sys.path`` (``encodings`` looks codecs up lazily; ``json``, ``email``...
    import parts on demand). The host path stays first for the zygote; inside
    the sandbox it does not exist and the lookup falls through to the second.
    Done once here rather than in every child, where touching every module
    would copy hundreds of pages shared with the zygote. A preloaded package
    imported from a runtime layer's host directory (``layer_dirs``: there ->
    /opt/<name>; no images) gets its /opt path the same way.
    """
    for module in list(sys.modules.values()):
        package_path = getattr(module, "__path__", None)
        if isinstance(package_path, list):
            inside = [rootfs.sandbox_path(p, facts) or _layer_path(p, layer_dirs) for p in package_path]
            package_path.extend(p for p in inside if p is not None and p not in package_path)


def _layer_path(path: str, layer_dirs: dict[str, str]) -> str | None:
    for directory, inside in layer_dirs.items():
        if path == directory or path.startswith(directory.rstrip("/") + "/"):
            return inside + path[len(directory.rstrip("/")) :]
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wuzhao.runtimes.python.zygote")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--no-isolate", action="store_true")
    parser.add_argument("--lang-device", help="loop device of the Python runtime's image")
    parser.add_argument("--runtime-device", help="loop device of the wuzhao package's image")
    parser.add_argument(
        "--layer",
        action="append",
        default=[],
        metavar="NAME=SOURCE",
        help="a runtime layer for /opt/<name>, in order: the loop device of its image, or its directory",
    )
    parser.add_argument("--preload", default="", help="comma-separated modules to import before serving")
    parser.add_argument("--from-runtime", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
    os.umask(0o022)
    images = rootfs.Images(lang=args.lang_device, runtime=args.runtime_device)
    layers = [(name, source) for name, _, source in (item.partition("=") for item in args.layer)]
    if images.runtime is not None and not args.from_runtime:
        _exec_from_runtime(images, sys.argv[1:] if argv is None else argv, layers)
    _forget_host()
    control = socket.socket(fileno=args.control_fd)
    if images.runtime is not None:  # mounted where a sandbox has them (_exec_from_runtime)
        layer_dirs = {name: f"{LAYERS_ROOT}/{name}" for name, _ in layers}
        bound = {source: layer_dirs[name] for name, source in layers if not rootfs.is_device(source)}
        host_dirs: dict[str, str] = {}
    else:  # the host's directories, as the instances' binds show them
        layer_dirs = dict(layers)
        bound, host_dirs = {}, {source: f"{LAYERS_ROOT}/{name}" for name, source in layers}
    modules = [name for name in args.preload.split(",") if name]
    if modules:
        try:
            preload.preload(modules, layer_dirs)
        except preload.PreloadError as exc:
            control.send(json.dumps({"op": "broken", "error": str(exc)}).encode())
            return 1
    zygote = Zygote(control, isolate=not args.no_isolate, images=images, bound_layers=bound)
    if not args.no_isolate:
        _alias_packages(zygote.facts, host_dirs)
    # Move everything imported so far out of the collector's reach: a child's
    # collections then never write to (and copy) the pages it shares with us.
    gc.freeze()
    zygote.serve()
    return 0


def _forget_host() -> None:
    """Drop what the interpreter learnt of the host as it started, before any child inherits it."""
    os.environ.pop("LD_LIBRARY_PATH", None)  # for the dynamic loader only (_exec_from_runtime)
    # With no HOME, site took the user's home from the password database:
    # /root. Forgotten, they are worked out again inside from HOME=/tmp.
    site = sys.modules.get("site")
    if site is not None:
        site.USER_BASE = site.USER_SITE = None  # type: ignore[attr-defined]


def _exec_from_runtime(images: rootfs.Images, argv: list[str], layers: list[tuple[str, str]]) -> NoReturn:
    """Enter the zygote's namespace and start again there, with the runtime's Python."""
    facts = dataclasses.replace(rootfs.probe_host(), images=images)
    # The installation's interpreter, the one the image holds (a virtualenv's may be a copy).
    host_executable = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    executable = rootfs.sandbox_path(host_executable, facts)
    if executable is None:
        raise RuntimeError(f"the Python at {host_executable} has no place in the runtime image")
    rootfs.enter_runtime(images, layers)
    # The build's libpython is found through a run path naming its host
    # directory; this makes the loader take the image's copy first.
    env = {"LD_LIBRARY_PATH": f"{rootfs.PYTHON_ROOT}/lib"} if images.lang is not None else {}
    code = _FROM_RUNTIME.format(root=rootfs.RUNTIME_ROOT, module="wuzhao.runtimes.python.zygote")
    os.execve(executable, [executable, "-I", "-c", code, *argv, "--from-runtime"], env)


if __name__ == "__main__":
    sys.exit(main())
