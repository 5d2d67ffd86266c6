"""Frame bodies in shared memory: memfds passed with their frame (``SCM_RIGHTS``).

Imported by the worker and, inside the sandbox, by the Python runtime (the
zygote imports it before any fork, through the bootstrap). Which frames use
one and how a descriptor is matched to its frame is ``runtimes.protocol``.

Two kinds, because the two peers are not equally trusted:

- **The runtime's result** (:func:`make`): a new memfd, written once and
  sealed for good (:data:`SEALED`). The worker requires those seals
  (:data:`FROM_RUNTIME`) before it reads a byte: only a memfd can carry them
  (a tmpfs file always has ``F_SEAL_SEAL`` and no other), and with them its
  size and bytes cannot change while the worker reads. The worker reads with
  ``pread`` (never through a mapping, which a peer's truncation would turn
  into SIGBUS) and closes it at once. Its pages are charged to the instance.
- **The worker's events** (:func:`reserve`, :func:`fill`): one memfd per
  instance, reused call after call, because writing into pages a memfd
  already has costs a copy (~0.4 ms for 5 MB) where a new memfd costs the
  allocation of every page too (~2 ms). It is sealed against growing (and
  against further seals) only: the runtime may write in it or shrink it,
  which breaks its own event and nobody else's, but cannot make the worker
  hold or free more than the size the worker gave it. The runtime requires
  :data:`FROM_WORKER` and a size of at least the announced length, and reads
  the event in place through a mapping (:func:`mapped`): safe there, because
  the worker never shrinks it during a call. The worker takes the pages back
  with :func:`revoke` (truncate, then close), so a descriptor the runtime
  kept holds an empty file that cannot grow.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import stat
from collections.abc import Iterator

from wuzhao.runtimes.protocol import ProtocolError, discard

# A body nobody can change: its size and bytes are fixed, and so are the seals.
SEALED = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
# What the worker requires of the runtime's memfds: size and bytes fixed while it reads.
FROM_RUNTIME = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
# The worker's reusable memfd: a fixed capacity that nobody can raise.
RESERVED = fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
# What the runtime requires of the worker's.
FROM_WORKER = fcntl.F_SEAL_GROW


def make(body: bytes, name: str) -> int:
    """A new close-on-exec memfd holding ``body``, :data:`SEALED`; the caller closes it."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        _write(fd, body)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALED)
    except BaseException:
        os.close(fd)
        raise
    return fd


def reserve(capacity: int, name: str) -> int:
    """A new close-on-exec memfd of ``capacity`` bytes (sparse), :data:`RESERVED`."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, capacity)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, RESERVED)
    except BaseException:
        os.close(fd)
        raise
    return fd


def fill(fd: int, body: bytes) -> None:
    """Write ``body`` at the start of a :func:`reserve`d memfd (OSError if it no longer fits)."""
    _write(fd, body)


def _write(fd: int, body: bytes) -> None:
    view = memoryview(body)
    offset = 0
    while offset < len(view):
        offset += os.pwrite(fd, view[offset:], offset)


def take(fd: int, length: int) -> bytes:
    """The ``length`` bytes of the runtime's memfd, checked first; ``fd`` is closed in any case.

    Raises :class:`ProtocolError` unless ``fd`` is a memfd of exactly
    ``length`` bytes with the :data:`FROM_RUNTIME` seals.
    """
    try:
        size = _check(fd, FROM_RUNTIME).st_size
        if size != length:
            raise ProtocolError(f"the memfd holds {size} bytes, the frame announced {length}")
        return _read(fd, length)
    finally:
        discard(fd)


@contextlib.contextmanager
def mapped(fd: int, length: int) -> Iterator[mmap.mmap | bytes]:
    """The first ``length`` bytes of the worker's memfd, mapped read-only; ``fd`` closed at once.

    For the runtime: decoding straight from the worker's pages saves a copy of
    the event and the fresh memory it would take. Safe because the worker
    never shrinks its memfd during a call, and the size is checked before a
    byte is read (a read past the end of a mapped file raises SIGBUS). The
    mapping (and the descriptor ``mmap`` keeps with it) is gone on the way
    out: between calls the runtime holds nothing of the worker's.
    :class:`ProtocolError` unless ``fd`` is a memfd with the :data:`FROM_WORKER`
    seals and at least ``length`` bytes.
    """
    try:
        size = _check(fd, FROM_WORKER).st_size
        if size < length:
            raise ProtocolError(f"the memfd holds {size} bytes, the frame announced {length}")
        if length:  # only the event's pages: a hole mapped and read would allocate one
            try:
                view: mmap.mmap | bytes = mmap.mmap(
                    fd, length, mmap.MAP_SHARED | mmap.MAP_POPULATE, mmap.PROT_READ
                )
            except OSError as exc:
                raise ProtocolError(f"the memfd cannot be mapped: {exc}") from None
        else:
            view = b""
    finally:
        discard(fd)
    try:
        yield view
    finally:
        if isinstance(view, mmap.mmap):
            view.close()


def revoke(fd: int) -> None:
    """Free a memfd's pages even if the peer kept a descriptor, and close ours."""
    try:
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def _check(fd: int, required: int) -> os.stat_result:
    """The status of a peer's memfd that carries the ``required`` seals."""
    try:
        info = os.fstat(fd)
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS) if stat.S_ISREG(info.st_mode) else 0
    except OSError as exc:
        raise ProtocolError(f"the descriptor cannot be examined: {exc}") from None
    if not stat.S_ISREG(info.st_mode) or seals & required != required:
        raise ProtocolError(f"the descriptor is not a memfd sealed with {required:#x} (seals {seals:#x})")
    return info


def _read(fd: int, length: int) -> bytes:
    try:
        data = os.pread(fd, length, 0)
    except OSError as exc:
        raise ProtocolError(f"the memfd cannot be read: {exc}") from None
    if len(data) != length:  # the seals fix the size: only a kernel surprise gets here
        raise ProtocolError(f"the memfd gave {len(data)} of its {length} bytes")
    return data
