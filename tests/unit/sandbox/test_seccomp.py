"""The syscall policy: the table itself, and the compiled filter loaded in a forked child.

The behavioural tests fork this process, load the real program in the child
and make the calls there. A call the filter should refuse is made with
arguments the kernel would reject anyway (-1 everywhere: bad descriptors, bad
pointers, bad flags), so even a broken filter could not reboot, mount or
load anything.
"""

from __future__ import annotations

import ctypes
import errno
import json
import mmap
import os
import platform
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable
from typing import Any

import pytest

from wuzhao.sandbox import seccomp
from wuzhao.sandbox.seccomp import ALLOW, DENY, NOSYS, POLICY

try:
    LIB: ctypes.CDLL | None = seccomp._libseccomp()
except seccomp.SeccompUnavailable:
    LIB = None

needs_filter = pytest.mark.skipif(
    LIB is None or platform.machine() != "x86_64", reason="needs libseccomp on x86_64"
)


def words(text: str) -> list[str]:
    return text.split()


# Everything issue 3 names, and the usual suspects: refused with EPERM.
NAMED_DENIED = words("""
    listen accept accept4 ptrace process_vm_readv process_vm_writev
    mount umount2 pivot_root fsopen fsconfig fsmount fspick move_mount open_tree mount_setattr
    unshare setns keyctl add_key request_key bpf perf_event_open userfaultfd
    io_uring_setup io_uring_enter io_uring_register kexec_load kexec_file_load
    init_module finit_module delete_module reboot swapon swapoff acct syslog
    chroot quotactl open_by_handle_at name_to_handle_at iopl ioperm settimeofday
    clock_settime clock_adjtime adjtimex vhangup uselib lookup_dcookie fanotify_init
    pidfd_getfd kcmp
""")

# What Python, its standard library, subprocess, threads, multiprocessing
# (fork), the dynamic loader and numpy/OpenBLAS call (strace of such a workload).
PYTHON_NEEDS = words("""
    read write readv writev pread64 pwrite64 openat open close close_range lseek dup dup2 dup3
    fcntl ioctl fstat newfstatat statx stat lstat statfs fstatfs access faccessat2 readlink
    getdents64 getcwd chdir fchdir mkdir rmdir unlink unlinkat rename renameat2 link symlink
    chmod fchmod utimensat umask fsync ftruncate fadvise64 sendfile copy_file_range
    mmap munmap mremap mprotect madvise brk mbind get_mempolicy membarrier memfd_create
    clone fork vfork execve wait4 waitid exit exit_group kill tgkill getpid getppid gettid
    setsid setpgid getpgid set_tid_address set_robust_list futex rseq arch_prctl prctl
    sched_yield sched_getaffinity getpriority uname sysinfo prlimit64 getrlimit setrlimit
    getrusage getrandom getuid geteuid getgid getegid getgroups capget
    rt_sigaction rt_sigprocmask rt_sigreturn rt_sigtimedwait sigaltstack
    nanosleep clock_nanosleep clock_gettime clock_getres gettimeofday setitimer
    timerfd_create select pselect6 poll ppoll epoll_create1 epoll_ctl epoll_wait epoll_pwait
    eventfd2 pipe pipe2 socketpair connect bind getsockname getpeername sendto recvfrom
    sendmsg recvmsg shutdown setsockopt getsockopt pidfd_open pidfd_send_signal
    shmget shmat shmdt shmctl semget semop semctl
""")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

AF_PACKET, AF_KEY, AF_BLUETOOTH, AF_ALG, AF_VSOCK = 17, 15, 31, 38, 40
SOCK_PACKET = 10
NETLINK_AUDIT, NETLINK_NETFILTER = 9, 12
ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC = 0x0040000, 0x0400000
X32_SYSCALL_BIT = 0x40000000
NR_GETPID = 39
# mov eax, 20 (getpid in the i386 table); int 0x80; ret
I386_GETPID = bytes.fromhex("b814000000cd80c3")


def raw(name: str, *args: int) -> int:
    """Make the syscall ``name``; 0 when it succeeded (or returned a value), else its errno."""
    assert LIB is not None
    number = seccomp.syscall_number(LIB, name)
    assert number is not None, name
    return raw_nr(number, *args)


def raw_nr(number: int, *args: int) -> int:
    ctypes.set_errno(0)
    result = _libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a) for a in args))
    return ctypes.get_errno() if result == -1 else 0


def in_filtered_child(check: Callable[[], Any]) -> tuple[int, Any]:
    """Run ``check`` in a forked child under the real filter: (wait status, its JSON result)."""
    program = seccomp.Program(seccomp.compile_policy())
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.close(read_end)
            os.setsid()  # no controlling terminal: vhangup has nothing to hang up
            program.load()
            if seccomp.libc.prctl(seccomp.libc.PR_GET_SECCOMP) != 2:
                raise AssertionError("the filter is not loaded")
            result = json.dumps(check()).encode()
            while result:
                result = result[os.write(write_end, result) :]
        except BaseException as exc:
            os.write(write_end, json.dumps({"child failed": repr(exc)}).encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 1 << 16):
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    return status, json.loads(b"".join(chunks)) if chunks else None


def run_filtered(check: Callable[[], Any]) -> Any:
    status, result = in_filtered_child(check)
    assert os.waitstatus_to_exitcode(status) == 0, result
    return result


# --- the table --------------------------------------------------------------------------


def test_every_named_syscall_is_denied_and_clone3_is_enosys() -> None:
    assert {name: POLICY.get(name) for name in NAMED_DENIED} == dict.fromkeys(NAMED_DENIED, DENY)
    assert POLICY["clone3"] is NOSYS


def test_what_python_needs_is_allowed() -> None:
    refused = {name for name in PYTHON_NEEDS if POLICY.get(name, DENY).name != "allow"}
    assert refused == set()
    # Only clone among them depends on its arguments (no namespace flags).
    assert {name for name in PYTHON_NEEDS if POLICY[name] is not ALLOW} == {"clone"}


def test_conditional_entries_are_the_argument_filtered_ones() -> None:
    conditional = {name for name, verdict in POLICY.items() if verdict.when}
    assert conditional == {"clone", "socket", "personality", "mknod", "mknodat"}
    assert all(verdict.name == "allow" for verdict in POLICY.values() if verdict.when)


def test_a_syscall_listed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        seccomp._merge({"read": ALLOW}, {"read": DENY})


@needs_filter
def test_every_name_in_the_table_is_a_syscall_here() -> None:
    # A misspelt allowed name would be silently denied: every name must resolve.
    assert LIB is not None
    assert [name for name in POLICY if seccomp.syscall_number(LIB, name) is None] == []


@needs_filter
def test_the_program_is_deterministic_and_kills_foreign_architectures() -> None:
    program = seccomp.compile_policy()
    assert program == seccomp.compile_policy()
    assert len(program) % 8 == 0
    text = seccomp.compile_policy(text=True).decode()
    assert "filter for arch x86_64" in text
    assert "filter for arch x86 " not in text and "x32" not in text
    assert "invalid architecture action\naction KILL_PROCESS;" in text


def test_prepared_without_a_program_refuses_to_load() -> None:
    with pytest.raises(seccomp.SeccompUnavailable, match="no libseccomp"):
        seccomp.Prepared(None, "no libseccomp").load()


def test_not_a_bpf_program_is_refused() -> None:
    with pytest.raises(ValueError):
        seccomp.Program(b"123")


# --- the compiled filter, loaded --------------------------------------------------------


@needs_filter
def test_denied_syscalls_fail_with_eperm_and_clone3_with_enosys() -> None:
    denied = [name for name, verdict in POLICY.items() if verdict is DENY]

    def check() -> dict[str, int]:
        result = {name: raw(name, *[-1] * 6) for name in denied}
        result["clone3"] = raw("clone3", -1, -1)
        return result

    expected = {**dict.fromkeys(denied, errno.EPERM), "clone3": errno.ENOSYS}
    assert run_filtered(check) == expected


@needs_filter
def test_sockets_only_of_the_allowed_families_and_types() -> None:
    flags = socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC

    def attempt(family: int, kind: int, proto: int = 0) -> int:
        try:
            socket.socket(family, kind, proto).close()
            return 0
        except OSError as exc:
            return exc.errno or -1

    def check() -> dict[str, int]:
        return {
            "packet raw": attempt(AF_PACKET, socket.SOCK_RAW),
            "packet dgram": attempt(AF_PACKET, socket.SOCK_DGRAM),
            "inet raw icmp": attempt(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
            "inet raw with flags": attempt(socket.AF_INET, socket.SOCK_RAW | flags, socket.IPPROTO_ICMP),
            "inet6 raw": attempt(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6),
            "inet sock_packet": attempt(socket.AF_INET, SOCK_PACKET),
            "key": attempt(AF_KEY, socket.SOCK_RAW, 2),
            "bluetooth": attempt(AF_BLUETOOTH, socket.SOCK_STREAM),
            "alg": attempt(AF_ALG, socket.SOCK_SEQPACKET),
            "vsock": attempt(AF_VSOCK, socket.SOCK_STREAM),
            "netlink audit": attempt(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT),
            "netlink netfilter": attempt(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER),
            # High bits the kernel ignores do not sneak a family or a type past the filter.
            "inet with high bits": raw("socket", socket.AF_INET | 1 << 32, socket.SOCK_STREAM, 0),
            "raw with high bits": raw("socket", socket.AF_INET, socket.SOCK_RAW | 1 << 32, 1),
            "inet stream": attempt(socket.AF_INET, socket.SOCK_STREAM | flags),
            "inet dgram": attempt(socket.AF_INET, socket.SOCK_DGRAM),
            "inet6 stream": attempt(socket.AF_INET6, socket.SOCK_STREAM),
            "unix seqpacket": attempt(socket.AF_UNIX, socket.SOCK_SEQPACKET | flags),
            "netlink route": attempt(socket.AF_NETLINK, socket.SOCK_RAW | flags, socket.NETLINK_ROUTE),
        }

    allowed = ["inet stream", "inet dgram", "inet6 stream", "unix seqpacket", "netlink route"]
    result = run_filtered(check)
    assert result == {name: 0 if name in allowed else errno.EPERM for name in result}


@needs_filter
def test_listen_and_accept_are_refused_for_every_family() -> None:
    def check() -> dict[str, int]:
        result = {}
        for name, family, address in (
            ("inet", socket.AF_INET, ("127.0.0.1", 0)),
            ("unix", socket.AF_UNIX, "\0wuzhao-seccomp-test"),
        ):
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.bind(address)
                for call in ("listen", "accept", "accept4"):
                    result[f"{name} {call}"] = raw(call, sock.fileno(), 0, 0, 0)
        return result

    result = run_filtered(check)
    assert result == dict.fromkeys(result, errno.EPERM)


@needs_filter
def test_clone_with_any_namespace_flag_is_refused() -> None:
    names = {
        "newns": 0x00020000,
        "newcgroup": 0x02000000,
        "newuts": 0x04000000,
        "newipc": 0x08000000,
        "newuser": 0x10000000,
        "newpid": 0x20000000,
        "newnet": 0x40000000,
    }

    def check() -> dict[str, int]:
        result = {}
        for name, flag in names.items():
            clone_args = (ctypes.c_long(flag | signal.SIGCHLD), *[ctypes.c_long(0)] * 4)
            pid = _libc.syscall(ctypes.c_long(56), *clone_args)
            if pid == 0:  # a broken filter made a process: leave at once
                os._exit(0)
            result[name] = ctypes.get_errno() if pid == -1 else 0
        return result

    assert run_filtered(check) == dict.fromkeys(names, errno.EPERM)


@needs_filter
def test_personality_and_device_nodes() -> None:
    def check() -> dict[str, int]:
        with tempfile.TemporaryDirectory() as tmp:
            return {
                "query": raw("personality", 0xFFFFFFFF),
                "default": raw("personality", 0),
                "no aslr": raw("personality", ADDR_NO_RANDOMIZE),
                "read implies exec": raw("personality", READ_IMPLIES_EXEC),
                "query with high bits": raw("personality", -1),
                "char device": _mknod(f"{tmp}/mem", 0o020600, os.makedev(1, 1)),
                "block device": _mknod(f"{tmp}/sda", 0o060600, os.makedev(8, 0)),
                "fifo": _mknod(f"{tmp}/fifo", 0o010600, 0),
                "regular": _mknod(f"{tmp}/file", 0o100600, 0),
                "socket": _mknod(f"{tmp}/sock", 0o140600, 0),
            }

    assert run_filtered(check) == {
        "query": 0,
        "default": 0,
        "no aslr": errno.EPERM,
        "read implies exec": errno.EPERM,
        "query with high bits": errno.EPERM,
        "char device": errno.EPERM,
        "block device": errno.EPERM,
        "fifo": 0,
        "regular": 0,
        "socket": 0,
    }


def _mknod(path: str, mode: int, device: int) -> int:
    try:
        os.mknod(path, mode, device)
        return 0
    except OSError as exc:
        return exc.errno or -1


def _square(x: int) -> int:
    return x * x


@needs_filter
def test_threads_fork_subprocess_and_multiprocessing_still_work() -> None:
    def check() -> dict[str, Any]:
        import multiprocessing

        box: list[int] = []
        thread = threading.Thread(target=box.append, args=(1,))
        thread.start()
        thread.join()
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        _, status = os.waitpid(pid, 0)
        with multiprocessing.get_context("fork").Pool(2) as pool:
            squares = pool.map(_square, range(5))
        left, right = socket.socketpair()
        left.send(b"x")
        with tempfile.TemporaryDirectory() as tmp:
            os.mkfifo(f"{tmp}/fifo")
        memory = mmap.mmap(-1, 1 << 20)
        memory[:1] = b"x"
        return {
            "thread": box,
            "fork": os.waitstatus_to_exitcode(status),
            "subprocess": subprocess.run(["sh", "-c", "echo $((6*7))"], capture_output=True).stdout.decode(),
            "pool": squares,
            "socketpair": right.recv(1).decode(),
            "interfaces": len(socket.if_nameindex()) > 0,
            "affinity": len(os.sched_getaffinity(0)) > 0,
            "random": len(os.urandom(8)),
        }

    assert run_filtered(check) == {
        "thread": [1],
        "fork": 7,
        "subprocess": "42\n",
        "pool": [0, 1, 4, 9, 16],
        "socketpair": "x",
        "interfaces": True,
        "affinity": True,
        "random": 8,
    }


@needs_filter
def test_an_x32_syscall_kills_the_process() -> None:
    assert raw_nr(X32_SYSCALL_BIT | NR_GETPID) == errno.ENOSYS  # unfiltered: no x32 ABI here
    status, _ = in_filtered_child(lambda: raw_nr(X32_SYSCALL_BIT | NR_GETPID))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS


@needs_filter
def test_an_i386_syscall_kills_the_process() -> None:
    code = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    code.write(I386_GETPID)
    address = ctypes.addressof(ctypes.c_char.from_buffer(code))
    int80 = ctypes.CFUNCTYPE(ctypes.c_int)(address)
    if int80() != os.getpid():
        pytest.skip("no i386 emulation on this kernel")
    status, _ = in_filtered_child(int80)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS
