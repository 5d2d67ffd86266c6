"""The sandbox's root filesystem: a pure mount plan and the executor that applies it.

:func:`plan` turns a spec and the facts of the host (:class:`HostFacts`) into a
list of small operations, with no I/O, so the layout is table-tested. The root
is a small tmpfs holding only mountpoints, symlinks and a minimal ``/etc``;
everything else is a read-only image, a read-only bind or a capped tmpfs:

    /usr            host /usr, read-only (Debian merged-usr: /bin, /lib... are symlinks)
    /var/lang       the Python installation, read-only (as on Lambda)
    /var/runtime    the platform's runtime package the zygote runs from, read-only
    /var/task       the function's code, read-only
    /opt            a directory of the root (so read-only), holding each layer of
                    ``spec.layers`` at /opt/<name>, read-only, in order
    /etc            passwd, group, hosts, hostname, nsswitch.conf written here
                    (resolv.conf too, naming slirp's DNS, for network "outbound");
                    ssl certs, ld.so.cache bound read-only; localtime a symlink
    /tmp            tmpfs capped at ``spec.tmp_size_mb`` (the only writable place)
    /dev            tiny tmpfs, read-only: null zero full random urandom, fd links,
                    /dev/shm a tiny writable tmpfs
    /proc           a fresh proc of the instance's pid namespace (no /sys at all)

:func:`prepare` and :func:`seal` run inside the child's new mount namespace
(as root, before the identity drop): the first makes the whole tree private,
so nothing propagates to the host, and mounts the tmpfs root on
``mountpoint`` holding the ops of :func:`base_plan`, which depend on nothing
of the function; the second adds those of :func:`instance_plan` (the code,
the layers, /etc/hosts and /etc/hostname, resolv.conf, /tmp), pivot_roots
into the root, detaches the old one and seals ``/`` read-only. A direct child
runs both back to back; a shell runs :func:`prepare` before it is given a
function, :func:`seal` once it is.

/var/lang, /var/runtime, /var/task and the layers are filesystem images
(``wuzhao.sandbox.images``) mounted from loop devices (:class:`Images`), so
``/proc/self/mountinfo`` inside shows ``/`` and ``/dev/loopN`` for them, not
a host path: a bind shows its source's path within its filesystem. The zygote
runs from the same images at the same paths (:func:`enter_runtime`), so
nothing it imported or mapped before the fork names a host path either. On a
host without loop devices they are binds of the host directories (the
launcher warns), and /var/runtime is absent.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from wuzhao.sandbox import libc, network
from wuzhao.sandbox.api import LAYERS_ROOT, TASK_ROOT, SandboxSpec

PYTHON_ROOT = "/var/lang"  # where a Python installed outside /usr appears inside
RUNTIME_ROOT = "/var/runtime"  # where the image of the wuzhao package appears (zygote and sandbox)
IMAGE_FSTYPE = "erofs"
ZYGOTE_VAR = "size=64k,nr_inodes=64,mode=0755"  # the tmpfs over /var in the zygote's namespace
ZYGOTE_OPT = ZYGOTE_VAR  # and over /opt, holding the runtime layers' mountpoints
ZYGOTE_MOUNTPOINT = "/var/sandbox-root"  # where, in that namespace, children build their root
ROOT_TMPFS = "size=1m,nr_inodes=4096,mode=0755"
DEV_SIZE = 64 * 1024
SHM_SIZE = 1024 * 1024
MB = 1024 * 1024

# Top-level host entries the root mirrors: a symlink is recreated (merged-usr),
# a real directory is bound read-only.
USR_ENTRIES = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# Host files and directories under /etc bound read-only when present. Never
# the whole of /etc/ssl: /etc/ssl/private holds the host's keys.
ETC_BINDS = ("/etc/ssl/certs", "/etc/ssl/openssl.cnf", "/etc/ld.so.cache")
DEVICES = ("null", "zero", "full", "random", "urandom")
DEV_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
}


@dataclass(frozen=True)
class Images:
    """Block devices (read-only images, attached by the launcher) mounted instead of binds."""

    lang: str | None = None  # the Python installation, at PYTHON_ROOT
    runtime: str | None = None  # the wuzhao package, at RUNTIME_ROOT
    task: str | None = None  # the function's code, at TASK_ROOT (one per instance)
    # One per ``spec.layers`` entry, in its order, at LAYERS_ROOT/<name>; None: bind its directory.
    layers: tuple[str | None, ...] = ()


@dataclass(frozen=True)
class HostFacts:
    """What the plan needs to know about the host, gathered once by :func:`probe_host`.

    ``images`` are the zygote's; it adds each instance's code device to them.
    """

    python_home: str  # real path of sys.base_prefix
    python_executable: str  # real path of sys.executable (a venv's python is a symlink)
    usr_links: tuple[tuple[str, str], ...]  # top-level symlinks: ("bin", "usr/bin")
    usr_dirs: tuple[str, ...]  # top-level library directories that are real dirs
    etc_binds: tuple[str, ...]  # the ETC_BINDS present on the host
    localtime: str | None  # target of the /etc/localtime symlink
    images: Images = Images()


@dataclass(frozen=True)
class Bind:
    source: str  # host path
    target: str  # path inside the sandbox
    writable: bool = False
    nodev: bool = True


@dataclass(frozen=True)
class Tmpfs:
    target: str
    size_bytes: int
    mode: int
    noexec: bool = True


@dataclass(frozen=True)
class ReadOnly:
    """Remount an already populated mount read-only."""

    target: str
    noexec: bool = True


@dataclass(frozen=True)
class Proc:
    target: str


@dataclass(frozen=True)
class Symlink:
    target: str
    points_to: str


@dataclass(frozen=True)
class File:
    target: str
    content: str


@dataclass(frozen=True)
class Image:
    """Mount a read-only filesystem image from its (loop) block device."""

    device: str
    target: str


@dataclass(frozen=True)
class Directory:
    """An empty directory of the root (read-only once the root is sealed)."""

    target: str


Op = Bind | Tmpfs | ReadOnly | Proc | Symlink | File | Image | Directory


def python_inside(facts: HostFacts) -> str:
    """Where the host's Python installation appears inside the sandbox."""
    if _under(facts.python_home, "/usr"):
        return facts.python_home
    return PYTHON_ROOT


def sandbox_path(host_path: str, facts: HostFacts) -> str | None:
    """The path inside the sandbox of a host path of the Python installation."""
    if _under(host_path, facts.python_home):
        return python_inside(facts) + host_path[len(facts.python_home) :]
    if _under(host_path, RUNTIME_ROOT):  # an image at the same path in the zygote and inside
        return host_path if facts.images.runtime is not None else None
    if _under(host_path, "/usr"):
        return host_path
    return None


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _etc_files() -> list[File]:
    return [
        File(
            "/etc/passwd",
            "root:x:0:0:root:/tmp:/usr/sbin/nologin\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        ),
        File("/etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        File("/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n"),
    ]


def _host_files(hostname: str) -> list[File]:
    return [
        File(
            "/etc/hosts",
            f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n",
        ),
        File("/etc/hostname", f"{hostname}\n"),
    ]


def plan(spec: SandboxSpec, facts: HostFacts) -> list[Op]:
    """The mounts, in order, that build the sandbox root for ``spec``."""
    return base_plan(facts) + instance_plan(spec, facts)


def base_plan(facts: HostFacts) -> list[Op]:
    """The part of every root of this zygote: nothing in it depends on the function.

    A shell (``wuzhao.runtimes.python.zygote``) builds it before it knows which
    function it will serve; :func:`instance_plan` adds the rest.
    """
    ops: list[Op] = [Bind("/usr", "/usr")]
    ops += [Symlink(f"/{name}", target) for name, target in facts.usr_links]
    ops += [Bind(f"/{name}", f"/{name}") for name in facts.usr_dirs]
    images = facts.images
    if not _under(facts.python_home, "/usr"):
        ops.append(Image(images.lang, PYTHON_ROOT) if images.lang else Bind(facts.python_home, PYTHON_ROOT))
    if images.runtime:
        ops.append(Image(images.runtime, RUNTIME_ROOT))
    ops.append(Directory(LAYERS_ROOT))
    ops += _etc_files()
    ops += [Bind(path, path) for path in facts.etc_binds]
    if facts.localtime is not None:
        ops.append(Symlink("/etc/localtime", facts.localtime))
    ops.append(Tmpfs("/dev", DEV_SIZE, 0o755))
    ops += [Bind(f"/dev/{name}", f"/dev/{name}", writable=True, nodev=False) for name in DEVICES]
    ops += [Symlink(f"/dev/{name}", target) for name, target in DEV_LINKS.items()]
    ops.append(Tmpfs("/dev/shm", SHM_SIZE, 0o1777))
    ops.append(ReadOnly("/dev"))
    ops.append(Proc("/proc"))
    return ops


def instance_plan(spec: SandboxSpec, facts: HostFacts) -> list[Op]:
    """The function's own part of its root: its code, its layers, its names, a fresh /tmp."""
    images = facts.images
    ops: list[Op] = [Image(images.task, TASK_ROOT) if images.task else Bind(spec.code_dir, TASK_ROOT)]
    ops += _layers(spec, images)
    ops += _host_files(spec.hostname)
    if spec.network == "outbound":
        ops.append(File("/etc/resolv.conf", network.RESOLV_CONF))
    ops.append(Tmpfs("/tmp", spec.tmp_size_mb * MB, 0o1777, noexec=False))
    return ops


def _layers(spec: SandboxSpec, images: Images) -> list[Op]:
    """Each layer under LAYERS_ROOT (a directory of the base), from its device when it has one."""
    ops: list[Op] = []
    for index, layer in enumerate(spec.layers):
        target = f"{LAYERS_ROOT}/{layer.name}"
        device = images.layers[index] if index < len(images.layers) else None
        ops.append(Image(device, target) if device else Bind(layer.directory, target))
    return ops


def probe_host() -> HostFacts:
    """Gather :class:`HostFacts` (done once, in the zygote, before any fork)."""
    links: list[tuple[str, str]] = []
    dirs: list[str] = []
    for name in USR_ENTRIES:
        path = f"/{name}"
        if os.path.islink(path):
            links.append((name, os.readlink(path)))
        elif os.path.isdir(path):
            dirs.append(name)
    localtime = os.readlink("/etc/localtime") if os.path.islink("/etc/localtime") else None
    return HostFacts(
        python_home=os.path.realpath(sys.base_prefix),
        python_executable=os.path.realpath(sys.executable),
        usr_links=tuple(links),
        usr_dirs=tuple(dirs),
        etc_binds=tuple(p for p in ETC_BINDS if os.path.exists(p)),
        localtime=localtime,
    )


def _flags(*, readonly: bool = False, nodev: bool = True, noexec: bool = False) -> int:
    flags = libc.MS_NOSUID
    if readonly:
        flags |= libc.MS_RDONLY
    if nodev:
        flags |= libc.MS_NODEV
    if noexec:
        flags |= libc.MS_NOEXEC
    return flags


def _mountpoint(path: str, *, is_dir: bool) -> None:
    if is_dir:
        os.makedirs(path, 0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))


def _apply(op: Op, root: str) -> None:
    path = root + op.target
    if isinstance(op, Bind):
        _mountpoint(path, is_dir=os.path.isdir(op.source))
        libc.mount(op.source, path, None, libc.MS_BIND)
        # A bind takes the source's per-mount flags; only a remount sets ours.
        flags = _flags(readonly=not op.writable, nodev=op.nodev, noexec=op.writable)
        libc.mount(None, path, None, libc.MS_REMOUNT | libc.MS_BIND | flags)
    elif isinstance(op, Tmpfs):
        _mountpoint(path, is_dir=True)
        data = f"size={op.size_bytes},mode={op.mode:o}"
        libc.mount("tmpfs", path, "tmpfs", _flags(noexec=op.noexec), data)
    elif isinstance(op, ReadOnly):
        flags = libc.MS_REMOUNT | libc.MS_BIND | _flags(readonly=True, noexec=op.noexec)
        libc.mount(None, path, None, flags)
    elif isinstance(op, Proc):
        _mountpoint(path, is_dir=True)
        libc.mount("proc", path, "proc", _flags(noexec=True))
    elif isinstance(op, Image):
        _mountpoint(path, is_dir=True)
        libc.mount(op.device, path, IMAGE_FSTYPE, _flags(readonly=True))
    elif isinstance(op, Symlink):
        os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
        os.symlink(op.points_to, path)
    elif isinstance(op, Directory):
        _mountpoint(path, is_dir=True)
    else:
        os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
        try:
            os.write(fd, op.content.encode())
        finally:
            os.close(fd)


def prepare(ops: Sequence[Op], mountpoint: str) -> None:
    """Start the root on ``mountpoint``: a fresh tmpfs holding ``ops``, not yet the process's ``/``.

    Must run in a fresh mount namespace of its own: every mount here would
    otherwise land on the host.
    """
    libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
    libc.mount("tmpfs", mountpoint, "tmpfs", _flags(noexec=True), ROOT_TMPFS)
    for op in ops:
        _apply(op, mountpoint)


def seal(ops: Sequence[Op], mountpoint: str) -> None:
    """Add ``ops`` to the root :func:`prepare` started, make it ``/`` and read-only."""
    for op in ops:
        _apply(op, mountpoint)
    # pivot_root(".", ".") stacks the old root on top of the new one; detaching
    # it leaves the new root alone without needing a directory for the old one.
    os.chdir(mountpoint)
    libc.pivot_root(".", ".")
    libc.umount2(".", libc.MNT_DETACH)
    os.chdir("/")
    flags = libc.MS_REMOUNT | libc.MS_BIND | _flags(readonly=True, noexec=True)
    libc.mount(None, "/", None, flags)


def enter_runtime(images: Images, layers: Sequence[tuple[str, str]] = ()) -> None:
    """Give the zygote, before it execs the runtime's Python, the sandbox's view of the runtime.

    In a mount namespace of its own (private: nothing reaches the host), /var
    becomes a tiny tmpfs holding the images at PYTHON_ROOT and RUNTIME_ROOT
    and ZYGOTE_MOUNTPOINT; the host's /var is hidden from the zygote only.
    Executed from there, the interpreter, its libraries and every module the
    zygote imports have the paths they have inside a sandbox.

    ``layers`` (name, source), the operator's runtime layers (a preloading
    zygote imports from them), are mounted at LAYERS_ROOT/<name> the same
    way, over a tmpfs hiding the host's /opt: a source is the loop device of
    the layer's image, or (its image could not be made) its host directory,
    bound.
    """
    libc.unshare(libc.CLONE_NEWNS)
    libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
    # A directory to bind may lie under /var or /opt, both hidden below: held
    # open, it is bound through its descriptor.
    sources = [(name, _hold(source)) for name, source in layers]
    libc.mount("tmpfs", "/var", "tmpfs", _flags(noexec=True), ZYGOTE_VAR)
    for device, target in ((images.lang, PYTHON_ROOT), (images.runtime, RUNTIME_ROOT)):
        if device is not None:
            _apply(Image(device, target), "")
    os.mkdir(ZYGOTE_MOUNTPOINT, 0o755)
    if sources:
        os.makedirs(LAYERS_ROOT, 0o755, exist_ok=True)  # every FHS host has it; else an empty one
        libc.mount("tmpfs", LAYERS_ROOT, "tmpfs", _flags(noexec=True), ZYGOTE_OPT)
    for name, source in sources:
        target = f"{LAYERS_ROOT}/{name}"
        if isinstance(source, int):
            _apply(Bind(f"/proc/self/fd/{source}", target), "")
            os.close(source)
        else:
            _apply(Image(source, target), "")


def _hold(source: str) -> str | int:
    """A block device as it is; a directory as a descriptor that outlives mounts over its path."""
    if is_device(source):
        return source
    return os.open(source, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def is_device(source: str) -> bool:
    """Whether a layer's source is a block device (its image's loop device), not a directory."""
    try:
        return stat.S_ISBLK(os.stat(source).st_mode)
    except OSError:  # a directory that the zygote's namespace hides (under /opt or /var)
        return False
