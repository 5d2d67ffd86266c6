"""Real handler code in real sandboxes: the seccomp policy, capabilities and limits, from inside.

Uses the rig of ``test_launcher`` (a real ZygoteLauncher per test, nothing left
on the host afterwards), on an instance the zygote forks and on one made from
its prepared shells. The handlers live in ``hard.py`` next to the rig's
``app.py``; every refused call must fail with exactly the errno named here.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import signal
import textwrap
from pathlib import Path
from typing import Any

import pytest
from tests.integration.sandbox.test_launcher import STEP, UNAVAILABLE, Rig, Runtime, run

from wuzhao.runtimes import protocol
from wuzhao.sandbox import seccomp
from wuzhao.sandbox.api import ExitStatus

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(bool(UNAVAILABLE), reason=UNAVAILABLE),
    pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers are x86_64's"),
]

HARD = """
import ctypes, errno, mmap, multiprocessing, os, resource, shutil, signal, socket, struct
import subprocess, threading, time

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def _arg(value):
    if value is None or isinstance(value, int):
        return ctypes.c_long(value or 0)
    if isinstance(value, str):
        return ctypes.c_char_p(value.encode())
    return value  # a ctypes buffer

def syscall(number, *args):
    "0 when the call went through, else its errno."
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(number), *map(_arg, args))
    return ctypes.get_errno() if result == -1 else 0

def oserror(action):
    try:
        action()
        return 0
    except OSError as exc:
        return exc.errno

SIGCHLD = 17
CLONE_NEWUSER = 0x10000000

def blocked(event, context):
    nr = event["nr"]
    out = {}
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        out["listen inet"] = oserror(server.listen)
        out["accept inet"] = oserror(server.accept)
    with socket.socket(socket.AF_UNIX) as server:
        server.bind("\\0wuzhao-hardening")
        out["listen unix"] = oserror(server.listen)
    out["socket packet"] = oserror(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0x0300))
    out["socket raw"] = oserror(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
    out["socket raw nonblock"] = oserror(
        lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.IPPROTO_TCP))
    child = os.fork()
    if child == 0:
        time.sleep(60)
        os._exit(0)
    try:
        out["ptrace attach"] = syscall(nr["ptrace"], 16, child, 0, 0)  # PTRACE_ATTACH
        iov = ctypes.create_string_buffer(struct.pack("QQ", 0, 0))
        out["process_vm_readv"] = syscall(nr["process_vm_readv"], child, iov, 1, iov, 1, 0)
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    os.makedirs("/tmp/m", exist_ok=True)
    out["mount"] = syscall(nr["mount"], "tmpfs", "/tmp/m", "tmpfs", 0, None)
    out["umount2"] = syscall(nr["umount2"], "/proc", 2)
    out["pivot_root"] = syscall(nr["pivot_root"], "/tmp", "/tmp")
    out["unshare user"] = syscall(nr["unshare"], CLONE_NEWUSER)
    out["unshare mount"] = syscall(nr["unshare"], 0x00020000)
    fd = os.open("/proc/self/ns/net", os.O_RDONLY)
    out["setns"] = syscall(nr["setns"], fd, 0)
    os.close(fd)
    flags = ctypes.c_long(CLONE_NEWUSER | SIGCHLD)
    pid = libc.syscall(ctypes.c_long(nr["clone"]), flags, *[ctypes.c_long(0)] * 4)
    if pid == 0:
        os._exit(0)  # a clone that got through: leave at once
    out["clone newuser"] = ctypes.get_errno() if pid == -1 else 0
    clone_args = ctypes.create_string_buffer(struct.pack("8Q", CLONE_NEWUSER, 0, 0, 0, SIGCHLD, 0, 0, 0))
    out["clone3"] = syscall(nr["clone3"], clone_args, 64)
    out["keyctl"] = syscall(nr["keyctl"], 0, -3, 0)  # KEYCTL_GET_KEYRING_ID, session keyring
    out["add_key"] = syscall(nr["add_key"], "user", "wuzhao", "x", 1, -2)
    out["bpf"] = syscall(nr["bpf"], 0, ctypes.create_string_buffer(128), 128)
    out["perf_event_open"] = syscall(nr["perf_event_open"], ctypes.create_string_buffer(128), 0, -1, -1, 0)
    out["userfaultfd"] = syscall(nr["userfaultfd"], 0o2000000)
    out["io_uring_setup"] = syscall(nr["io_uring_setup"], 1, ctypes.create_string_buffer(120))
    out["personality no aslr"] = syscall(nr["personality"], 0x0040000)
    for name in ("reboot", "init_module", "finit_module", "delete_module", "swapon", "acct",
                 "syslog", "kexec_load", "chroot", "settimeofday", "iopl"):
        out[name] = syscall(nr[name], -1, -1, -1, -1)
    return out

def still_works(event, context):
    box = []
    thread = threading.Thread(target=box.append, args=("thread",))
    thread.start()
    thread.join()
    pid = os.fork()
    if pid == 0:
        os._exit(3)
    _, status = os.waitpid(pid, 0)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        squares = pool.map(abs, [-1, -2, -3])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.sendto(b"ping", peer.getsockname())
        udp = peer.recv(4).decode()
    left, right = socket.socketpair()
    left.send(b"x")
    return {
        "thread": box,
        "fork": os.waitstatus_to_exitcode(status),
        "true": subprocess.run(["true"]).returncode,
        "shell": subprocess.run(["sh", "-c", "echo $((6*7))"], capture_output=True, text=True).stdout,
        "pool": squares,
        "udp": udp,
        "socketpair": right.recv(1).decode(),
        "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")) [:4],
        "interfaces": [name for _, name in socket.if_nameindex()],
    }

def status(text):
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

def identity(event, context):
    mine = status(open("/proc/self/status").read())
    executed = status(subprocess.run(["cat", "/proc/self/status"], capture_output=True, text=True).stdout)
    keys = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")
    return {
        "self": {k: mine[k].strip() for k in keys},
        "executed": {k: executed[k].strip() for k in keys},
        "dumpable": libc.prctl(3, 0, 0, 0, 0),  # PR_GET_DUMPABLE
        "environ of pid 1": oserror(lambda: open("/proc/1/environ", "rb").read()),
        "core": list(resource.getrlimit(resource.RLIMIT_CORE)),
        "batch": os.sched_getscheduler(0) == os.SCHED_BATCH,
        "setuid to nobody": oserror(lambda: os.setuid(65534)),
    }

def open_files(event, context):
    held = []
    try:
        while len(held) < event["count"]:
            held.append(os.open("/dev/null", os.O_RDONLY))
        failure = 0
    except OSError as exc:
        failure = exc.errno
    for fd in held:
        os.close(fd)
    return {"limit": list(resource.getrlimit(resource.RLIMIT_NOFILE)), "opened": len(held), "errno": failure}

def fill(path, size):
    try:
        with open(path, "wb") as f:
            f.write(b"x" * size)
            f.flush()
        return 0
    except OSError as exc:
        return exc.errno
    finally:
        if os.path.exists(path):
            os.unlink(path)

def filesystems(event, context):
    flags = {p: os.statvfs(p).f_flag for p in ("/tmp", "/dev/shm")}
    return {
        "tmp full": fill("/tmp/big", 16 << 20),
        "shm full": fill("/dev/shm/big", 2 << 20),
        "tmp small file": fill("/tmp/small", 1 << 20),
        "nosuid": {p: bool(f & os.ST_NOSUID) for p, f in flags.items()},
        "nodev": {p: bool(f & os.ST_NODEV) for p, f in flags.items()},
        "mknod char": oserror(lambda: os.mknod("/tmp/mem", 0o020600, os.makedev(1, 1))),
        "mknod block": oserror(lambda: os.mknod("/tmp/sda", 0o060600, os.makedev(8, 0))),
        "mkfifo": oserror(lambda: os.mkfifo("/tmp/fifo")),
        "dev mem": oserror(lambda: open("/dev/mem", "rb")),
        "dev kmem": oserror(lambda: open("/dev/kmem", "rb")),
        "sys": os.path.exists("/sys"),
    }

def setuid_binary(event, context):
    shutil.copy2("/var/task/suid-id", "/tmp/suid-id")
    return {
        "task copy": subprocess.run(["/var/task/suid-id", "-u"], capture_output=True, text=True).stdout,
        "tmp copy mode": oct(os.stat("/tmp/suid-id").st_mode & 0o7777),
        "tmp copy": subprocess.run(["/tmp/suid-id", "-u"], capture_output=True, text=True).stdout,
        "tmp copy group": subprocess.run(["/tmp/suid-id", "-g"], capture_output=True, text=True).stdout,
    }

def proc_writes(event, context):
    def write(path):
        with open(path, "w") as f:
            f.write("1")
    paths = ["/proc/sysrq-trigger", "/proc/sys/kernel/hostname", "/proc/sys/vm/drop_caches",
             "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/core_pattern"]
    return {path: oserror(lambda path=path: write(path)) for path in paths}

def x32(event, context):
    return syscall(0x40000000 | 39)  # getpid, x32 numbering

def i386(event, context):
    code = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    code.write(bytes.fromhex("b814000000cd80c3"))  # mov eax, 20 (getpid); int 0x80; ret
    function = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(code)))
    return function()
"""


def words(text: str) -> list[str]:
    return text.split()


# The syscalls ``blocked`` makes, by number (the handler has no libseccomp to ask).
NAMES = words("""
    ptrace process_vm_readv mount umount2 pivot_root unshare setns clone clone3 keyctl add_key
    bpf perf_event_open userfaultfd io_uring_setup personality reboot init_module finit_module
    delete_module swapon acct syslog kexec_load chroot settimeofday iopl
""")


def numbers() -> dict[str, int]:
    lib = seccomp._libseccomp()
    found = {name: seccomp.syscall_number(lib, name) for name in NAMES}
    assert None not in found.values()
    return {name: nr for name, nr in found.items() if nr is not None}


async def call(runtime: Runtime, handler: str, event: Any = None) -> Any:
    """INIT ``hard.<handler>``, then one INVOKE: the handler's result."""
    ready = await runtime.init(f"hard.{handler}")
    assert ready is not None and ready.kind == protocol.READY, ready
    result = await runtime.invoke(event)
    assert result is not None and result.kind == protocol.RESULT, result
    return json.loads(result.body)


def install(r: Rig) -> None:
    code = Path(r.spec.code_dir)
    (code / "hard.py").write_text(textwrap.dedent(HARD))
    (code / "hard.py").chmod(0o644)


def test_blocked_syscalls_fail_with_their_errno_inside(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        install(r)
        _, runtime = await r.launch()
        seen = await call(runtime, "blocked", {"nr": numbers()})
        assert seen.pop("clone3") == errno.ENOSYS  # glibc falls back to clone, which is filtered
        assert seen == dict.fromkeys(seen, errno.EPERM)

    run(tmp_path, test, shells=shells)


def test_fork_threads_subprocess_and_multiprocessing_still_work(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        install(r)
        _, runtime = await r.launch()
        assert await call(runtime, "still_works") == {
            "thread": ["thread"],
            "fork": 3,
            "true": 0,
            "shell": "42\n",
            "pool": [1, 2, 3],
            "udp": "ping",
            "socketpair": "x",
            "fds": [0, 1, 2, 3],
            "interfaces": ["lo"],
        }

    run(tmp_path, test, shells=shells)


def test_uid_0_inside_has_no_capability_and_is_not_dumpable(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        install(r)
        _, runtime = await r.launch()
        seen = await call(runtime, "identity")
        none = "0000000000000000"
        expected = {"CapInh": none, "CapPrm": none, "CapEff": none, "CapBnd": none, "CapAmb": none}
        expected |= {"NoNewPrivs": "1", "Seccomp": "2"}
        # A program executed as uid 0 gains nothing either (empty bounding set, NOROOT).
        assert seen["self"] == seen["executed"] == expected
        assert seen["dumpable"] == 0
        assert seen["environ of pid 1"] == errno.EACCES
        assert seen["core"] == [0, 0]
        assert seen["batch"]  # a woken instance does not preempt the worker
        assert seen["setuid to nobody"] == errno.EINVAL  # 65534 is not mapped: only uid 0 exists

    run(tmp_path, test, shells=shells)


def test_open_files_are_capped(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        install(r)
        _, runtime = await r.launch()
        seen = await call(runtime, "open_files", {"count": 2000})
        assert seen["limit"] == [1024, 1024]
        assert seen["errno"] == errno.EMFILE
        assert 1000 < seen["opened"] < 1024  # stdio, the channel and the runtime's own hold the rest
        _, runtime = await r.launch(instance_id="i-2", nofile=64)
        seen = await call(runtime, "open_files", {"count": 100})
        assert (seen["limit"], seen["errno"]) == ([64, 64], errno.EMFILE)

    run(tmp_path, test, shells=shells)


def test_tmp_and_dev_shm_are_capped_nosuid_nodev_and_devices_absent(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        install(r)
        _, runtime = await r.launch()
        assert await call(runtime, "filesystems") == {
            "tmp full": errno.ENOSPC,  # the rig caps /tmp at 8 MB
            "shm full": errno.ENOSPC,  # /dev/shm is 1 MB
            "tmp small file": 0,  # the failed writes were undone
            "nosuid": {"/tmp": True, "/dev/shm": True},
            "nodev": {"/tmp": True, "/dev/shm": True},
            "mknod char": errno.EPERM,
            "mknod block": errno.EPERM,
            "mkfifo": 0,
            "dev mem": errno.ENOENT,
            "dev kmem": errno.ENOENT,
            "sys": False,
        }

    run(tmp_path, test, shells=shells)


def test_a_setuid_binary_gives_nothing(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        install(r)
        binary = Path(r.spec.code_dir) / "suid-id"
        shutil.copy("/usr/bin/id", binary)
        os.chown(binary, 0, 0)
        binary.chmod(0o6755)  # setuid and setgid root on the host
        _, runtime = await r.launch()
        seen = await call(runtime, "setuid_binary")
        # uid 0 inside is the instance's own host uid: had the bit worked, the
        # program would run as host root, which shows as 65534 (unmapped) inside.
        assert seen == {
            "task copy": "0\n",
            "tmp copy mode": "0o6755",
            "tmp copy": "0\n",
            "tmp copy group": "0\n",
        }

    run(tmp_path, test, shells=shells)


def test_proc_sys_and_sysrq_trigger_are_not_writable(tmp_path: Path, shells: int) -> None:
    async def test(r: Rig) -> None:
        install(r)
        _, runtime = await r.launch()
        seen = await call(runtime, "proc_writes")
        # Kernels without CONFIG_MAGIC_SYSRQ have no trigger at all.
        sysrq = errno.EACCES if os.path.exists("/proc/sysrq-trigger") else errno.ENOENT
        assert seen == {**dict.fromkeys(seen, errno.EACCES), "/proc/sysrq-trigger": sysrq}

    run(tmp_path, test, shells=shells)


@pytest.mark.parametrize("handler", ["x32", "i386"])
def test_a_foreign_abi_syscall_kills_the_instance(tmp_path: Path, handler: str) -> None:
    async def test(r: Rig) -> None:
        install(r)
        proc, runtime = await r.launch()
        ready = await runtime.init(f"hard.{handler}")
        assert ready is not None
        assert await runtime.invoke(None) is None  # killed mid-call
        assert await asyncio.wait_for(proc.wait(), STEP) == ExitStatus(None, signal.SIGSYS)

    run(tmp_path, test)
