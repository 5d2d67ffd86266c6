"""Read-only loop devices, attached through ioctl (no ``losetup``).

The launcher attaches each filesystem image once and keeps the returned
:class:`LoopDevice` open for as long as the server runs; sandboxed children
mount ``LoopDevice.path`` read-only in their own mount namespaces. Devices are
configured with ``LO_FLAGS_AUTOCLEAR``: the kernel detaches one when its last
user is gone (our descriptor closed and every mount of it unmounted), so a
server that stops, or crashes, leaves no device bound to its images.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import time
from pathlib import Path

LOOP_CONTROL = "/dev/loop-control"
LOOP_CTL_GET_FREE = 0x4C82
LOOP_CONFIGURE = 0x4C0A
LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4
LO_NAME_SIZE = 64
# struct loop_config { u32 fd; u32 block_size; struct loop_info64 info; u64 reserved[8]; }
# struct loop_info64 { u64 device, inode, rdevice, offset, sizelimit;
#                      u32 number, encrypt_type, encrypt_key_size, flags;
#                      u8 file_name[64], crypt_name[64], encrypt_key[32]; u64 init[2]; }
_LOOP_CONFIG = struct.Struct("=II5Q4I64s64s32s2Q8Q")
ATTEMPTS = 16  # another process may take the free device between our two calls


def available() -> str | None:
    """None when loop devices can be attached here, else why not."""
    if os.geteuid() != 0:
        return "the server does not run as root"
    if not os.path.exists(LOOP_CONTROL):
        return f"there is no {LOOP_CONTROL} (a container without loop devices?)"
    try:
        fd = os.open(LOOP_CONTROL, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return f"cannot open {LOOP_CONTROL}: {exc.strerror}"
    os.close(fd)
    return None


def config(backing_fd: int, name: str) -> bytes:
    """The ``struct loop_config`` of a read-only, auto-clearing device on ``backing_fd``."""
    flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR
    file_name = os.fsencode(name)[: LO_NAME_SIZE - 1]
    return _LOOP_CONFIG.pack(
        backing_fd, 0, 0, 0, 0, 0, 0, 0, 0, 0, flags, file_name, b"", b"", 0, 0, *[0] * 8
    )


class LoopDevice:
    """An image attached read-only to ``/dev/loopN``; detached once closed and unmounted."""

    def __init__(self, image: Path) -> None:
        self.image = Path(image)
        backing = os.open(self.image, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.number, self._fd = _attach(backing, str(self.image))
        finally:
            os.close(backing)  # the device holds its own reference to the file
        self.path = f"/dev/loop{self.number}"

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        """Drop our hold; the kernel detaches the device once nothing has it mounted."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def backing_file(self) -> str | None:
        """The file the device is bound to now (it may be someone else's once we closed)."""
        return backing_file(self.number)

    def __repr__(self) -> str:
        return f"LoopDevice({self.path} -> {self.image})"


def backing_file(number: int) -> str | None:
    try:
        return Path(f"/sys/block/loop{number}/loop/backing_file").read_text().strip()
    except OSError:
        return None


def devices_backing(paths: set[str]) -> list[str]:
    """``/dev/loopN`` of every device now bound to one of ``paths`` (machine-wide)."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir("/sys/block"):
            if entry.name.startswith("loop"):
                target = backing_file(int(entry.name[4:]))
                if target is not None and target.removesuffix(" (deleted)") in paths:
                    found.append(f"/dev/{entry.name}")
    return sorted(found)


def _attach(backing: int, name: str) -> tuple[int, int]:
    control = os.open(LOOP_CONTROL, os.O_RDWR | os.O_CLOEXEC)
    try:
        for attempt in range(ATTEMPTS):
            number = fcntl.ioctl(control, LOOP_CTL_GET_FREE)
            try:
                fd = os.open(f"/dev/loop{number}", os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:  # devtmpfs has not made the node yet
                time.sleep(0.001 * (attempt + 1))
                continue
            try:
                fcntl.ioctl(fd, LOOP_CONFIGURE, config(backing, name))
            except OSError as exc:
                os.close(fd)
                if exc.errno == errno.EBUSY:  # another process took it first
                    continue
                raise
            return number, fd
    finally:
        os.close(control)
    raise OSError(errno.EBUSY, f"no free loop device after {ATTEMPTS} attempts")
