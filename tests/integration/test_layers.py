"""Layers through a real server: pushed zips and the operator's host directories, at /opt/<name>.

A function's ``layers: ["name:version"]`` are mounted read-only at
``/opt/<name>`` and put on its import path (``/opt/<name>/python``, then
``/opt/<name>``) after ``/var/task``; the operator's runtime layers
(``WUZHAO_RUNTIME_LAYERS``) come first and every function has them. Every one
is an image on a loop device: nothing in the sandbox's mountinfo names a host
path.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import zip_files
from tests.integration.conftest import Server

from wuzhao.errors import SandboxUnavailable
from wuzhao.sandbox import images
from wuzhao.sandbox.zygote_launcher import check_host

try:
    check_host()
    UNAVAILABLE = images.unavailable() or ""
except SandboxUnavailable as exc:
    UNAVAILABLE = str(exc)

pytestmark = [pytest.mark.sandbox, pytest.mark.skipif(bool(UNAVAILABLE), reason=UNAVAILABLE)]

LOOK = """
import errno, os, sys


def attempt(action):
    try:
        action()
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return "done"


def importable(name):
    try:
        module = __import__(name)
    except ImportError:
        return None
    return {"file": module.__file__, "value": getattr(module, "VALUE", None)}


def handler(event, context):
    mounts = {}
    for line in open("/proc/self/mountinfo").read().splitlines():
        fields = line.split()
        if fields[4] == "/opt" or fields[4].startswith("/opt/"):
            mounts[fields[4]] = {"root": fields[3], "options": fields[5], "source": line.split(" - ")[1]}
    return {
        "modules": {name: importable(name) for name in event.get("modules", [])},
        "path": [p for p in sys.path if p.startswith(("/var/task", "/opt"))],
        "opt": sorted(os.listdir("/opt")),
        "mounts": mounts,
        "mountinfo": open("/proc/self/mountinfo").read(),
        "writes": {
            path: attempt(lambda path=path: open(path, "a").close()) for path in event.get("writes", [])
        },
        "mkdirs": {path: attempt(lambda path=path: os.mkdir(path)) for path in event.get("mkdirs", [])},
    }
"""

IMPORTS_SHARED = """
import shared  # from the layer, at init


def handler(event, context):
    return {"value": shared.VALUE, "file": shared.__file__}
"""


def layer_zip(files: dict[str, str]) -> str:
    return base64.b64encode(zip_files(files)).decode()


def push(api: httpx.Client, name: str, files: dict[str, str]) -> dict[str, Any]:
    response = api.put(f"/v1/layers/{name}", json={"code": layer_zip(files)})
    assert response.status_code == 201, response.text
    return response.json()


def look(api: httpx.Client, function: str, **event: Any) -> dict[str, Any]:
    response = api.post(f"/v1/functions/{function}/invoke", json=event)
    assert response.status_code == 200, response.text
    assert "x-wuzhao-function-error" not in response.headers, response.text
    return response.json()


def test_a_layer_is_importable_read_only_and_versioned(server: Server, api: httpx.Client, deploy) -> None:
    first = push(api, "shared", {"python/shared.py": "VALUE = 'one'\n"})
    assert first["reference"] == "shared:1"
    deploy("with-layer", {"main.py": IMPORTS_SHARED}, layers=["shared:1"])
    assert look(api, "with-layer") == {"value": "one", "file": "/opt/shared/python/shared.py"}

    second = push(api, "shared", {"python/shared.py": "VALUE = 'two'\n", "tool.py": "VALUE = 'root'\n"})
    assert second["reference"] == "shared:2"
    assert look(api, "with-layer")["value"] == "one"  # a new layer version changes nothing deployed
    deploy("with-layer", {"main.py": IMPORTS_SHARED}, layers=["shared:2"])
    assert look(api, "with-layer") == {"value": "two", "file": "/opt/shared/python/shared.py"}


def test_layers_are_on_the_import_path_in_order_after_the_code(server: Server, api: httpx.Client, deploy):
    push(api, "first", {"python/first_mod.py": "VALUE = 'first'\n", "python/both.py": "VALUE = 'first'\n"})
    push(api, "second", {"python/both.py": "VALUE = 'second'\n", "flat.py": "VALUE = 'flat'\n"})
    deploy("ordered", {"main.py": LOOK}, layers=["first:1", "second:1"])
    seen = look(api, "ordered", modules=["first_mod", "both", "flat", "main"])
    assert seen["path"] == [
        "/var/task",
        "/opt/first/python",
        "/opt/first",
        "/opt/second/python",
        "/opt/second",
    ]
    assert seen["opt"] == ["first", "second"]
    modules = seen["modules"]
    assert modules["first_mod"] == {"file": "/opt/first/python/first_mod.py", "value": "first"}
    assert modules["both"] == {"file": "/opt/first/python/both.py", "value": "first"}  # the first wins
    assert modules["flat"] == {"file": "/opt/second/flat.py", "value": "flat"}  # a layer's root too
    assert modules["main"]["file"] == "/var/task/main.py"


def test_nothing_can_be_written_under_opt(server: Server, api: httpx.Client, deploy) -> None:
    push(api, "locked", {"python/locked.py": "VALUE = 1\n"})
    deploy("writer", {"main.py": LOOK}, layers=["locked:1"])
    seen = look(
        api,
        "writer",
        writes=["/opt/new.py", "/opt/locked/python/locked.py", "/opt/locked/python/new.py"],
        mkdirs=["/opt/dir", "/opt/locked/dir"],
    )
    assert seen["writes"] == dict.fromkeys(seen["writes"], "EROFS")
    assert seen["mkdirs"] == dict.fromkeys(seen["mkdirs"], "EROFS")
    options = seen["mounts"]["/opt/locked"]["options"].split(",")
    assert {"ro", "nosuid", "nodev"} <= set(options)


def test_mountinfo_names_no_host_path_for_layers(server: Server, api: httpx.Client, deploy) -> None:
    push(api, "hidden", {"python/hidden.py": "VALUE = 1\n"})
    deploy("mounts", {"main.py": LOOK}, layers=["hidden:1"])
    seen = look(api, "mounts")
    assert seen["mounts"]["/opt/hidden"]["root"] == "/"  # the root of its own filesystem, not a bind
    assert seen["mounts"]["/opt/hidden"]["source"].startswith("erofs /dev/loop")
    assert str(server.data_dir) not in seen["mountinfo"]
    assert "/code/" not in seen["mountinfo"] and "/images/" not in seen["mountinfo"]


def test_a_function_without_the_layer_cannot_import_it(server: Server, api: httpx.Client, deploy) -> None:
    push(api, "private", {"python/private_mod.py": "VALUE = 1\n"})
    deploy("no-layer", {"main.py": LOOK})
    seen = look(api, "no-layer", modules=["private_mod"])
    assert seen["modules"] == {"private_mod": None}
    assert seen["opt"] == []  # /opt is there, empty
    assert seen["path"] == ["/var/task"]
    assert seen["mkdirs"] == {}
    assert look(api, "no-layer", mkdirs=["/opt/x"])["mkdirs"] == {"/opt/x": "EROFS"}


@pytest.mark.parametrize("refs", [["missing:1"], ["present:99"], ["present"], ["present:1", "present:1"]])
def test_deploying_with_a_layer_that_does_not_exist_is_400_on_layers(
    server: Server, api: httpx.Client, code, refs: list[str]
) -> None:
    if api.get("/v1/layers/present").status_code == 404:
        push(api, "present", {"python/present.py": "VALUE = 'x'\n"})
    response = api.put("/v1/functions/bad-ref", json={"code": code(), "layers": refs})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == "layers"
    assert api.get("/v1/functions/bad-ref").status_code == 404


# The operator's runtime layers


def sci_dir(root: Path, version: str = "1") -> Path:
    (root / "python").mkdir(parents=True, exist_ok=True)
    (root / "python" / "sci_helper.py").write_text(f"VALUE = 'sci {version}'\n")
    for path in (root, root / "python"):
        path.chmod(0o755)
    (root / "python" / "sci_helper.py").chmod(0o644)
    return root


def test_a_runtime_layer_is_importable_by_every_function(start_server, tmp_path: Path, code) -> None:
    sci = sci_dir(tmp_path / "sci")
    server = start_server(WUZHAO_RUNTIME_LAYERS=f"sci={sci}")
    api = server.client()
    push(api, "own", {"python/own_mod.py": "VALUE = 'own'\n"})
    for name, layers in (("plain", []), ("layered", ["own:1"])):
        response = api.put(f"/v1/functions/{name}", json={"code": code({"main.py": LOOK}), "layers": layers})
        assert response.status_code == 201, response.text
    plain = look(api, "plain", modules=["sci_helper"])
    assert plain["modules"]["sci_helper"] == {"file": "/opt/sci/python/sci_helper.py", "value": "sci 1"}
    assert plain["path"] == ["/var/task", "/opt/sci/python", "/opt/sci"]
    layered = look(
        api, "layered", modules=["sci_helper", "own_mod"], writes=["/opt/sci/python/sci_helper.py"]
    )
    assert layered["modules"]["sci_helper"]["value"] == "sci 1"
    assert layered["modules"]["own_mod"]["value"] == "own"
    assert layered["path"] == ["/var/task", "/opt/sci/python", "/opt/sci", "/opt/own/python", "/opt/own"]
    assert layered["writes"] == {"/opt/sci/python/sci_helper.py": "EROFS"}
    # an image, not a bind: the host directory shows nowhere
    assert layered["mounts"]["/opt/sci"]["root"] == "/"
    assert layered["mounts"]["/opt/sci"]["source"].startswith("erofs /dev/loop")
    assert str(tmp_path) not in layered["mountinfo"]
    # a function's own layer cannot take the runtime layer's place
    push(api, "sci", {"python/sci_helper.py": "VALUE = 'impostor'\n"})
    response = api.put("/v1/functions/clash", json={"code": code(), "layers": ["sci:1"]})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "layers"
    assert "runtime layer" in response.json()["error"]["message"]


def image_of(directory: Path) -> Path:
    """Where the machine's cache keeps the image of the runtime layer ``sci`` at ``directory`` as it is."""
    key, _ = images.tree_key(directory)
    return images.DEFAULT_CACHE_DIR / images.layer_image_name("sci", str(directory), key)


def test_an_upgraded_runtime_layer_is_seen_after_a_restart(start_server, tmp_path: Path, code) -> None:
    sci = sci_dir(tmp_path / "sci")
    first = start_server(WUZHAO_RUNTIME_LAYERS=f"sci={sci}")
    api = first.client()
    assert api.put("/v1/functions/reader", json={"code": code({"main.py": LOOK})}).status_code == 201
    assert look(api, "reader", modules=["sci_helper"])["modules"]["sci_helper"]["value"] == "sci 1"
    assert first.stop() == 0
    image = image_of(sci)
    built = image.stat()

    second = start_server(data_dir=first.data_dir, WUZHAO_RUNTIME_LAYERS=f"sci={sci}")
    assert (
        look(second.client(), "reader", modules=["sci_helper"])["modules"]["sci_helper"]["value"] == "sci 1"
    )
    assert second.stop() == 0
    after = image.stat()
    assert (after.st_ino, after.st_mtime_ns) == (built.st_ino, built.st_mtime_ns)  # not built again

    sci_dir(sci, version="2")  # an in-place upgrade on the host
    third = start_server(data_dir=first.data_dir, WUZHAO_RUNTIME_LAYERS=f"sci={sci}")
    assert look(third.client(), "reader", modules=["sci_helper"])["modules"]["sci_helper"]["value"] == "sci 2"
    assert image_of(sci) != image and image_of(sci).is_file()


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("sci={missing}", "is not an existing directory"),
        ("sci", "must look like name=/absolute/path"),
        ("sci=relative/dir", "must look like name=/absolute/path"),
        ("Bad Name=/tmp", "must look like name=/absolute/path"),
        ("sci={here},sci={here}", "appears twice"),
    ],
)
def test_a_bad_runtime_layer_setting_stops_the_server(start_server, tmp_path: Path, setting: str, says: str):
    value = setting.format(missing=tmp_path / "missing", here=tmp_path)
    with pytest.raises(AssertionError, match="exited with") as failed:
        start_server(WUZHAO_RUNTIME_LAYERS=value)
    message = str(failed.value)
    assert "WUZHAO_RUNTIME_LAYERS" in message and says in message
    assert "Traceback" not in message


def test_a_layer_version_in_use_cannot_be_deleted(server: Server, api: httpx.Client, deploy) -> None:
    push(api, "held", {"python/held.py": "VALUE = 1\n"})
    deploy(
        "holder",
        {"main.py": "import held\n\ndef handler(event, context):\n    return held.VALUE\n"},
        layers=["held:1"],
    )
    refused = api.delete("/v1/layers/held/versions/1")
    assert refused.status_code == 409
    assert "holder" in refused.json()["error"]["message"]
    deploy("holder", {"main.py": "def handler(event, context):\n    return 0\n"}, layers=[])
    assert api.delete("/v1/layers/held/versions/1").status_code == 204
    assert api.delete("/v1/layers/held/versions/1").status_code == 404


def test_a_layer_over_the_size_limit_is_413(start_server) -> None:
    server = start_server(WUZHAO_MAX_CODE_BYTES="4096")
    api = server.client()
    noise = base64.b64encode(os.urandom(8192)).decode()  # incompressible: the zip stays over the limit
    response = api.put("/v1/layers/huge", json={"code": layer_zip({"python/blob.txt": noise})})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PayloadTooLarge"
    assert api.get("/v1/layers/huge").status_code == 404
