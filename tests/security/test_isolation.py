"""Hostile functions against other tenants: their instances and their code."""

from __future__ import annotations

import errno
import secrets

from tests.security.conftest import NEEDS_SANDBOX, processes_of

pytestmark = NEEDS_SANDBOX

COUNTER = """
from hostile import *
calls = 0

def handler(event, context):
    global calls
    calls += 1
    return {"calls": calls, "host_uid": host_uid()}
"""


def test_kill_minus_one_kills_only_its_own_instance(server, api, hostile):
    hostile("iso-victim", COUNTER)
    first = api.post("/v1/functions/iso-victim/invoke").json()
    hostile(
        "iso-killer",
        """
from hostile import *

def handler(event, context):
    seen = {"pid1": attempt(os.kill, 1, 0)}
    # from a child (pid 1 of a namespace is spared by kill(-1)) ...
    seen["child"] = in_child(lambda: attempt(os.kill, -1, signal.SIGKILL))
    # ... and from the runtime itself; then every process group and pid it can name
    seen["runtime"] = attempt(os.kill, -1, signal.SIGKILL)
    seen["pgrp_1"] = attempt(os.killpg, 1, signal.SIGKILL)
    seen["host_pids"] = sorted({attempt(os.kill, pid, signal.SIGKILL) for pid in range(2, 4096)})
    return seen
""",
    )
    response = api.post("/v1/functions/iso-killer/invoke")
    # its own instance may die (then RuntimeExited) or survive; nothing else may
    assert response.status_code in (200, 500), response.text
    if response.status_code == 500:
        assert response.json()["error"]["code"] == "RuntimeExited"
    else:
        assert response.json()["host_pids"] == ["ESRCH"]  # no pid outside its namespace exists for it
    victim = api.post("/v1/functions/iso-victim/invoke")
    assert victim.status_code == 200
    assert victim.headers["x-wuzhao-cold-start"] == "false"
    assert victim.json() == {"calls": 2, "host_uid": first["host_uid"]}  # the same warm instance
    assert processes_of(first["host_uid"])  # still there, seen from the host


def test_reading_another_functions_code_is_absent(server, api, hostile):
    token = "wuzhao-secret-" + secrets.token_hex(16)
    victim = hostile(
        "iso-secret-keeper",
        f'SECRET = "{token}"\n\ndef handler(event, context):\n    return SECRET[:6]\n',
    )
    assert api.post("/v1/functions/iso-secret-keeper/invoke").json() == token[:6]  # warm, with its code
    hostile(
        "iso-thief",
        """
from hostile import *

def read(path, limit=1 << 20):
    try:
        with open(path, "rb") as source:
            return source.read(limit).decode(errors="replace")
    except OSError as exc:
        return errname(exc.errno)
    except Exception as exc:
        return type(exc).__name__

def listing(path):
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        return errname(exc.errno)

MARK = "wuzhao" + "-secret-"  # spelled apart so that this file does not contain it

def handler(event, context):
    data, sha = event["data_dir"], event["sha"]
    direct = {}
    for prefix in ("", "/proc/1/root", "/proc/self/root", "/proc/self/cwd/../..", "/var/task/../.."):
        for suffix in (f"/code/{sha}/main.py", f"/packages/{sha}.zip", "/admin.key", "/wuzhao.db", ""):
            path = prefix + data + suffix
            direct[path] = read(path) if suffix else listing(path)
    by_name = {
        path: read(path)
        for path in ("/var/task/../iso-secret-keeper/main.py", "/var/iso-secret-keeper/main.py",
                     "/opt/code/main.py", f"/tmp/{sha}/main.py")
    }
    # everything readable outside /usr, /proc, /dev and the Python installation, in bulk
    found = {}
    with open("/tmp/planted", "w") as planted:  # proves the search finds what is there
        planted.write(MARK + "planted")
    skip = {"usr", "proc", "sys", "dev", "bin", "lib", "lib32", "lib64", "libx32", "sbin"}
    for top in sorted(set(os.listdir("/")) - skip):
        for root, dirs, files in os.walk("/" + top):
            dirs[:] = [d for d in dirs if root + "/" + d != "/var/lang"]
            for name in files:
                text = read(os.path.join(root, name), 1 << 16)
                if MARK in text:
                    found[os.path.join(root, name)] = text[:200]
    # the other function's pid namespace, if any of its processes were visible
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        task = f"/proc/{pid}/root/var/task/main.py"
        text = read(task)
        if MARK in text:
            found[task] = text[:200]
    return {"direct": direct, "by_name": by_name, "found": found, "top": sorted(os.listdir("/"))}
""",
    )
    seen = api.post(
        "/v1/functions/iso-thief/invoke",
        json={"data_dir": str(server.data_dir), "sha": victim["code_sha256"]},
    )
    assert seen.status_code == 200, seen.text
    assert token not in seen.text  # not its code, not its package, from nowhere
    result = seen.json()
    assert result["found"] == {"/tmp/planted": "wuzhao-secret-planted"}
    enoent = errno.errorcode[errno.ENOENT]
    assert result["direct"] == dict.fromkeys(result["direct"], enoent)  # the data dir is not there at all
    assert result["by_name"] == dict.fromkeys(result["by_name"], enoent)
