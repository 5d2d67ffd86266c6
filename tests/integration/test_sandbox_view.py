"""What a deployed function sees of the world, end to end through the real server."""

from __future__ import annotations

import concurrent.futures
import errno

PROBE = r"""
import errno, os, socket

def attempt(action):
    try:
        action()
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))

def write(path):
    def action():
        with open(path, "w") as out:
            out.write("x")
    return action

def connect(port):
    def action():
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
    return action

def is_open(fd):
    try:
        os.fstat(fd)  # opens nothing itself, unlike listing /proc/self/fd
        return True
    except OSError:
        return False

def handler(event, context):
    uid_map = open("/proc/self/uid_map").read().split()
    return {
        "uid": os.getuid(),
        "host_uid": int(uid_map[1]),
        "cwd": os.getcwd(),
        "hostname": socket.gethostname(),
        "env": sorted(os.environ),
        "fds": [fd for fd in range(1024) if is_open(fd)],
        "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "interfaces": sorted(name for _, name in socket.if_nameindex()),
        "write_root": attempt(write("/x")),
        "write_usr": attempt(write("/usr/x")),
        "write_task": attempt(write("/var/task/x")),
        "write_tmp": attempt(write("/tmp/x")),
        "sys": os.path.exists("/sys/fs"),
        "data_dir_visible": os.path.exists(event["data_dir"]),
        "key_visible": os.path.exists(event["data_dir"] + "/admin.key"),
        "api": attempt(connect(event["port"])),
    }
"""


def test_a_function_sees_only_its_sandbox(server, api, deploy):
    deploy("probe", {"main.py": PROBE}, env={"MY_SETTING": "1"})
    response = api.post(
        "/v1/functions/probe/invoke", json={"data_dir": str(server.data_dir), "port": server.port}
    )
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["uid"] == 0
    assert seen["host_uid"] >= 200000  # root inside is an unprivileged uid outside
    assert seen["cwd"] == "/var/task"
    assert seen["hostname"] == "sandbox"
    assert "MY_SETTING" in seen["env"]
    assert not [name for name in seen["env"] if name.startswith("WUZHAO")]
    assert seen["fds"] == [0, 1, 2, 3]  # stdin, stdout, stderr, the runtime channel
    assert seen["pids"] == [1]
    assert seen["interfaces"] == ["lo"]
    assert seen["write_root"] == errno.errorcode[errno.EROFS]
    assert seen["write_usr"] == errno.errorcode[errno.EROFS]
    assert seen["write_task"] == errno.errorcode[errno.EROFS]
    assert seen["write_tmp"] == "ok"
    assert seen["sys"] is False
    assert seen["data_dir_visible"] is False
    assert seen["key_visible"] is False
    assert seen["api"] == errno.errorcode[errno.ECONNREFUSED]  # its own loopback has no server


UID_REPORTER = """
import time

def handler(event, context):
    time.sleep(0.3)
    return open("/proc/self/uid_map").read().split()[1]
"""


def test_instances_of_one_function_have_distinct_host_uids(api, deploy):
    deploy("uids", {"main.py": UID_REPORTER})
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        uids = list(pool.map(lambda _: api.post("/v1/functions/uids/invoke").json(), range(3)))
    assert len(set(uids)) == 3
