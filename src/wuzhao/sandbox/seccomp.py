"""The sandbox's system-call policy: one table, compiled once, loaded in every instance.

Approach: an **allow-list**. :data:`POLICY` names every system call an
instance may make (with argument conditions for a few); anything else,
including every syscall the table names as denied and every syscall newer
than the table, fails with EPERM. The one exception is ``clone3``, which
fails with ENOSYS: glibc then falls back to ``clone``, whose flags a
classic seccomp filter can see (``clone3`` passes them in memory) and which
is allowed only without ``CLONE_NEW*`` flags.

Why an allow-list is robust enough today: the list follows the shape of
Docker's default profile (a long-used allow-list) minus what a function has no
business doing, and was checked with strace against what Python, its standard
library, ``subprocess``, threads, ``multiprocessing`` with fork, asyncio, the
dynamic loader and C extensions (numpy with OpenBLAS) call on this kernel;
every name must resolve (a misspelt allowed name would be a silent EPERM, so
the unit tests check that, and list the syscalls Python needs). A syscall
added by a later kernel is refused until someone adds it here deliberately:
the cost of a miss is an EPERM in a function, never a hole.

Denied on purpose, beyond "not needed":

- ``listen``, ``accept``, ``accept4`` for **every** family, AF_UNIX included:
  a function serves only through its runtime channel. Side effect: what needs
  a listening socket inside the instance (``multiprocessing.Manager``, the
  ``forkserver`` start method) does not work; pools and queues with ``fork`` do.
- ``socket`` is allowed for AF_UNIX, AF_INET, AF_INET6 with stream, datagram
  and seqpacket types, and AF_NETLINK with NETLINK_ROUTE only (glibc's
  ``getifaddrs``/``if_nameindex`` use it). Raw and packet sockets, and every
  other family, are refused. The type argument is compared under a mask that
  ignores SOCK_NONBLOCK and SOCK_CLOEXEC.
- ``personality`` only to query or to set the default persona (no
  ADDR_NO_RANDOMIZE, no READ_IMPLIES_EXEC); ``mknod``/``mknodat`` only for
  regular files, FIFOs and sockets, never device nodes.
- ``ioctl`` is allowed whole: an instance has no terminal (stdin is
  /dev/null, no /dev/tty, no /dev/pts), so TIOCSTI has nothing to inject into,
  and a cmd compared on 64 bits could be dodged with high bits anyway.

Foreign ABIs: only the native architecture is in the filter and its bad-arch
action is KILL_PROCESS, so an i386 ``int 0x80`` kills the instance. On
x86_64, libseccomp treats x32 as a separate architecture that it refuses
inside the x86_64 check (syscall numbers with bit 0x40000000): same verdict.

Performance: :func:`prepare` builds and exports the BPF program once, in the
zygote before any fork (~4 ms); a child only hands the ready buffer to the
kernel (:meth:`Program.load`, ~0.13 ms, mostly the kernel's own preparation of
the ~470-instruction program). The kernel's seccomp action cache then makes
every unconditionally allowed syscall a bitmap lookup: no measurable cost per
call.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from wuzhao.sandbox import libc

# --- Argument values the table compares against --------------------------------------

AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_SEQPACKET = 1, 2, 3, 5
SOCK_NONBLOCK, SOCK_CLOEXEC = 0o4000, 0o2000000
NETLINK_ROUTE = 0
# The type argument minus its flag bits; the mask also drops the upper half of
# the register, which the kernel ignores for an int argument.
SOCK_TYPE_MASK = 0xFFFFFFFF & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)

# clone(2) flags that create namespaces (CLONE_NEWTIME cannot be passed to
# clone: its bit is part of the exit-signal byte there).
CLONE_NEW_FLAGS = (
    libc.CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | libc.CLONE_NEWUTS
    | libc.CLONE_NEWIPC
    | libc.CLONE_NEWUSER
    | libc.CLONE_NEWPID
    | libc.CLONE_NEWNET
)

S_IFMT, S_IFSOCK, S_IFREG, S_IFIFO = 0o170000, 0o140000, 0o100000, 0o010000
PER_LINUX, PERSONALITY_QUERY = 0, 0xFFFFFFFF


# --- The table's vocabulary ------------------------------------------------------------


@dataclass(frozen=True)
class Arg:
    """Argument ``index`` equals ``value`` (after ``& mask`` when a mask is given)."""

    index: int
    value: int
    mask: int | None = None


@dataclass(frozen=True)
class Verdict:
    name: str  # "allow", "deny" (EPERM) or "nosys" (ENOSYS)
    # For a conditional allow: alternatives, each a conjunction of Args. The
    # call is allowed when one alternative matches, else denied with EPERM.
    when: tuple[tuple[Arg, ...], ...] = ()

    def __repr__(self) -> str:
        return self.name if not self.when else f"allow_if{self.when!r}"


ALLOW = Verdict("allow")
DENY = Verdict("deny")  # the default: listed to document intent and to test it
NOSYS = Verdict("nosys")


def allow_if(*alternatives: Iterable[Arg]) -> Verdict:
    return Verdict("allow", tuple(tuple(alt) for alt in alternatives))


def allow(names: str) -> dict[str, Verdict]:
    return dict.fromkeys(names.split(), ALLOW)


def deny(names: str) -> dict[str, Verdict]:
    return dict.fromkeys(names.split(), DENY)


def nosys(names: str) -> dict[str, Verdict]:
    return dict.fromkeys(names.split(), NOSYS)


def _merge(*groups: Mapping[str, Verdict]) -> dict[str, Verdict]:
    table: dict[str, Verdict] = {}
    for group in groups:
        twice = table.keys() & group.keys()
        if twice:
            raise ValueError(f"syscalls listed twice in the policy: {sorted(twice)}")
        table.update(group)
    return table


# --- THE POLICY -------------------------------------------------------------------------
# Syscall name -> verdict. Anything not listed is denied with EPERM.

POLICY: dict[str, Verdict] = _merge(
    # ---- allowed ----
    # file descriptors and I/O
    allow("""
        read write readv writev pread64 pwrite64 preadv pwritev preadv2 pwritev2
        open openat openat2 creat close close_range lseek dup dup2 dup3 fcntl flock
        fsync fdatasync sync syncfs sync_file_range truncate ftruncate fallocate fadvise64
        readahead sendfile splice tee vmsplice copy_file_range ioctl
    """),
    # file metadata and directories (the root is read-only anyway)
    allow("""
        stat fstat lstat newfstatat statx statfs fstatfs access faccessat faccessat2
        readlink readlinkat getdents getdents64 getcwd chdir fchdir
        rename renameat renameat2 mkdir mkdirat rmdir link linkat unlink unlinkat
        symlink symlinkat chmod fchmod fchmodat fchmodat2 chown fchown lchown fchownat
        umask utime utimes utimensat futimesat
        getxattr lgetxattr fgetxattr listxattr llistxattr flistxattr
        setxattr lsetxattr fsetxattr removexattr lremovexattr fremovexattr
        getxattrat listxattrat setxattrat removexattrat file_getattr file_setattr
        inotify_init inotify_init1 inotify_add_watch inotify_rm_watch
    """),
    # memory of the process itself (NUMA policy included: OpenBLAS, jemalloc)
    allow("""
        brk mmap munmap mremap mprotect madvise msync mincore remap_file_pages
        mlock mlock2 munlock mlockall munlockall membarrier memfd_create memfd_secret
        pkey_alloc pkey_free pkey_mprotect get_mempolicy set_mempolicy mbind
        set_mempolicy_home_node mseal map_shadow_stack cachestat
    """),
    # processes and threads (clone is conditional, below)
    allow("""
        fork vfork execve execveat exit exit_group wait4 waitid
        kill tkill tgkill pidfd_open pidfd_send_signal
        getpid getppid gettid getpgid setpgid getpgrp getsid setsid
        set_tid_address set_robust_list get_robust_list futex futex_waitv
        futex_wake futex_wait futex_requeue rseq arch_prctl set_thread_area get_thread_area
        prctl seccomp landlock_create_ruleset landlock_add_rule landlock_restrict_self
        sched_yield sched_getaffinity sched_setaffinity sched_getparam sched_setparam
        sched_getscheduler sched_setscheduler sched_get_priority_max sched_get_priority_min
        sched_rr_get_interval sched_getattr sched_setattr getpriority setpriority
        ioprio_get ioprio_set getcpu restart_syscall
    """),
    # credentials: inside its user namespace only uid/gid 0 exist; caps only shrink
    allow("""
        getuid geteuid getgid getegid getresuid getresgid getgroups
        setuid setgid setreuid setregid setresuid setresgid setgroups setfsuid setfsgid
        capget capset
    """),
    # signals, time and timers
    allow("""
        rt_sigaction rt_sigprocmask rt_sigreturn rt_sigpending rt_sigtimedwait
        rt_sigqueueinfo rt_tgsigqueueinfo rt_sigsuspend sigaltstack pause alarm
        signalfd signalfd4 nanosleep clock_nanosleep clock_gettime clock_getres
        gettimeofday time times getitimer setitimer
        timer_create timer_settime timer_gettime timer_getoverrun timer_delete
        timerfd_create timerfd_settime timerfd_gettime
    """),
    # waiting for events; Linux AIO (io_uring is denied below)
    allow("""
        select pselect6 poll ppoll epoll_create epoll_create1 epoll_ctl epoll_wait
        epoll_pwait epoll_pwait2 eventfd eventfd2 pipe pipe2
        io_setup io_destroy io_submit io_cancel io_getevents io_pgetevents
    """),
    # outbound and local sockets (socket is conditional, below)
    allow("""
        socketpair connect bind getsockname getpeername sendto recvfrom sendmsg recvmsg
        sendmmsg recvmmsg shutdown setsockopt getsockopt
    """),
    # System V and POSIX IPC, confined to the instance's ipc namespace
    allow("""
        shmget shmat shmdt shmctl semget semop semtimedop semctl
        msgget msgsnd msgrcv msgctl mq_open mq_unlink mq_timedsend mq_timedreceive
        mq_notify mq_getsetattr
    """),
    # limits and system information
    allow("uname sysinfo getrlimit setrlimit prlimit64 getrusage getrandom"),
    # ---- allowed with conditions ----
    {
        # Threads and fork, never a new namespace.
        "clone": allow_if([Arg(0, 0, mask=CLONE_NEW_FLAGS)]),
        # Local and internet sockets, netlink for interface listing; no raw or packet.
        "socket": allow_if(
            *(
                [Arg(0, family), Arg(1, kind, mask=SOCK_TYPE_MASK)]
                for family in (AF_UNIX, AF_INET, AF_INET6)
                for kind in (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET)
            ),
            *(
                [Arg(0, AF_NETLINK), Arg(1, kind, mask=SOCK_TYPE_MASK), Arg(2, NETLINK_ROUTE)]
                for kind in (SOCK_RAW, SOCK_DGRAM)
            ),
        ),
        # Query, or the default persona only.
        "personality": allow_if([Arg(0, PER_LINUX)], [Arg(0, PERSONALITY_QUERY)]),
        # FIFOs, sockets and regular files; never device nodes.
        "mknod": allow_if(*([Arg(1, kind, mask=S_IFMT)] for kind in (0, S_IFREG, S_IFIFO, S_IFSOCK))),
        "mknodat": allow_if(*([Arg(2, kind, mask=S_IFMT)] for kind in (0, S_IFREG, S_IFIFO, S_IFSOCK))),
    },
    # ---- ENOSYS ----
    # clone3 passes its flags in memory, out of the filter's sight: libc falls back to clone
    nosys("clone3"),
    # ---- denied (EPERM) ----
    # serving inbound connections (every family): a function answers only on its channel
    deny("listen accept accept4"),
    # reading or writing other processes
    deny("""
        ptrace process_vm_readv process_vm_writev process_madvise process_mrelease
        pidfd_getfd kcmp migrate_pages move_pages
    """),
    # the mount family: the root is the platform's
    deny("""
        mount umount2 pivot_root chroot fsopen fsconfig fsmount fspick move_mount
        open_tree open_tree_attr mount_setattr statmount listmount
    """),
    # namespaces: the instance's are final
    deny("unshare setns sethostname setdomainname"),
    # kernel keyrings
    deny("keyctl add_key request_key"),
    # large kernel attack surfaces
    deny("""
        bpf perf_event_open userfaultfd io_uring_setup io_uring_enter io_uring_register
        fanotify_init fanotify_mark lsm_get_self_attr lsm_set_self_attr lsm_list_modules
    """),
    # the host's kernel, clock, disks and devices
    deny("""
        kexec_load kexec_file_load init_module finit_module delete_module reboot
        swapon swapoff acct syslog quotactl quotactl_fd settimeofday clock_settime
        clock_adjtime adjtimex iopl ioperm modify_ldt vhangup
        open_by_handle_at name_to_handle_at
    """),
    # obsolete or removed interfaces
    deny("""
        uselib lookup_dcookie _sysctl sysfs ustat create_module get_kernel_syms
        query_module nfsservctl
    """),
)

# Names libseccomp 2.5.4 (Debian 12) does not know yet, by x86_64 number.
_X86_64_NUMBERS = {
    "statmount": 457,
    "listmount": 458,
    "lsm_get_self_attr": 459,
    "lsm_set_self_attr": 460,
    "lsm_list_modules": 461,
    "mseal": 462,
    "setxattrat": 463,
    "getxattrat": 464,
    "listxattrat": 465,
    "removexattrat": 466,
    "open_tree_attr": 467,
    "file_getattr": 468,
    "file_setattr": 469,
}


# --- libseccomp bindings (the few calls used, 2.5 API) ---------------------------------

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_FLTATR_ACT_BADARCH = 2
SCMP_FLTATR_CTL_OPTIMIZE = 8
SCMP_CMP_EQ = 4
SCMP_CMP_MASKED_EQ = 7
_NR_SCMP_ERROR = -1


def SCMP_ACT_ERRNO(code: int) -> int:  # libseccomp's macro name
    return 0x00050000 | (code & 0xFFFF)


class _ArgCmp(ctypes.Structure):
    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


class _SockFilter(ctypes.Structure):
    _fields_ = (
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    )


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter)))


class SeccompUnavailable(OSError):
    pass


def _libseccomp() -> ctypes.CDLL:
    try:  # by soname: the dynamic loader's own search, no ldconfig subprocess
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError as exc:
        raise SeccompUnavailable(f"cannot load libseccomp ({exc}); install libseccomp2") from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_export_pfc.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def _call(result: int, what: str) -> None:
    if result < 0:  # libseccomp returns -errno
        raise SeccompUnavailable(-result, f"libseccomp {what}: {os.strerror(-result)}")


def syscall_number(lib: ctypes.CDLL, name: str) -> int | None:
    """The native number of ``name``, or None when this architecture has no such call."""
    number = int(lib.seccomp_syscall_resolve_name(name.encode()))
    if number >= 0:
        return number
    if number == _NR_SCMP_ERROR and platform.machine() == "x86_64":
        return _X86_64_NUMBERS.get(name)
    return None  # unknown, or a pseudo-number for a call this architecture lacks


def _comparisons(args: tuple[Arg, ...]) -> ctypes.Array[_ArgCmp]:
    array = (_ArgCmp * len(args))()
    for slot, arg in zip(array, args, strict=True):
        slot.arg = arg.index
        if arg.mask is None:
            slot.op, slot.datum_a = SCMP_CMP_EQ, arg.value
        else:
            slot.op, slot.datum_a, slot.datum_b = SCMP_CMP_MASKED_EQ, arg.mask, arg.value
    return array


def _build(lib: ctypes.CDLL, policy: Mapping[str, Verdict]) -> ctypes.c_void_p:
    ctx = lib.seccomp_init(SCMP_ACT_ERRNO(errno.EPERM))
    if not ctx:
        raise SeccompUnavailable("libseccomp: seccomp_init failed")
    try:
        _call(lib.seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS), "badarch")
        # A binary tree of syscall numbers: half the kernel's load time of a
        # linear list. Older libseccomp lacks it; the filter is the same.
        lib.seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)
        for name, verdict in policy.items():
            number = syscall_number(lib, name)
            if number is None or verdict is DENY:
                continue  # the default action already refuses it
            action = SCMP_ACT_ERRNO(errno.ENOSYS) if verdict is NOSYS else SCMP_ACT_ALLOW
            for args in verdict.when or ((),):
                rule = lib.seccomp_rule_add_array(ctx, action, number, len(args), _comparisons(args))
                _call(rule, f"rule for {name}")
    except BaseException:
        lib.seccomp_release(ctx)
        raise
    return ctypes.c_void_p(ctx)


def _export(lib: ctypes.CDLL, ctx: ctypes.c_void_p, exporter: str) -> bytes:
    fd = os.memfd_create("wuzhao-seccomp", os.MFD_CLOEXEC)
    try:
        _call(getattr(lib, exporter)(ctx, fd), exporter)
        size = os.lseek(fd, 0, os.SEEK_CUR)
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


def compile_policy(policy: Mapping[str, Verdict] = POLICY, *, text: bool = False) -> bytes:
    """The policy as a BPF program for the kernel (or, with ``text``, libseccomp's PFC listing)."""
    lib = _libseccomp()
    ctx = _build(lib, policy)
    try:
        return _export(lib, ctx, "seccomp_export_pfc" if text else "seccomp_export_bpf")
    finally:
        lib.seccomp_release(ctx)


class Program:
    """A compiled filter, ready to be loaded by a forked child without further work."""

    def __init__(self, bpf: bytes) -> None:
        if not bpf or len(bpf) % ctypes.sizeof(_SockFilter):
            raise ValueError(f"not a BPF program: {len(bpf)} bytes")
        count = len(bpf) // ctypes.sizeof(_SockFilter)
        self.bpf = bpf
        self._filters = (_SockFilter * count).from_buffer_copy(bpf)
        self._fprog = _SockFprog(count, ctypes.cast(self._filters, ctypes.POINTER(_SockFilter)))

    def load(self) -> None:
        """Set no_new_privs and install the filter on the calling thread (and its future children).

        Irrevocable. Call it last: from here on the process can do only what the policy allows.
        """
        libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
        libc.prctl(libc.PR_SET_SECCOMP, libc.SECCOMP_MODE_FILTER, ctypes.addressof(self._fprog))


@dataclass(frozen=True)
class Prepared:
    """The outcome of :func:`prepare`: a program, or why there is none."""

    program: Program | None
    error: str = ""

    def load(self) -> None:
        if self.program is None:
            raise SeccompUnavailable(f"no seccomp filter to load: {self.error}")
        self.program.load()


def prepare() -> Prepared:
    """Compile :data:`POLICY` once (in the zygote, before any fork). Never raises."""
    try:
        return Prepared(Program(compile_policy()))
    except (OSError, ValueError) as exc:
        return Prepared(None, str(exc))
