"""Hostile functions making the system calls the seccomp policy must refuse.

Each attempt runs in a forked child (``in_child``), so that a call that wrongly
succeeds (a new namespace, a tracer) cannot change the runtime itself; the
child reports the errno's name. Arguments are chosen so that a call that got
through the filter would still do no harm (invalid magic numbers, bogus
handles, paths that do not exist).
"""

from __future__ import annotations

import pytest
from tests.security.conftest import NEEDS_SANDBOX

pytestmark = NEEDS_SANDBOX

# x86_64 syscall numbers (the suite runs on x86_64 hosts).
NR = {
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
    "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
    "fspick": 433, "mount_setattr": 442,
    "unshare": 272, "setns": 308, "clone": 56, "clone3": 435,
    "keyctl": 250, "add_key": 248, "request_key": 249,
    "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
    "io_uring_setup": 425, "kexec_load": 246, "kexec_file_load": 320,
    "init_module": 175, "finit_module": 313, "delete_module": 176,
    "reboot": 169, "swapon": 167, "swapoff": 168, "acct": 163, "syslog": 103,
    "open_by_handle_at": 304,
}  # fmt: skip

SYSCALLS = "from hostile import *\n\nNR = " + repr(NR) + "\n"


def test_seccomp_filter_is_loaded_with_no_new_privs(api, hostile):
    hostile(
        "sys-status",
        SYSCALLS
        + """
def handler(event, context):
    mine = status_fields(open("/proc/self/status").read())
    # a program it executes stays under the same filter
    import subprocess
    child = status_fields(subprocess.run(["/usr/bin/cat", "/proc/self/status"],
                                         capture_output=True).stdout.decode())
    return {who: {k: s.get(k, "").strip() for k in ("Seccomp", "Seccomp_filters", "NoNewPrivs")}
            for who, s in (("self", mine), ("exec", child))}
""",
    )
    seen = api.post("/v1/functions/sys-status/invoke").json()
    for who in ("self", "exec"):
        assert seen[who]["Seccomp"] == "2", seen  # SECCOMP_MODE_FILTER
        assert int(seen[who]["Seccomp_filters"] or 0) >= 1, seen
        assert seen[who]["NoNewPrivs"] == "1", seen


def test_ptrace_another_process_is_eperm(api, hostile):
    hostile(
        "sys-ptrace",
        SYSCALLS
        + """
PTRACE_ATTACH, PTRACE_SEIZE, PTRACE_DETACH, PTRACE_TRACEME = 16, 0x4206, 17, 0

def handler(event, context):
    child = os.fork()
    if child == 0:
        time.sleep(60)
        os._exit(0)
    buffer = ctypes.create_string_buffer(64)
    iovec = struct.pack("QQ", ctypes.addressof(buffer), 64)
    local = ctypes.create_string_buffer(iovec)
    remote = ctypes.create_string_buffer(struct.pack("QQ", 0x400000, 64))
    try:
        seen = {
            "attach": syscall(NR["ptrace"], PTRACE_ATTACH, child, 0, 0),
            "seize": syscall(NR["ptrace"], PTRACE_SEIZE, child, 0, 0),
            "vm_readv": syscall(NR["process_vm_readv"], child, local, 1, remote, 1, 0),
            "vm_writev": syscall(NR["process_vm_writev"], child, local, 1, remote, 1, 0),
            "traceme": in_child(lambda: syscall(NR["ptrace"], PTRACE_TRACEME, 0, 0, 0)),
            "mem": attempt(lambda: open(f"/proc/{child}/mem", "rb").read(1)),
        }
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    return seen
""",
    )
    seen = api.post("/v1/functions/sys-ptrace/invoke").json()
    mem = seen.pop("mem")
    assert seen == dict.fromkeys(seen, "EPERM")
    assert mem in ("EPERM", "EACCES")


def test_mount_and_pivot_root_are_eperm(api, hostile):
    hostile(
        "sys-mount",
        SYSCALLS
        + """
def attempts():
    os.makedirs("/tmp/m", exist_ok=True)
    return {
        "mount_tmpfs": syscall(NR["mount"], "tmpfs", "/tmp/m", "tmpfs", 0, None),
        "mount_bind": syscall(NR["mount"], "/", "/tmp/m", None, 4096, None),  # MS_BIND
        "remount_rw": syscall(NR["mount"], None, "/", None, 32 | 4096, None),  # MS_REMOUNT|MS_BIND
        "umount_proc": syscall(NR["umount2"], "/proc", 2),  # MNT_DETACH
        "pivot_root": syscall(NR["pivot_root"], "/tmp", "/tmp"),
        "chroot": syscall(NR["chroot"], "/tmp"),
        "fsopen": syscall(NR["fsopen"], "tmpfs", 0),
        "fspick": syscall(NR["fspick"], -100, "/", 0),
        "open_tree": syscall(NR["open_tree"], -100, "/", 1),  # OPEN_TREE_CLONE
        "move_mount": syscall(NR["move_mount"], -100, "/proc", -100, "/tmp/m", 0),
        "mount_setattr": syscall(NR["mount_setattr"], -100, "/", 0, None, 0),
    }

def handler(event, context):
    return in_child(attempts)
""",
    )
    seen = api.post("/v1/functions/sys-mount/invoke").json()
    assert seen == dict.fromkeys(seen, "EPERM")


def test_unshare_and_setns_are_eperm(api, hostile):
    hostile(
        "sys-unshare",
        SYSCALLS
        + """
FLAGS = {"user": 0x10000000, "mnt": 0x00020000, "net": 0x40000000, "pid": 0x20000000,
         "uts": 0x04000000, "ipc": 0x08000000, "cgroup": 0x02000000, "time": 0x00000080}

def handler(event, context):
    seen = {f"unshare_{name}": in_child(lambda flag=flag: syscall(NR["unshare"], flag))
            for name, flag in FLAGS.items()}
    for name in ("user", "mnt", "net", "pid", "uts", "ipc", "cgroup"):
        def join(name=name):
            fd = os.open(f"/proc/self/ns/{name}", os.O_RDONLY)
            return syscall(NR["setns"], fd, 0)
        seen[f"setns_{name}"] = in_child(join)
    return seen
""",
    )
    seen = api.post("/v1/functions/sys-unshare/invoke").json()
    assert seen == dict.fromkeys(seen, "EPERM")


def test_clone_with_namespace_flags_is_denied(api, hostile):
    hostile(
        "sys-clone",
        SYSCALLS
        + """
SIGCHLD = 17

def clone3(flags):
    # struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls
    args = ctypes.create_string_buffer(struct.pack("QQQQQQQQ", flags, 0, 0, 0, SIGCHLD, 0, 0, 0))
    return syscall(NR["clone3"], args, 64)

def handler(event, context):
    return {
        "clone_newuser": in_child(lambda: syscall(NR["clone"], 0x10000000 | SIGCHLD, 0, 0, 0, 0)),
        "clone_newns": in_child(lambda: syscall(NR["clone"], 0x00020000 | SIGCHLD, 0, 0, 0, 0)),
        "clone_newnet": in_child(lambda: syscall(NR["clone"], 0x40000000 | SIGCHLD, 0, 0, 0, 0)),
        "clone3_newuser": in_child(lambda: clone3(0x10000000)),
        "plain_fork_still_works": in_child(lambda: syscall(NR["clone"], SIGCHLD, 0, 0, 0, 0)),
    }
""",
    )
    seen = api.post("/v1/functions/sys-clone/invoke").json()
    assert seen.pop("plain_fork_still_works") == "ok"
    assert seen.pop("clone3_newuser") in ("EPERM", "ENOSYS")  # ENOSYS: libc falls back to clone
    assert seen == dict.fromkeys(seen, "EPERM")


FORBIDDEN = {
    # name: the call, as Python source over the prelude; harmless even if it were allowed
    "keyctl": 'syscall(NR["keyctl"], 0, -3, 0)',  # KEYCTL_GET_KEYRING_ID of the session keyring
    "add_key": 'syscall(NR["add_key"], "user", "wuzhao-test", "x", 1, -2)',
    "request_key": 'syscall(NR["request_key"], "user", "wuzhao-test", None, 0)',
    "bpf": 'syscall(NR["bpf"], 0, ctypes.create_string_buffer(128), 128)',  # BPF_MAP_CREATE, zeros
    "perf_event_open": 'syscall(NR["perf_event_open"], perf_attr(), 0, -1, -1, 0)',
    "userfaultfd": 'syscall(NR["userfaultfd"], 0o2000000 | 1)',  # O_CLOEXEC | UFFD_USER_MODE_ONLY
    "io_uring_setup": 'syscall(NR["io_uring_setup"], 1, ctypes.create_string_buffer(120))',
    "kexec_load": 'syscall(NR["kexec_load"], 0, 0, None, 0xDEAD0000)',  # invalid flags
    "kexec_file_load": 'syscall(NR["kexec_file_load"], -1, -1, 0, None, 0xDEAD0000)',
    "init_module": 'syscall(NR["init_module"], None, 0, "")',
    "finit_module": 'syscall(NR["finit_module"], -1, "", 0)',
    "delete_module": 'syscall(NR["delete_module"], "wuzhao_no_such_module", 0o4000)',
    "reboot": 'syscall(NR["reboot"], 0, 0, 0, None)',  # wrong magic numbers
    "swapon": 'syscall(NR["swapon"], "/tmp/no-such-swap", 0)',
    "swapoff": 'syscall(NR["swapoff"], "/tmp/no-such-swap")',
    "acct": 'syscall(NR["acct"], "/tmp/no-such-dir/acct")',
    "syslog": 'syscall(NR["syslog"], 10, None, 0)',  # SYSLOG_ACTION_SIZE_BUFFER
    "open_by_handle_at": 'syscall(NR["open_by_handle_at"], -100, ctypes.create_string_buffer(136), 0)',
}


@pytest.mark.parametrize("name", list(FORBIDDEN))
def test_forbidden_syscall_is_eperm(api, hostile, name):
    function = f"sys-{name.replace('_', '-')}"
    hostile(
        function,
        SYSCALLS
        + f"""
def perf_attr():
    attr = bytearray(136)
    struct.pack_into("IIQ", attr, 0, 1, 136, 0)  # PERF_TYPE_SOFTWARE, size, PERF_COUNT_SW_CPU_CLOCK
    struct.pack_into("Q", attr, 40, 1 << 5 | 1 << 6)  # exclude_kernel, exclude_hv
    return ctypes.create_string_buffer(bytes(attr))

def handler(event, context):
    return in_child(lambda: {FORBIDDEN[name]})
""",
    )
    assert api.post(f"/v1/functions/{function}/invoke").json() == "EPERM"


def test_foreign_abi_syscalls_are_refused(api, hostile):
    hostile(
        "sys-abi",
        SYSCALLS
        + """
import mmap

def i386_getpid():
    # mov eax, 20 (getpid in the i386 table); int 0x80; ret
    code = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    code.write(bytes.fromhex("b814000000cd80c3"))
    function = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(code)))
    result = function()
    return errname(-result) if -4096 < result < 0 else "ok"

def handler(event, context):
    return {
        "x32_getpid": in_child(lambda: syscall(0x40000000 | 39)),
        "i386_getpid": in_child(i386_getpid),
    }
""",
    )
    seen = api.post("/v1/functions/sys-abi/invoke").json()
    # refused with an errno, or the process killed by the filter (SIGSYS)
    for abi, outcome in seen.items():
        assert outcome in ("EPERM", "ENOSYS", "killed by SIGSYS"), (abi, outcome)


def test_open_files_are_limited(api, hostile):
    hostile(
        "sys-nofile",
        SYSCALLS
        + """
import resource

def handler(event, context):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard * 2, hard * 2))
        raise_hard = "ok"
    except ValueError as exc:  # how Python reports EPERM from setrlimit
        raise_hard = str(exc)
    opened = []
    try:
        while len(opened) < 100000:
            opened.append(os.open("/dev/null", os.O_RDONLY))
        error = None
    except OSError as exc:
        error = errname(exc.errno)
    finally:
        for fd in opened:
            os.close(fd)
    return {"soft": soft, "hard": hard, "opened": len(opened), "error": error, "raise_hard": raise_hard}
""",
    )
    seen = api.post("/v1/functions/sys-nofile/invoke").json()
    assert seen["soft"] == seen["hard"] <= 1024  # as on Lambda (the sandbox contract's nofile)
    assert seen["error"] == "EMFILE"
    assert seen["opened"] <= seen["soft"]
    assert seen["raise_hard"] == "not allowed to raise maximum limit"
