"""ctypes bindings for the Linux system calls Python's ``os`` module lacks.

Every wrapper raises :class:`OSError` with the call's errno, like ``os`` does.
Only what the sandbox needs is bound; constants carry their kernel names.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct

_libc = ctypes.CDLL(None, use_errno=True)

# unshare(2) / setns(2) namespace flags.
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount(2) flags.
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

# umount2(2) flags.
MNT_DETACH = 0x2

# prctl(2) options.
PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_GET_SECCOMP = 21
PR_SET_SECCOMP = 22
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2

# Securebits (PR_SET_SECUREBITS): each flag and its lock.
SECBIT_NOROOT = 1 << 0  # uid 0 gains no capability by execve
SECBIT_NOROOT_LOCKED = 1 << 1
SECBIT_NO_CAP_AMBIENT_RAISE = 1 << 6
SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED = 1 << 7

_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# prctl(PR_SET_MM, PR_SET_MM_MAP, &struct prctl_mm_map, size): the process's memory layout
# as /proc shows it, cmdline and environ included. Needs no capability unless exe_fd is set.
PR_SET_MM = 35
PR_SET_MM_MAP = 14
_PRCTL_MM_MAP = struct.Struct("=11QQII")  # 11 addresses, auxv, auxv_size, exe_fd
_NO_EXE_FD = 0xFFFFFFFF

# glibc has no pivot_root wrapper; the number depends on the architecture.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(platform.machine())
_SYS_BRK = {"x86_64": 12, "aarch64": 214}.get(platform.machine())


def _check(result: int, name: str, *args: object) -> int:
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}{args!r}: {os.strerror(err)}")
    return result


def _path(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
_libc.syscall.restype = ctypes.c_long


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


_libc.capset.argtypes = [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData)]
# Built once (in the zygote): making a ctypes array type in a forked child costs ~0.1 ms.
_NO_CAPABILITIES = (_CapData * 2)()  # version 3: two 32-bit halves, all zero


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare", hex(flags))


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), "setns", fd, hex(nstype))


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    result = _libc.mount(_path(source), _path(target), _path(fstype), flags, _path(data))
    _check(result, "mount", source, target, fstype, hex(flags), data)


def umount2(target: str, flags: int) -> None:
    _check(_libc.umount2(_path(target), flags), "umount2", target, flags)


def pivot_root(new_root: str, put_old: str) -> None:
    if _SYS_PIVOT_ROOT is None:
        raise OSError(38, f"pivot_root: unknown syscall number on {platform.machine()}")
    result = _libc.syscall(
        ctypes.c_long(_SYS_PIVOT_ROOT),
        ctypes.c_char_p(_path(new_root)),
        ctypes.c_char_p(_path(put_old)),
    )
    _check(result, "pivot_root", new_root, put_old)


def prctl(option: int, arg2: int = 0, arg3: int = 0) -> int:
    return _check(_libc.prctl(option, arg2, arg3, 0, 0), "prctl", option, arg2, arg3)


def clear_capabilities() -> None:
    """capset(2): empty effective, permitted and inheritable sets of the calling thread."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    _check(_libc.capset(ctypes.byref(header), _NO_CAPABILITIES), "capset", 0)


# Buffers /proc/<pid>/cmdline and environ are read from: kept as long as the process lives.
_process_strings: list[ctypes.Array[ctypes.c_char]] = []


def set_process_strings(cmdline: bytes, environ: bytes) -> None:
    """Point the process's /proc cmdline and environ at new contents (runs of NUL-ended strings)."""
    if _SYS_BRK is None:
        raise OSError(38, f"brk: unknown syscall number on {platform.machine()}")
    # proc(5) fields: 26 startcode 27 endcode 28 startstack 45 start_data 46 end_data
    # 47 start_brk 48-51 arg_start arg_end env_start env_end; split() starts at field 3.
    with open("/proc/self/stat", "rb") as stat:
        fields = [int(f) for f in stat.read().rpartition(b")")[2].split()[23:49]]
    start_code, end_code, start_stack = fields[0:3]
    start_data, end_data, start_brk = fields[19:22]
    brk = _libc.syscall(ctypes.c_long(_SYS_BRK), ctypes.c_long(0))  # the current break, unchanged
    buffers = [ctypes.create_string_buffer(data, max(len(data), 1)) for data in (cmdline, environ)]
    _process_strings.extend(buffers)
    arg, env = (ctypes.addressof(b) for b in buffers)
    arg_end, env_end = arg + len(cmdline), env + len(environ)
    layout = _PRCTL_MM_MAP.pack(
        start_code, end_code, start_data, end_data, start_brk, brk, start_stack,
        arg, arg_end, env, env_end, 0, 0, _NO_EXE_FD,
    )  # fmt: skip
    request = ctypes.create_string_buffer(layout, len(layout))
    _check(
        _libc.prctl(PR_SET_MM, PR_SET_MM_MAP, ctypes.addressof(request), len(layout), 0), "prctl", "mm_map"
    )
