"""Hostile functions looking around: they must see nothing of the platform, the host or other processes."""

from __future__ import annotations

import os
import sys

from tests.security.conftest import NEEDS_SANDBOX, UID_BASE, UID_COUNT

from wuzhao.domain.functions import FunctionConfig
from wuzhao.domain.versions import Executable
from wuzhao.worker.factory import runtime_environment

pytestmark = NEEDS_SANDBOX


def host_secrets(server) -> list[str]:
    """Strings that name the platform or the host and must never be readable inside."""
    import wuzhao

    return [
        str(server.data_dir),  # the data dir: code, database, admin key
        server.key,
        f":{server.port}",
        f"{server.port:04X}",  # a port as /proc/net/tcp writes it
        os.path.dirname(os.path.dirname(wuzhao.__file__)),  # the platform's source tree
        sys.prefix,  # the server's virtualenv
    ]


def test_environment_has_only_allowed_variables(api, hostile):
    created = hostile(
        "vis-env",
        """
from hostile import *

def initial(path):
    # the environment the process started with (the zygote's); unreadable is fine too
    try:
        return open(path, "rb").read().decode("latin-1")
    except OSError as exc:
        return errname(exc.errno)

def handler(event, context):
    initial_environ = [initial("/proc/self/environ"), initial("/proc/1/environ")]
    return {"environ": dict(os.environ), "initial": initial_environ}
""",
        env={"MY_SETTING": "1"},
    )
    seen = api.post("/v1/functions/vis-env/invoke").json()
    target = Executable(
        namespace="default",
        function="vis-env",
        version="$LATEST",
        revision=created["revision"],
        config=FunctionConfig(env={"MY_SETTING": "1"}),
        code_sha256=created["code_sha256"],
    )
    allowed = runtime_environment(target)
    # exactly the function's env and the documented runtime variables, nothing more
    assert seen["environ"] == allowed
    for initial in seen["initial"]:
        if initial in ("EACCES", "EPERM"):
            continue
        names = {entry.split("=", 1)[0] for entry in initial.split("\0") if entry}
        assert names <= set(allowed), names


def test_process_list_is_only_its_own(api, hostile):
    hostile(
        "vis-ps",
        """
from hostile import *

def handler(event, context):
    child = os.fork()
    if child == 0:
        time.sleep(30)
        os._exit(0)
    try:
        pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        tasks = sorted(int(t) for t in os.listdir("/proc/1/task"))
        # pids the host surely has (its init, kernel threads) are not there
        host = {pid: os.path.exists(f"/proc/{pid}") for pid in (2, 3, 100, 1000)}
        signal_host = attempt(os.kill, 2, 0)  # kthreadd on the host; nobody here
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    return {"self": os.getpid(), "child": child, "pids": pids, "tasks": tasks,
            "host": host, "signal_host": signal_host}
""",
    )
    seen = api.post("/v1/functions/vis-ps/invoke").json()
    assert seen["self"] == 1  # pid 1 of a pid namespace of its own
    assert seen["pids"] == sorted([1, seen["child"]])  # itself and the child it made, nothing else
    assert seen["tasks"] == [1]
    others = {pid: there for pid, there in seen["host"].items() if int(pid) != seen["child"]}
    assert not any(others.values())
    if seen["child"] != 2:
        assert seen["signal_host"] == "ESRCH"


def test_inherited_fds_are_only_0_to_3(api, hostile):
    hostile(
        "vis-fds",
        """
from hostile import *
import subprocess

def is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False

PROBE = "import os\\nprint([fd for fd in range(4096) if os.path.exists(f'/proc/self/fd/{fd}')])"

def handler(event, context):
    fds = [fd for fd in range(65536) if is_open(fd)]
    kinds = {fd: os.readlink(f"/proc/self/fd/{fd}").split(":")[0] for fd in fds}
    child = subprocess.run([sys.executable, "-I", "-c", PROBE], capture_output=True, close_fds=False)
    return {"fds": fds, "kinds": kinds, "exec_fds": child.stdout.decode().strip(),
            "exec_err": child.stderr.decode()[-500:]}
""",
    )
    seen = api.post("/v1/functions/vis-fds/invoke").json()
    assert seen["fds"] == [0, 1, 2, 3]  # stdin, stdout, stderr, the runtime channel
    assert seen["kinds"] == {"0": "/dev/null", "1": "pipe", "2": "pipe", "3": "socket"}
    # a program the function runs inherits stdio only, never the runtime channel
    assert seen["exec_fds"] == "[0, 1, 2]", seen["exec_err"]


def test_identity_is_root_inside_an_unprivileged_host_uid(api, hostile):
    hostile(
        "vis-identity",
        """
from hostile import *

def handler(event, context):
    return {
        "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
        "uid_map": open("/proc/self/uid_map").read().split(),
        "gid_map": open("/proc/self/gid_map").read().split(),
        "hostname": socket.gethostname(),
        "etc_hostname": open("/etc/hostname").read().strip(),
        "domainname": os.uname().nodename,
    }
""",
    )
    seen = api.post("/v1/functions/vis-identity/invoke").json()
    assert (seen["uid"], seen["gid"], seen["groups"]) == (0, 0, [])
    inside, host, count = seen["uid_map"]
    assert (inside, count) == ("0", "1")  # one uid mapped: no other identity to become
    assert UID_BASE <= int(host) < UID_BASE + UID_COUNT  # an unprivileged uid from the server's range
    assert seen["gid_map"] == seen["uid_map"]
    assert seen["hostname"] == seen["etc_hostname"] == seen["domainname"] == "sandbox"


def test_capabilities_are_dropped(api, hostile):
    hostile(
        "vis-caps",
        """
from hostile import *

def handler(event, context):
    return status_fields(open("/proc/self/status").read())
""",
    )
    status = api.post("/v1/functions/vis-caps/invoke").json()
    # no capability, not even inside its own user namespace, and none to regain by exec
    for field in ("CapInh", "CapPrm", "CapEff", "CapAmb", "CapBnd"):
        assert int(status[field], 16) == 0, f"{field} = {status[field]}"
    assert status["NoNewPrivs"].strip() == "1"


def test_mountinfo_names_no_host_path(server, api, hostile):
    hostile(
        "vis-mountinfo",
        "def handler(event, context):\n    return open('/proc/self/mountinfo').read()\n",
    )
    lines = api.post("/v1/functions/vis-mountinfo/invoke").json().splitlines()
    secrets = host_secrets(server)
    assert [line for line in lines if any(secret in line for secret in secrets)] == []

    # every mount shows the root of its own filesystem (an image, a tmpfs, its proc) or the
    # very path the function sees it at (/usr, /etc/ssl/certs, a device node of /dev): no
    # host directory it does not already know is behind any of them
    def reveals(point: str, root: str, fstype: str) -> bool:
        return root not in ("/", point) and not (fstype == "devtmpfs" and "/dev" + root == point)

    mounts = [(line.split()[4], line.split()[3], line.split(" - ")[1].split()[0]) for line in lines]
    assert [(point, root) for point, root, fstype in mounts if reveals(point, root, fstype)] == []


def test_proc_1_reveals_no_host_path(server, api, hostile):
    hostile(
        "vis-proc1",
        """
from hostile import *

FILES = ["cmdline", "environ", "maps", "mountinfo", "cgroup", "status", "stat", "sched",
         "net/tcp", "net/tcp6", "net/unix", "net/route"]
LINKS = ["exe", "cwd", "root"]

def handler(event, context):
    seen = {}
    for pid in ("1", "self"):
        for name in FILES:
            try:
                with open(f"/proc/{pid}/{name}", "rb") as source:
                    seen[f"/proc/{pid}/{name}"] = source.read().decode(errors="replace")
            except OSError as exc:
                seen[f"/proc/{pid}/{name}"] = errname(exc.errno)
        for name in LINKS:
            try:
                seen[f"/proc/{pid}/{name}"] = os.readlink(f"/proc/{pid}/{name}")
            except OSError as exc:
                seen[f"/proc/{pid}/{name}"] = errname(exc.errno)
    return seen
""",
    )
    seen = api.post("/v1/functions/vis-proc1/invoke").json()
    leaks = {path: secret for path, text in seen.items() for secret in host_secrets(server) if secret in text}
    assert leaks == {}
    # its cgroups are the roots of a cgroup namespace: no server id, no instance id
    for path in ("/proc/1/cgroup", "/proc/self/cgroup"):
        assert [line for line in seen[path].splitlines() if not line.endswith(":/")] == [], seen[path]


def test_runtime_knows_no_host_path(server, api, hostile):
    hostile(
        "vis-modules",
        """
import sys

def handler(event, context):
    files = {name: getattr(module, "__file__", None) for name, module in list(sys.modules.items())}
    return {
        "files": {name: path for name, path in files.items() if isinstance(path, str)},
        "sys_path": sys.path,
        "executable": sys.executable,
        "prefix": [sys.prefix, sys.base_prefix, sys.exec_prefix],
        "argv": sys.argv,
        "orig_argv": sys.orig_argv,
    }
""",
    )
    seen = api.post("/v1/functions/vis-modules/invoke").json()
    text = repr(seen)
    leaks = [secret for secret in host_secrets(server) if secret in text]
    examples = {name: path for name, path in seen["files"].items() if any(s in path for s in leaks)}
    assert leaks == [], dict(list(examples.items())[:5]) or seen["orig_argv"]


def test_etc_and_interfaces_name_nothing_of_the_platform(server, api, hostile):
    """The function learns nothing of the platform's address from its /etc or its interfaces."""
    hostile(
        "vis-names",
        """
from hostile import *

def handler(event, context):
    files = {}
    for path in ("/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/etc/passwd", "/etc/group"):
        try:
            files[path] = open(path).read()
        except OSError as exc:
            files[path] = errname(exc.errno)
    files["interfaces"] = " ".join(name for _, name in socket.if_nameindex())
    return files
""",
    )
    seen = api.post("/v1/functions/vis-names/invoke").json()
    leaks = {path: s for path, text in seen.items() for s in host_secrets(server) if s in text}
    assert leaks == {}
    assert seen["interfaces"] == "lo"
