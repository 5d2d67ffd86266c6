"""Nothing of the platform or the host is visible from inside a function, end to end.

A function reads every place a path, a name or an address of the platform
could show: its mounts, its /proc, its environment, /etc, the interpreter's
paths and every module it was handed by the zygote. None of them may name the
server's data dir, /root, the server's Python installation or virtualenv, the
platform's source tree, the server's port, or another function. And a function
finds another function's code nowhere.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import time
from pathlib import Path

import pytest

import wuzhao
from wuzhao.errors import SandboxUnavailable
from wuzhao.sandbox import images, loop
from wuzhao.sandbox.zygote_launcher import check_host

try:
    check_host()
    UNAVAILABLE = images.unavailable() or ""
except SandboxUnavailable as exc:
    UNAVAILABLE = str(exc)

pytestmark = [pytest.mark.sandbox, pytest.mark.skipif(bool(UNAVAILABLE), reason=UNAVAILABLE)]

LOOK_AROUND = r'''
import os, socket, sys, sysconfig, site, types


def read(path):
    try:
        with open(path, "rb") as source:
            return source.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"<{exc.strerror}>"


def link(path):
    try:
        return os.readlink(path)
    except OSError as exc:
        return f"<{exc.strerror}>"


def strings(value):
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [item for item in value if isinstance(item, str)]
    return []


def module_strings():
    """Paths and strings every module carries: files, specs, search paths, code objects."""
    found = {}
    for name, module in list(sys.modules.items()):
        seen = strings(getattr(module, "__file__", None)) + strings(getattr(module, "__cached__", None))
        seen += strings(list(getattr(module, "__path__", None) or []))
        spec = getattr(module, "__spec__", None)
        if spec is not None:
            seen += strings(spec.origin) + strings(getattr(spec, "cached", None))
            seen += strings(list(spec.submodule_search_locations or []))
        for key, value in list(vars(module).items()):
            if key == "__doc__":
                continue  # prose, not paths
            members = list(vars(value).values()) if isinstance(value, type) else []
            for function in [value, *members]:
                if isinstance(function, types.FunctionType):
                    seen.append(function.__code__.co_filename)
            seen += strings(value)
        found[name] = seen
    return found


def etc():
    files = {}
    for directory, _, names in os.walk("/etc"):
        for name in names:
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                files[path] = read(path)
    return files


def handler(event, context):
    maps = {line.split()[-1] for line in read("/proc/self/maps").splitlines() if len(line.split()) > 5}
    return {
        "mountinfo": read("/proc/self/mountinfo"),
        "proc": {
            f"{pid}/{name}": read(f"/proc/{pid}/{name}")
            for pid in ("1", "self")
            for name in ("cmdline", "environ", "cgroup", "mountstats", "status", "stat")
        },
        "links": {name: link(f"/proc/1/{name}") for name in ("exe", "cwd", "root")},
        "maps": sorted(maps),
        "environ": dict(os.environ),
        "etc": etc(),
        "interpreter": {
            "path": sys.path,
            "prefix": [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix],
            "executable": [sys.executable, getattr(sys, "_base_executable", "")],
            "argv": sys.argv,
            "orig_argv": sys.orig_argv,
            "importer_cache": [str(key) for key in sys.path_importer_cache],
            "sysconfig_paths": sysconfig.get_paths(),
            "sysconfig_vars": {k: v for k, v in sysconfig.get_config_vars().items() if isinstance(v, str)},
            "site": [*site.PREFIXES, str(site.getuserbase()), str(site.getusersitepackages())],
        },
        "modules": module_strings(),
        "names": [socket.gethostname(), os.uname().nodename],
        "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
    }
'''

SEARCH = r"""
import os


def listing(path):
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        return [f"<{exc.strerror}>"]


def handler(event, context):
    names = []
    for top in ("/", "/proc/1/root/var", "/proc/self/root/tmp"):
        for directory, dirnames, filenames in os.walk(top):
            # /usr is the host's /usr; /proc is its own processes (walked through /proc/1/root)
            dirnames[:] = [d for d in dirnames if os.path.join(directory, d) not in ("/usr", "/proc")]
            names += [os.path.join(directory, name) for name in filenames + dirnames]
    contents = []
    for directory, _, filenames in os.walk("/var/task"):
        for name in filenames:
            with open(os.path.join(directory, name), "rb") as source:
                contents.append(source.read().decode("utf-8", "replace"))
    return {
        "names": names,
        "contents": contents,
        "pids": sorted(p for p in os.listdir("/proc") if p.isdigit()),
        "task_roots": {
            pid: listing(f"/proc/{pid}/root/var/task") for pid in os.listdir("/proc") if pid.isdigit()
        },
        "dev": listing("/dev"),
        "host_paths": {path: os.path.exists(path) for path in event["paths"]},
    }
"""

NEIGHBOUR = """
def handler(event, context):
    return "neighbour"
"""


# /root as a path, not in /var/runtime/wuzhao/sandbox/rootfs.py
ROOT_HOME = re.compile(r"(?<![\w.-])/root(?![\w.-])")


def forbidden(server, other_names: list[str]) -> list[str]:
    """Substrings that name the host or the platform (and /root: :data:`ROOT_HOME`)."""
    return [
        str(server.data_dir),
        os.path.realpath(sys.base_prefix),  # the server's Python installation (pyenv)
        sys.prefix,  # the server's virtualenv
        os.path.dirname(os.path.dirname(os.path.realpath(wuzhao.__file__))),  # the source tree
        *other_names,
    ]


def leaks(value, needles: list[str], port: int, where: str = "") -> list[tuple[str, str]]:
    """(where, needle) for every needle (or the port, as a number) found in any string of ``value``."""
    if isinstance(value, dict):
        return [hit for key, item in value.items() for hit in leaks(item, needles, port, f"{where}/{key}")]
    if isinstance(value, list):
        return [hit for item in value for hit in leaks(item, needles, port, where)]
    if not isinstance(value, str):
        return []
    hits = [(where, needle) for needle in needles if needle in value]
    if ROOT_HOME.search(value):
        hits.append((where, "/root"))
    if re.search(rf"(?<![0-9]){port}(?![0-9])", value):
        hits.append((where, f"port {port}"))
    return hits


def test_nothing_of_the_host_or_the_platform_is_visible_inside(server, api, deploy):
    neighbour = f"neighbour-{secrets.token_hex(4)}"
    deploy(neighbour, {"main.py": NEIGHBOUR})
    assert api.post(f"/v1/functions/{neighbour}/invoke").json() == "neighbour"
    deploy("look-around", {"main.py": LOOK_AROUND}, env={"MY_SETTING": "1"})

    response = api.post("/v1/functions/look-around/invoke")
    assert response.status_code == 200, response.text
    seen = response.json()

    found = leaks(seen, forbidden(server, [neighbour]), server.port)
    assert found == [], found[:20]
    # The mounts are images (root "/", a loop device) or paths the function sees anyway.
    for line in seen["mountinfo"].splitlines():
        fields = line.split()
        root, point, source = fields[3], fields[4], line.split(" - ")[1].split()[1]
        assert root in ("/", point) or "/dev" + root == point, line
        if point in ("/var/lang", "/var/task", "/var/runtime"):
            assert root == "/" and source.startswith("/dev/loop") and " - erofs " in line, line
    # The process shows the runtime, not the zygote: no option of the server's.
    assert seen["proc"]["1/cmdline"] == "/var/lang/bin/python3.11\0"
    assert seen["links"] == {"exe": "/var/lang/bin/python3.11", "cwd": "/var/task", "root": "/"}
    assert seen["interpreter"]["orig_argv"] == ["/var/lang/bin/python3.11"]
    assert all(line.endswith(":/") for line in seen["proc"]["self/cgroup"].splitlines())
    assert all(path.startswith(("/var/lang/", "/usr/lib/", "[")) for path in seen["maps"]), seen["maps"]
    # Only the function's own environment and the documented runtime variables.
    assert seen["environ"]["MY_SETTING"] == "1"
    assert seen["environ"]["AWS_LAMBDA_FUNCTION_NAME"] == "look-around"
    assert not [name for name in seen["environ"] if name.startswith("WUZHAO")]
    environ = seen["proc"]["1/environ"]
    assert (
        environ == "<Permission denied>"
        or dict(item.split("=", 1) for item in environ.split("\0") if item) == seen["environ"]
    )
    assert seen["names"] == ["sandbox", "sandbox"]
    assert seen["fds"] == [0, 1, 2, 3, 4]  # 4: the listing's own descriptor of /proc/self/fd
    assert [u.split(":")[0] for u in seen["etc"]["/etc/passwd"].splitlines()] == ["root", "nobody"]
    assert seen["interpreter"]["prefix"] == ["/var/lang"] * 4
    assert seen["interpreter"]["sysconfig_vars"]["prefix"] == "/var/lang"
    # The platform's runtime package is importable, from the runtime's image only.
    assert seen["modules"]["wuzhao"][0] == "/var/runtime/wuzhao/__init__.py"


def test_a_function_finds_no_other_functions_code(server, api, deploy):
    token = secrets.token_hex(8)
    marker = f"neighbour_marker_{token}.py"
    neighbour = f"neighbour-{token[:8]}"
    created = deploy(neighbour, {"main.py": NEIGHBOUR, marker: f"SECRET = {token!r}\n"})
    assert api.post(f"/v1/functions/{neighbour}/invoke").json() == "neighbour"  # its instance is up
    deploy("search", {"main.py": SEARCH})
    sha = created["code_sha256"]
    paths = [
        str(server.data_dir / "code" / sha / marker),
        str(server.data_dir / "images" / f"{sha}.erofs"),
        str(server.data_dir / "packages" / f"{sha}.zip"),
        f"/var/task/{marker}",
        f"/tmp/{marker}",
    ]

    response = api.post("/v1/functions/search/invoke", json={"paths": paths})
    assert response.status_code == 200, response.text
    seen = response.json()

    assert [name for name in seen["names"] if token in name] == []
    assert [text for text in seen["contents"] if token in text] == []
    assert seen["pids"] == ["1"]  # no other instance's process, so no way into its root
    assert seen["task_roots"] == {"1": ["main.py"]}
    assert seen["host_paths"] == dict.fromkeys(paths, False)
    assert not [name for name in seen["dev"] if name.startswith("loop")]


def test_stopping_the_server_detaches_every_loop_device(start_server, code):
    server = start_server()
    client = server.client()
    assert client.put("/v1/functions/hello", json={"code": code()}).status_code == 201
    assert client.post("/v1/functions/hello/invoke", json={"name": "x"}).status_code == 200
    ours = sorted(str(p) for p in (server.data_dir / "images").glob("*.erofs"))
    assert len(ours) == 1
    assert len(loop.devices_backing(set(ours))) == 1  # attached once, at the first cold start
    # The devices the server attached for its runtime, as its log names them.
    runtime = re.findall(r"LoopDevice\((/dev/loop\d+) -> ([^)]+)\)", server.log())
    assert {Path(image).name.split("-")[0] for _, image in runtime} >= {"wuzhao"}
    assert server.stop() == 0

    assert loop.devices_backing(set(ours)) == []
    for device, image in runtime:
        deadline = time.monotonic() + 5
        while (
            loop.backing_file(int(device.removeprefix("/dev/loop"))) == image and time.monotonic() < deadline
        ):
            time.sleep(0.05)  # mounts of the zygote's namespace go a moment after it
        assert loop.backing_file(int(device.removeprefix("/dev/loop"))) != image, device
    mounts = Path("/proc/self/mountinfo").read_text()
    assert [
        line for line in mounts.splitlines() if " - erofs " in line and str(server.data_dir) in line
    ] == []
    assert [device for device, _ in runtime if f" {device} " in mounts] == []
