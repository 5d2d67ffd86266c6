"""The Python zygote: a pre-initialised root process that forks every instance.

Started by ``wuzhao.sandbox.zygote_launcher`` by exec, with an empty
environment and no descriptor but its control socket (stdin and stdout are
/dev/null; stderr is the server's, for the zygote's own failures and for
sandbox setup failures). It imports everything the sandbox entry and the
runtime need, then forks one child per spawn request. This is the only module
that forks; the child's duties are handled in :meth:`Zygote._child`: signal
handlers and the wakeup fd reset, the control socket closed at once (the
worker must see EOF when the zygote dies, not when its last child ends),
``random`` reseeded (``random`` registers that at-fork hook itself), and
``os._exit`` on every path, so a child never returns into the loop. All
children share the zygote's hash seed: that is the price of forking.

Control protocol, on a SOCK_SEQPACKET socket, one JSON object per message:

    worker -> zygote  {"op": "spawn", "id", "spec": {SandboxSpec fields},
                       "cgroups": [cgroup.procs paths], "mountpoint": for the root,
                       "code_device", "layer_devices": loop devices of its images,
                       "routes": [CIDRs unreachable for an outbound instance]}
                      with SCM_RIGHTS [channel, stdout write end, stderr write end]
    zygote -> worker  {"op": "hello", "pid"}            once, when ready
                      {"op": "broken", "error"}         instead, when it cannot preload (then exits)
                      {"op": "spawned", "id", "pid"}    host pid of the instance
                      {"op": "failed", "id", "error"}   no process was made
                      {"op": "exit", "pid", "code", "signal"}  always after "spawned"

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
import traceback
from typing import Any, NoReturn

from wuzhao.runtimes.python import bootstrap, preload
from wuzhao.sandbox import enter, libc, rootfs
from wuzhao.sandbox.api import CHANNEL_FD, LAYERS_ROOT, TASK_ROOT, LayerMount, SandboxSpec

MAX_REQUEST = 256 * 1024
# The zygote's second start, by the runtime's Python, from the runtime's images.
_FROM_RUNTIME = "import sys; sys.path.insert(0, {root!r}); from {module} import main; sys.exit(main())"


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
        self._children: set[int] = set()
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

    def serve(self) -> None:
        self._send({"op": "hello", "pid": os.getpid()})
        while True:
            for key, _ in self._selector.select():
                if key.fileobj is self._control:
                    if not self._handle_request():
                        return self._shutdown()
                else:
                    self._drain_wakeups()
                    self._reap()

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _send(self, message: dict[str, Any]) -> None:
        self._control.send(json.dumps(message).encode())

    def _handle_request(self) -> bool:
        data, fds, _, _ = socket.recv_fds(self._control, MAX_REQUEST, 3)
        if not data:
            return False
        request: dict[str, Any] = {}
        try:
            request = json.loads(data)
            fields = request["spec"]
            layers = tuple(self._as_seen_here(LayerMount(**layer)) for layer in fields.get("layers", ()))
            spec = SandboxSpec(**{**fields, "layers": layers})
            if len(fds) != 3:
                raise ValueError(f"expected 3 descriptors, got {len(fds)}")
            pid = self._fork()
            if pid == 0:
                # The child's copy only.
                self.facts = self._instance_facts(request.get("code_device"), request.get("layer_devices"))
                self._child(spec, fds, request["cgroups"], request["mountpoint"], request.get("routes", []))
            self._children.add(pid)
            self._send({"op": "spawned", "id": request["id"], "pid": pid})
        except Exception as exc:
            self._send({"op": "failed", "id": request.get("id"), "error": repr(exc)})
        finally:
            for fd in fds:
                os.close(fd)
        return True

    def _as_seen_here(self, layer: LayerMount) -> LayerMount:
        if layer.image is None and layer.directory in self._bound_layers:
            return dataclasses.replace(layer, directory=self._bound_layers[layer.directory])
        return layer

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

    def _child(
        self, spec: SandboxSpec, fds: list[int], cgroups: list[str], mountpoint: str, routes: list[str]
    ) -> NoReturn:
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self._control.close()
            # Its own process group: the worker's killpg reaches the whole tree
            # even without a pid namespace (isolate=False).
            os.setsid()
            enter.join_cgroups(cgroups)
            task_root = spec.code_dir
            layer_dirs = {layer.name: layer.directory for layer in spec.layers}
            if self._isolate:
                enter.isolate(spec, mountpoint=mountpoint, facts=self.facts, channel=fds[0], routes=routes)
                task_root = TASK_ROOT
                layer_dirs = {layer.name: f"{LAYERS_ROOT}/{layer.name}" for layer in spec.layers}
            enter.finish(spec, task_root=task_root, channel=fds[0], stdout=fds[1], stderr=fds[2])
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(enter.SETUP_FAILED)
        os._exit(_run_runtime(task_root, layer_dirs))

    def _instance_facts(
        self, code_device: str | None, layer_devices: list[str | None] | None
    ) -> rootfs.HostFacts:
        """The facts of one instance: the zygote's, plus the devices of its code's and layers' images."""
        if self.facts.images.runtime is None or (code_device is None and not layer_devices):
            return self.facts
        images = dataclasses.replace(self.facts.images, task=code_device, layers=tuple(layer_devices or ()))
        return dataclasses.replace(self.facts, images=images)

    def _reap(self) -> None:
        while self._children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            self._children.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            exited = code >= 0
            message = {"op": "exit", "pid": pid, "code": code if exited else None}
            self._send({**message, "signal": None if exited else -code})

    def _shutdown(self) -> None:
        for pid in self._children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in self._children:
            os.waitpid(pid, 0)


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
