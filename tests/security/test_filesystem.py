"""Hostile functions against the filesystem: read-only root, capped /tmp and /dev/shm, no devices, no /sys."""

from __future__ import annotations

import errno
import os

from tests.security.conftest import NEEDS_SANDBOX, TMP_SIZE_MB

pytestmark = NEEDS_SANDBOX

EROFS = errno.errorcode[errno.EROFS]
# Changing a file that exists can fail on its permissions (it belongs to a host uid the
# sandbox does not map) before the read-only mount is consulted: both are a refusal.
READ_ONLY_FILE = {EROFS, errno.errorcode[errno.EACCES]}
DENIED = {errno.errorcode[e] for e in (errno.EACCES, errno.EPERM, errno.EROFS)}

WRITERS = """
from hostile import *

def create(path):
    with open(path, "x") as out:
        out.write("pwned")

def append(path):
    with open(path, "a") as out:
        out.write("pwned")
"""


def test_write_root_is_erofs(api, hostile):
    hostile(
        "fs-root",
        WRITERS
        + """
def handler(event, context):
    return {
        "create": attempt(create, "/pwned"),
        "mkdir": attempt(os.mkdir, "/pwned"),
        "symlink": attempt(os.symlink, "/tmp", "/pwned"),
        "create_etc": attempt(create, "/etc/pwned"),
        "unlink_etc": attempt(os.unlink, "/etc/passwd"),
        "rename_etc": attempt(os.rename, "/etc/hostname", "/etc/pwned"),
        "append_etc": attempt(append, "/etc/passwd"),
        "passwd": open("/etc/passwd").read(),
    }
""",
    )
    seen = api.post("/v1/functions/fs-root/invoke").json()
    append_etc = seen.pop("append_etc")
    passwd = seen.pop("passwd")
    assert seen == dict.fromkeys(seen, EROFS)
    assert append_etc in READ_ONLY_FILE
    assert "pwned" not in passwd


def test_write_usr_is_erofs(api, hostile):
    hostile(
        "fs-usr",
        WRITERS
        + """
def handler(event, context):
    stdlib = next(p for p in sys.path if os.path.exists(p + "/os.py"))  # its path inside
    return {
        "create_usr": attempt(create, "/usr/pwned"),
        "create_bin": attempt(create, "/usr/bin/pwned"),
        "create_stdlib": attempt(create, stdlib + "/pwned.py"),
        "unlink_env": attempt(os.unlink, "/usr/bin/env"),
        "chmod_env": attempt(os.chmod, "/usr/bin/env", 0o777),
        "append_env": attempt(append, "/usr/bin/env"),
        "append_stdlib": attempt(append, stdlib + "/os.py"),
    }
""",
    )
    seen = api.post("/v1/functions/fs-usr/invoke").json()
    appends = {seen.pop("append_env"), seen.pop("append_stdlib")}
    assert seen == dict.fromkeys(seen, EROFS)
    assert appends <= READ_ONLY_FILE


def test_write_own_code_is_erofs(api, hostile):
    hostile(
        "fs-code",
        WRITERS
        + """
def handler(event, context):
    before = open("/var/task/main.py").read()
    seen = {
        "create": attempt(create, "/var/task/pwned.py"),
        "mkdir": attempt(os.mkdir, "/var/task/__pycache__"),
        "unlink": attempt(os.unlink, "/var/task/main.py"),
        "rename": attempt(os.rename, "/var/task/main.py", "/var/task/old.py"),
        "chmod": attempt(os.chmod, "/var/task/main.py", 0o777),
        "append": attempt(append, "/var/task/main.py"),
    }
    seen["unchanged"] = open("/var/task/main.py").read() == before
    return seen
""",
    )
    seen = api.post("/v1/functions/fs-code/invoke").json()
    assert seen.pop("unchanged") is True
    assert seen.pop("append") in READ_ONLY_FILE
    assert seen == dict.fromkeys(seen, EROFS)


FILL = """
from hostile import *

def fill(path):
    chunk = b"x" * (1024 * 1024)
    written = 0
    try:
        with open(path, "wb", buffering=0) as out:
            while written < 1024 * chunk.__len__():  # never more than 1 GB
                written += out.write(chunk)
    except OSError as exc:
        return {"error": errname(exc.errno), "written": written}
    return {"error": None, "written": written}

def handler(event, context):
    result = fill(event["path"])
    os.unlink(event["path"])
    result["after_unlink"] = attempt(lambda: open(event["path"], "w").write("room again"))
    return result
"""


def test_fill_tmp_is_enospc(api, hostile):
    hostile("fs-fill-tmp", FILL)
    result = api.post("/v1/functions/fs-fill-tmp/invoke", json={"path": "/tmp/fill"}).json()
    assert result["error"] == errno.errorcode[errno.ENOSPC]
    assert result["written"] <= TMP_SIZE_MB * 1024 * 1024
    assert result["written"] >= (TMP_SIZE_MB - 1) * 1024 * 1024  # the cap, not something smaller
    assert result["after_unlink"] == "ok"


def test_fill_dev_shm_is_enospc(api, hostile):
    hostile("fs-fill-shm", FILL)
    result = api.post("/v1/functions/fs-fill-shm/invoke", json={"path": "/dev/shm/fill"}).json()
    assert result["error"] == errno.errorcode[errno.ENOSPC]
    assert result["written"] <= 4 * 1024 * 1024  # "a tiny /dev/shm"
    assert result["after_unlink"] == "ok"


def test_mknod_is_denied(api, hostile):
    hostile(
        "fs-mknod",
        """
from hostile import *
import stat

def node(path, kind, major, minor):
    return attempt(os.mknod, path, kind | 0o666, os.makedev(major, minor))

def handler(event, context):
    return {
        "mem_in_tmp": node("/tmp/mem", stat.S_IFCHR, 1, 1),
        "disk_in_tmp": node("/tmp/sda", stat.S_IFBLK, 8, 0),
        "kmsg_in_shm": node("/dev/shm/kmsg", stat.S_IFCHR, 1, 11),
        "mem_in_dev": node("/dev/mem", stat.S_IFCHR, 1, 1),
    }
""",
    )
    seen = api.post("/v1/functions/fs-mknod/invoke").json()
    # /dev is read-only as well: the filter or the mount refuses first, either is a refusal
    assert seen.pop("mem_in_dev") in ("EPERM", EROFS)
    assert seen == {"mem_in_tmp": "EPERM", "disk_in_tmp": "EPERM", "kmsg_in_shm": "EPERM"}


def test_open_dev_mem_is_denied(api, hostile):
    hostile(
        "fs-devmem",
        """
from hostile import *

def handler(event, context):
    paths = ["/dev/mem", "/dev/kmem", "/dev/port", "/dev/kmsg", "/dev/sda", "/dev/vda",
             "/dev/tty", "/dev/console", "/dev/ptmx", "/dev/fuse", "/dev/net/tun", "/dev/autofs"]
    return {
        "open": {path: attempt(lambda p: os.close(os.open(p, os.O_RDONLY)), path) for path in paths},
        "kcore": attempt(lambda: open("/proc/kcore", "rb").read(1)),
        "dev": sorted(os.listdir("/dev")),
    }
""",
    )
    seen = api.post("/v1/functions/fs-devmem/invoke").json()
    assert seen["open"] == dict.fromkeys(seen["open"], errno.errorcode[errno.ENOENT])
    assert seen["kcore"] in DENIED | {errno.errorcode[errno.ENOENT]}
    # a minimal /dev: the harmless character devices, the fd links and /dev/shm; no tty
    allowed = {"null", "zero", "full", "random", "urandom", "fd", "stdin", "stdout", "stderr", "shm"}
    assert set(seen["dev"]) <= allowed
    assert {"null", "zero", "random", "urandom", "shm"} <= set(seen["dev"])


def test_setuid_binary_in_tmp_gains_nothing(api, hostile):
    hostile(
        "fs-setuid",
        """
from hostile import *
import shutil, subprocess

def handler(event, context):
    shutil.copy("/usr/bin/cat", "/tmp/cat")
    os.chmod("/tmp/cat", 0o4755)
    mode = os.stat("/tmp/cat").st_mode
    try:
        run = subprocess.run(["/tmp/cat", "/proc/self/status"], capture_output=True, timeout=10)
    except OSError as exc:
        return {"setuid_bit": bool(mode & 0o4000), "exec": errname(exc.errno)}
    return {
        "setuid_bit": bool(mode & 0o4000),
        "exec": "ok",
        "self": status_fields(open("/proc/self/status").read()),
        "child": status_fields(run.stdout.decode()),
        "uid_map_self": open("/proc/self/uid_map").read().split(),
    }
""",
    )
    seen = api.post("/v1/functions/fs-setuid/invoke").json()
    if seen["exec"] != "ok":  # refusing to run it is one way to give nothing
        assert seen["exec"] in DENIED
        return
    me, child = seen["self"], seen["child"]
    assert child["Uid"].split() == me["Uid"].split() == ["0"] * 4
    assert child["Gid"].split() == me["Gid"].split()
    assert child["NoNewPrivs"].strip() == "1"
    for caps in ("CapEff", "CapPrm", "CapAmb"):  # no capability it did not already have
        assert int(child[caps], 16) & ~int(me[caps], 16) == 0, caps


def test_mounts_are_nosuid_and_nodev(api, hostile):
    hostile(
        "fs-mountflags",
        """
def handler(event, context):
    mounts = {}
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        mounts[fields[4]] = fields[5].split(",")
    return mounts
""",
    )
    mounts = api.post("/v1/functions/fs-mountflags/invoke").json()
    devices = {f"/dev/{name}" for name in ("null", "zero", "full", "random", "urandom")}
    for point, options in mounts.items():
        assert "nosuid" in options, point
        if point not in devices:
            assert "nodev" in options, point
    for point in ("/", "/usr", "/var/task"):
        assert "ro" in mounts[point], point
    assert "rw" in mounts["/tmp"]


def test_write_proc_sys_is_denied(api, hostile):
    with open("/proc/sys/kernel/core_pattern") as host_file:
        host_core_pattern = host_file.read()
    hostile(
        "fs-procsys",
        """
from hostile import *

def put(path, value):
    with open(path, "w") as out:
        out.write(value)

def handler(event, context):
    core_pattern = open("/proc/sys/kernel/core_pattern").read()
    return {
        "hostname": attempt(put, "/proc/sys/kernel/hostname", "pwned"),
        "core_pattern": attempt(put, "/proc/sys/kernel/core_pattern", core_pattern),
        "ip_forward": attempt(put, "/proc/sys/net/ipv4/ip_forward", "1"),
        "overcommit": attempt(put, "/proc/sys/vm/overcommit_memory", "1"),
        "hostname_after": socket.gethostname(),
    }
""",
    )
    seen = api.post("/v1/functions/fs-procsys/invoke").json()
    assert seen.pop("hostname_after") == "sandbox"
    assert set(seen.values()) <= DENIED, seen
    with open("/proc/sys/kernel/core_pattern") as host_file:
        assert host_file.read() == host_core_pattern


def test_write_sysrq_trigger_is_denied(api, hostile):
    hostile(
        "fs-sysrq",
        """
from hostile import *

def put(path, value):
    with open(path, "w") as out:
        out.write(value)

def handler(event, context):
    return {
        "trigger": attempt(put, "/proc/sysrq-trigger", "h"),  # "h" only prints help, were it allowed
        "sysrq": attempt(put, "/proc/sys/kernel/sysrq", "1"),
    }
""",
    )
    seen = api.post("/v1/functions/fs-sysrq/invoke").json()
    for name, path in (("trigger", "/proc/sysrq-trigger"), ("sysrq", "/proc/sys/kernel/sysrq")):
        if os.path.exists(path):
            assert seen[name] in DENIED, seen
        else:  # a kernel built without magic SysRq has nothing there to write to
            assert seen[name] == errno.errorcode[errno.ENOENT], seen


def test_sys_is_absent(api, hostile):
    hostile(
        "fs-sys",
        """
from hostile import *

def handler(event, context):
    types = [line.split(" - ")[1].split()[0] for line in open("/proc/self/mountinfo")]
    return {
        "exists": [p for p in ("/sys", "/sys/fs/cgroup", "/sys/kernel") if os.path.exists(p)],
        "list": attempt(os.listdir, "/sys"),
        "types": sorted(set(types)),
    }
""",
    )
    seen = api.post("/v1/functions/fs-sys/invoke").json()
    assert seen["exists"] == []
    assert seen["list"] == errno.errorcode[errno.ENOENT]
    assert not {"sysfs", "cgroup", "cgroup2", "debugfs", "securityfs", "bpf"} & set(seen["types"])
