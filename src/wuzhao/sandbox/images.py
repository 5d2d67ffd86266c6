"""Read-only filesystem images (EROFS) that sandboxes mount instead of host directories.

A bind mount shows, in ``/proc/self/mountinfo``, its source path inside its
filesystem: the code at ``/var/task`` would name the server's data dir, the
Python at ``/var/lang`` its installation's host path. Only the root of a
filesystem shows ``/``. So every read-only tree a sandbox sees is an image of
its own, attached to a loop device once per server (``wuzhao.sandbox.loop``)
and mounted from ``/dev/loopN`` by each instance:

    /var/lang     the Python build: the executable, libpython, the standard
                  library without ``STDLIB_EXCLUDED`` (one image per build,
                  cached machine-wide)
    /var/runtime  the ``wuzhao`` package the zygote and the runtime run from
                  (cached machine-wide, keyed by its content)
    /var/task     a function's code: ``<data>/images/<sha256>.erofs``
    /opt/<name>   a function's layer: its package's image, like the code; an
                  operator's runtime layer (a host directory): an image of
                  it made when the server starts, cached machine-wide and
                  keyed by the tree's metadata (:func:`layer_image`), so a
                  restart reuses it and an in-place upgrade of the directory
                  makes a new one at the next start

EROFS rather than squashfs: mounting it costs ~0.05 ms against ~0.5 ms
(squashfs sets up a decompressor per superblock), it builds as fast, and
uncompressed it reads as fast as the host's disk. Images are written under a
temporary name and renamed into place; the machine-wide ones are built under
a lock file, so two servers starting at once build each image once.
"""

from __future__ import annotations

import asyncio
import compileall
import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import os
import platform
import py_compile
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from wuzhao.errors import SandboxUnavailable
from wuzhao.sandbox import loop
from wuzhao.sandbox.api import LayerMount
from wuzhao.sandbox.rootfs import PYTHON_ROOT, RUNTIME_ROOT, Images

log = logging.getLogger(__name__)

FSTYPE = "erofs"
MKFS = "mkfs.erofs"
SUFFIX = ".erofs"
FORMAT = 2  # bump when what goes into an image changes: every cache key changes with it
DEFAULT_CACHE_DIR = Path("/var/cache/wuzhao")
# Top-level parts of the standard library no function needs (and the
# installation's third-party packages, which are the server's, not the runtime's).
STDLIB_EXCLUDED = frozenset(
    {"site-packages", "dist-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip"}
)
PACKAGE = "wuzhao"
_SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUILD_TIMEOUT = 600.0
DETACH_TIMEOUT = 5.0  # the kernel frees a device once its last mount is gone, in microseconds
KEEP_CACHED = 4  # images of older builds of the runtime kept in the cache, per kind


class ImageError(Exception):
    """An image could not be built (no mkfs.erofs, or it failed)."""


def mkfs() -> str | None:
    """Path of ``mkfs.erofs`` (Debian package erofs-utils), None when it is not installed."""
    return shutil.which(MKFS) or shutil.which(MKFS, path=_SEARCH_PATH)


def code_image_name(sha256: str) -> str:
    """File name of the image of the code package ``sha256``."""
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError(f"not a sha256: {sha256!r}")
    return f"{sha256}{SUFFIX}"


def build(source: Path, target: Path) -> Path:
    """Make an image of the directory ``source`` at ``target``, atomically."""
    tool = mkfs()
    if tool is None:
        raise ImageError(f"{MKFS} is not installed (Debian package erofs-utils)")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    os.close(fd)
    try:
        # All files root's, no extended attributes (no file capabilities, no
        # SELinux labels of the host), modification times kept: .pyc files
        # are checked against their source's.
        command = [tool, "--quiet", "--all-root", "--preserve-mtime", "-x-1", tmp, str(source)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
        if result.returncode != 0:
            raise ImageError(f"{MKFS} failed for {source}: {(result.stderr or result.stdout).strip()}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def cached(
    cache: Path, name: str, stage: Callable[[Path], None] | None = None, *, source: Path | None = None
) -> Path:
    """The image ``cache/name``, made once: ``stage`` fills a directory it is built from
    (or it is built straight from the directory ``source``).

    Safe when several servers start at once: the first builds it under a
    lock file, the others wait for it and find it done.
    """
    target = cache / name
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    cache.chmod(0o755)
    with _locked(cache / f".{name}.lock"):
        if target.is_file():
            return target
        for leftover in cache.glob(f".{name}-*"):  # of a build that crashed; ours is the lock
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        if source is not None:
            build(source, target)
        else:
            assert stage is not None
            staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache))
            try:
                staging.chmod(0o755)
                stage(staging)
                build(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        _prune(cache, name)
    return target


def _prune(cache: Path, name: str) -> None:
    """Remove all but the newest KEEP_CACHED images of the same kind as ``name``.

    A server still running from a removed image keeps it: its loop device
    holds the file.
    """
    kind = name.rsplit("-", 1)[0] + "-"
    siblings = [p for p in cache.glob(f"{kind}*{SUFFIX}") if p.name.rsplit("-", 1)[0] + "-" == kind]
    siblings.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in siblings[KEEP_CACHED:]:
        with contextlib.suppress(OSError):
            old.unlink()
            Path(cache, f".{old.name}.lock").unlink()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


# The Python runtime at /var/lang


@dataclass(frozen=True)
class PythonBuild:
    """The parts of a Python installation the runtime image holds, relative to ``home``."""

    home: str  # real path of sys.base_prefix
    version: str  # "3.11.7"
    executable: str  # "bin/python3.11"
    libraries: tuple[str, ...]  # ("lib/libpython3.11.so.1.0",) for a shared build
    stdlib: str  # "lib/python3.11"


def python_build() -> PythonBuild | None:
    """This interpreter's build; None when it lives under /usr (the sandbox binds /usr)."""
    home = os.path.realpath(sys.base_prefix)
    if home == "/usr" or home.startswith("/usr/"):
        return None
    executable = os.path.relpath(base_executable(), home)
    stdlib = os.path.relpath(os.path.realpath(sysconfig.get_path("stdlib")), home)
    if executable.startswith("..") or stdlib.startswith(".."):
        raise ImageError(f"the Python executable or standard library is not under {home}")
    libraries: list[str] = []
    soname = sysconfig.get_config_var("INSTSONAME")
    if sysconfig.get_config_var("Py_ENABLE_SHARED") and soname:
        for libdir in (sys.platlibdir, "lib"):
            candidate = os.path.join(libdir, str(soname))
            if os.path.isfile(os.path.join(home, candidate)):
                libraries.append(candidate)
                break
    return PythonBuild(home, platform.python_version(), executable, tuple(libraries), stdlib)


def base_executable() -> str:
    """Real path of the installation's interpreter (a virtualenv's python may be a copy of it)."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def stdlib_keeps(relative: str) -> bool:
    """Whether a file of the standard library (path relative to it) goes into the image."""
    parts = relative.split("/")
    if parts[0] in STDLIB_EXCLUDED:
        return False
    return not relative.endswith(".a")  # config-3.x/libpython3.x.a: only for linking


def python_files(build: PythonBuild) -> list[str]:
    """Every file and symlink the image holds, relative to ``build.home``, sorted."""
    files = [build.executable, *build.libraries]
    top = os.path.join(build.home, build.stdlib)
    for dirpath, dirnames, filenames in os.walk(top):
        relative_dir = os.path.relpath(dirpath, top)
        prefix = "" if relative_dir == "." else relative_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if stdlib_keeps(prefix + d + "/"))
        for name in filenames:
            if stdlib_keeps(prefix + name):
                files.append(f"{build.stdlib}/{prefix}{name}")
    return sorted(files)


# Text files of the build that record where it was installed (sysconfig reads the first).
_RECORDS_PREFIX = re.compile(
    r"(^|/)_sysconfigdata_[^/]*\.py$|/config-[^/]*/(Makefile|python-config\.py|Setup[^/]*)$"
)


def records_prefix(relative: str) -> bool:
    """Whether the image's copy of a file gets the build's host prefix replaced by /var/lang."""
    return _RECORDS_PREFIX.search(relative) is not None


def relocate(text: str, home: str) -> str:
    """``text`` with the installation's host path replaced by where the sandbox sees it."""
    return re.sub(re.escape(home.rstrip("/")) + r"(?=[/\s'\":]|$)", PYTHON_ROOT, text, flags=re.MULTILINE)


def python_image_name(build: PythonBuild, files: list[str]) -> str:
    """``python-<version>-<digest>.erofs``: the digest covers every file's size and mtime."""
    digest = hashlib.sha256(f"{FORMAT}\0{build}\0".encode())
    for relative in files:
        path = os.path.join(build.home, relative)
        info = os.lstat(path)
        target = os.readlink(path) if os.path.islink(path) else ""
        digest.update(f"{relative}\0{info.st_size}\0{info.st_mtime_ns}\0{info.st_mode}\0{target}\0".encode())
    return f"python-{build.version}-{digest.hexdigest()[:16]}{SUFFIX}"


def python_image(cache: Path = DEFAULT_CACHE_DIR) -> Path | None:
    """The image of this interpreter for /var/lang, built once per build; None under /usr."""
    build = python_build()
    if build is None:
        return None
    files = python_files(build)

    def stage(staging: Path) -> None:
        for relative in files:
            _link_or_copy(Path(build.home, relative), staging / relative)
        # sysconfig.get_config_var("prefix") and the like must not name the host's path.
        for relative in files:
            if records_prefix(relative):
                _relocate_copy(staging / relative, build.home, f"{PYTHON_ROOT}/{relative}")

    return cached(cache, python_image_name(build, files), stage)


def _relocate_copy(path: Path, home: str, inside: str) -> None:
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    path.unlink()  # a hard link to the installation's own file: never write through it
    path.write_bytes(relocate(text, home).encode("utf-8", "surrogateescape"))
    if path.suffix == ".py":
        cache = path.parent / "__pycache__"
        for stale in cache.glob(f"{path.stem}.*.pyc"):
            stale.unlink()
        py_compile.compile(
            str(path), cfile=importlib.util.cache_from_source(str(path)), dfile=inside, doraise=True
        )


# The platform's runtime package at /var/runtime


def package_files(root: Path) -> dict[str, bytes]:
    """The package's Python sources, by path relative to its parent directory."""
    files = {}
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" not in path.parts:
            files[path.relative_to(root.parent).as_posix()] = path.read_bytes()
    return files


def package_image_name(files: dict[str, bytes], version: str) -> str:
    digest = hashlib.sha256(f"{FORMAT}\0{importlib.util.MAGIC_NUMBER.hex()}\0".encode())
    for relative, content in sorted(files.items()):
        digest.update(f"{relative}\0{len(content)}\0".encode())
        digest.update(content)
    return f"{PACKAGE}-{version}-{digest.hexdigest()[:16]}{SUFFIX}"


def package_image(cache: Path = DEFAULT_CACHE_DIR) -> Path:
    """The image of the installed ``wuzhao`` package (sources and bytecode) for /var/runtime."""
    import wuzhao

    root = Path(wuzhao.__file__).resolve().parent
    files = package_files(root)

    def stage(staging: Path) -> None:
        for relative in files:
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            shutil.copy2(root.parent / relative, target)  # mtimes kept: the .pyc records them
            target.chmod(0o644)
        # Tracebacks name the files where the sandbox sees them.
        ok = compileall.compile_dir(str(staging), ddir=RUNTIME_ROOT, quiet=2, workers=1)
        if not ok:
            raise ImageError(f"cannot compile the {PACKAGE} package")
        for directory, _, _ in os.walk(staging):
            os.chmod(directory, 0o755)

    return cached(cache, package_image_name(files, wuzhao.__version__), stage)


# An operator's runtime layer (a host directory) at /opt/<name>


def tree_key(source: Path) -> tuple[str, list[str]]:
    """A digest of a directory tree, and its entries a sandbox cannot read.

    Only metadata, never contents, so a start with an unchanged tree costs a
    stat per entry: each entry's path, type and mode, size, inode, mtime and
    ctime. Any in-place change (``pip install --upgrade --target``, a package
    manager, ``rsync -a`` keeping mtimes) changes one of them: nothing sets a
    ctime back.
    """
    digest = hashlib.sha256(f"{FORMAT}\0".encode())
    unreadable: list[str] = []
    entries = [str(source)]  # the root itself too: its mode becomes /opt/<name>'s
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames.sort()
        entries += [os.path.join(dirpath, name) for name in sorted([*dirnames, *filenames])]
    for path in entries:
        relative = os.path.relpath(path, source)
        info = os.lstat(path)
        target = os.readlink(path) if stat.S_ISLNK(info.st_mode) else ""
        digest.update(
            f"{relative}\0{info.st_mode}\0{info.st_size}\0{info.st_ino}\0"
            f"{info.st_mtime_ns}\0{info.st_ctime_ns}\0{target}\0".encode()
        )
        # Inside, the files are root's (--all-root) and root is not the sandbox's uid.
        needed = 0o005 if stat.S_ISDIR(info.st_mode) else 0o004
        if not stat.S_ISLNK(info.st_mode) and info.st_mode & needed != needed:
            unreadable.append(relative)
    return digest.hexdigest(), unreadable


def layer_image_name(name: str, directory: str, key: str) -> str:
    """``layer-<name>-<digest>.erofs``: the digest covers the directory's path and its tree's key.

    All images of one layer name are one kind for pruning, whatever their
    directory, so a machine keeps at most KEEP_CACHED of them.
    """
    digest = hashlib.sha256(os.fsencode(directory) + b"\0" + key.encode()).hexdigest()[:16]
    return f"layer-{name}-{digest}{SUFFIX}"


def layer_image(name: str, directory: str, cache: Path = DEFAULT_CACHE_DIR) -> Path:
    """The image of a runtime layer's host directory, built again only when the tree changed."""
    source = Path(os.path.realpath(directory))
    if not source.is_dir():
        raise ImageError(f"runtime layer {name}: {directory} is not a directory")
    key, unreadable = tree_key(source)
    if unreadable:
        log.warning(
            "runtime layer %s: %d entries of %s are not readable by others, so not by functions "
            "either (e.g. %s)",
            name,
            len(unreadable),
            directory,
            unreadable[0],
        )
    return cached(cache, layer_image_name(name, directory, key), source=source)


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_symlink():
        target.symlink_to(os.readlink(source))
        return
    try:
        os.link(source, target)  # the image is copied from it; nothing writes either file
    except OSError:
        shutil.copy2(source, target)


# What one server has attached


def unavailable() -> str | None:
    """None when this host can mount images in sandboxes, else why not."""
    if mkfs() is None:
        return f"{MKFS} is not installed (Debian package erofs-utils)"
    why = loop.available()
    if why is None and not _kernel_has(FSTYPE):
        why = f"the kernel has no {FSTYPE} filesystem"
    return why


def _kernel_has(fstype: str) -> bool:
    try:
        lines = Path("/proc/filesystems").read_text().splitlines()
    except OSError:
        return False
    return any(line.split()[-1] == fstype for line in lines if line.strip())


def warn_layer_fallback(layer: LayerMount, reason: str) -> None:
    log.warning(
        "SANDBOXES SHOW HOST PATHS: runtime layer %s is bound from %s because %s: /proc/self/mountinfo "
        "inside every instance names that directory.",
        layer.name,
        layer.directory,
        reason,
    )


def warn_fallback(reason: str) -> None:
    log.warning(
        "SANDBOXES SHOW HOST PATHS: %s. Instances get bind mounts of the host's directories instead of "
        "read-only images: /proc/self/mountinfo inside them names the server's data dir and the Python "
        "installation's path. Install erofs-utils (scripts/install) on a host with loop devices "
        "(/dev/loop-control) to close this.",
        reason,
    )


class Attached:
    """The images one launcher has on loop devices, each attached once and held until ``close``.

    The runtime's (Python and the wuzhao package) at start, each code
    package's at its first instance. ``active`` is False on a host that cannot
    mount images: then every mount is a bind, as :func:`warn_fallback` says.
    """

    def __init__(self, cache: Path = DEFAULT_CACHE_DIR) -> None:
        self._cache = cache
        self.runtime = Images()  # the zygote's devices; runtime is None when not active
        self._devices: dict[Path, loop.LoopDevice] = {}  # by image path
        self._runtime_layers: dict[str, str] = {}  # the runtime layers' devices, by host directory

    @property
    def active(self) -> bool:
        return self.runtime.runtime is not None

    def attach_runtime(self) -> Images:
        """Build (once per machine) and attach the runtime's images; warns and attaches none if it cannot."""
        why = unavailable()
        if why is None:
            try:
                lang = python_image(self._cache)
                package = package_image(self._cache)
                self.runtime = Images(
                    lang=None if lang is None else self._attach(lang).path,
                    runtime=self._attach(package).path,
                )
                log.info("sandbox images: %s", ", ".join(map(repr, self._devices.values())))
                return self.runtime
            except Exception as exc:  # whatever it is, the server starts (with binds)
                log.exception("the runtime's images could not be made or attached")
                why = f"the runtime's images could not be made or attached ({exc})"
                self.close_devices()
        warn_fallback(why)
        return self.runtime

    def attach_runtime_layers(self, layers: Sequence[LayerMount]) -> None:
        """Build (when their tree changed) and attach the images of the operator's runtime layers.

        Only once the runtime's images are attached; a layer whose image
        cannot be made is bound instead (:func:`warn_layer_fallback`).
        """
        if not self.active:
            return
        for layer in layers:
            try:
                device = self._attach(layer_image(layer.name, layer.directory, self._cache))
            except Exception as exc:  # the server starts (with a bind of this layer)
                log.exception("the image of runtime layer %s could not be made or attached", layer.name)
                warn_layer_fallback(layer, f"its image could not be made or attached ({exc})")
                continue
            self._runtime_layers[layer.directory] = device.path
            log.info("runtime layer %s: %r", layer.name, device)

    def zygote_args(self) -> list[str]:
        args = []
        if self.runtime.lang is not None:
            args += ["--lang-device", self.runtime.lang]
        if self.runtime.runtime is not None:
            args += ["--runtime-device", self.runtime.runtime]
        return args

    def runtime_layer_sources(self, layers: Sequence[LayerMount]) -> list[str]:
        """``name=source`` of each runtime layer, for a preloading zygote: its image's device, or
        (it has none) its directory."""
        devices = self._runtime_layers
        return [f"{mount.name}={devices.get(mount.directory, mount.directory)}" for mount in layers]

    def code_device(self, image: str | None) -> str | None:
        """The device of a code image, attached on first use; None when images are not used."""
        if not self.active or image is None:
            return None
        try:
            return self._attach(Path(image)).path
        except OSError as exc:
            # Never fall back to a bind here: it would show the data dir inside.
            raise SandboxUnavailable(f"cannot attach the code image {image}: {exc}") from exc

    def layer_devices(self, layers: Sequence[LayerMount]) -> tuple[str | None, ...]:
        """The device of each layer, in order (None: bind its directory); () when images are not used.

        A function's layer has an image (its package's), attached on first
        use; an operator's runtime layer has the one made at start.
        """
        if not self.active:
            return ()
        devices: list[str | None] = []
        for layer in layers:
            if layer.image is None:
                devices.append(self._runtime_layers.get(layer.directory))
                continue
            try:
                devices.append(self._attach(Path(layer.image)).path)
            except OSError as exc:
                raise SandboxUnavailable(f"cannot attach the image of layer {layer.name}: {exc}") from exc
        return tuple(devices)

    def _attach(self, image: Path) -> loop.LoopDevice:
        device = self._devices.get(image)
        if device is None:
            device = self._devices[image] = loop.LoopDevice(image)
        return device

    def close_devices(self) -> list[loop.LoopDevice]:
        devices = list(self._devices.values())
        for device in devices:
            device.close()
        self._devices.clear()
        self._runtime_layers.clear()
        self.runtime = Images()
        return devices

    async def close(self) -> None:
        """Let go of every device and wait (bounded) until the kernel has detached them.

        Call it once nothing of ours has them mounted: the zygote (whose
        namespace holds the runtime's) and the instances are gone.
        """
        devices = self.close_devices()
        loop_ = asyncio.get_running_loop()
        deadline = loop_.time() + DETACH_TIMEOUT
        while True:
            held = [d for d in devices if d.backing_file() in (str(d.image), f"{d.image} (deleted)")]
            if not held:
                return
            if loop_.time() > deadline:
                log.warning("loop devices still attached after the server stopped: %s", held)
                return
            await asyncio.sleep(0.01)
