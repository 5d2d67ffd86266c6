"""Preloading through a real server: numpy imported by a zygote from the operator's runtime layer.

``WUZHAO_RUNTIME_PRELOAD=numpy,numpy.random`` with a runtime layer holding the
test environment's numpy (the sandbox's Python is the same build). A function
whose handler imports numpy is forked from the zygote that already imported
it, from /opt/sci as every instance sees it; any other function from the
plain zygote.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from wuzhao.errors import SandboxUnavailable
from wuzhao.runtimes.python import site_layer
from wuzhao.sandbox import images
from wuzhao.sandbox.zygote_launcher import check_host

try:
    check_host()
    UNAVAILABLE = images.unavailable() or ""
except SandboxUnavailable as exc:
    UNAVAILABLE = str(exc)

pytestmark = [pytest.mark.sandbox, pytest.mark.skipif(bool(UNAVAILABLE), reason=UNAVAILABLE)]

USES_NUMPY = """
import sys
PRELOADED = "numpy" in sys.modules
import numpy


def handler(event, context):
    import numpy.fft  # not imported by numpy itself: found inside, through numpy.__path__
    a = numpy.array([[2.0, 1.0], [1.0, 3.0]])
    return {
        "preloaded": PRELOADED,
        "file": numpy.__file__,
        "path": list(numpy.__path__),
        "fft": numpy.fft.__file__,
        "maps": sorted({line.split()[-1] for line in open("/proc/self/maps") if "/python/numpy" in line}),
        "solve": numpy.linalg.solve(a, [3.0, 5.0]).tolist(),
        "sum": int(numpy.arange(1, 101).sum()),
        "spectrum": numpy.abs(numpy.fft.fft([1.0, 0.0, 0.0, 0.0])).tolist(),
        "dice": int(numpy.random.randint(0, 2**62)),
    }
"""

PLAIN = """
import sys


def handler(event, context):
    return {"numpy": "numpy" in sys.modules}
"""

OWN_NUMPY = {
    "numpy.py": "MINE = True\n",
    "main.py": "import sys\nPRELOADED = 'numpy' in sys.modules\nimport numpy\n\n\n"
    "def handler(event, context):\n    return {'preloaded': PRELOADED, 'file': numpy.__file__}\n",
}


@pytest.fixture(scope="session")
def numpy_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runtime layer holding this environment's numpy (and numpy.libs) under python/."""
    return site_layer.copy_installed(["numpy"], tmp_path_factory.mktemp("sci"))


def invoke(api, name: str) -> dict:
    response = api.post(f"/v1/functions/{name}/invoke", json={})
    assert response.status_code == 200, response.text
    assert "x-wuzhao-function-error" not in response.headers, response.text
    return response.json()


def test_a_handler_importing_numpy_starts_with_it_preloaded_from_the_layer(start_server, numpy_layer, code):
    server = start_server(
        WUZHAO_RUNTIME_LAYERS=f"sci={numpy_layer}", WUZHAO_RUNTIME_PRELOAD="numpy,numpy.random"
    )
    api = server.client()
    for name, files in (
        ("uses-numpy", {"main.py": USES_NUMPY}),
        ("dice", {"main.py": USES_NUMPY}),
        ("plain", {"main.py": PLAIN}),
        ("own-numpy", OWN_NUMPY),
    ):
        assert api.put(f"/v1/functions/{name}", json={"code": code(files)}).status_code == 201

    seen = invoke(api, "uses-numpy")
    assert seen["preloaded"] is True
    assert seen["file"] == "/opt/sci/python/numpy/__init__.py"
    assert seen["path"] == ["/opt/sci/python/numpy"]
    assert seen["fft"] == "/opt/sci/python/numpy/fft/__init__.py"
    # Its compiled modules and the BLAS it vendors, mapped from where the sandbox sees them.
    assert any("numpy.libs/libscipy_openblas" in path for path in seen["maps"]), seen["maps"]
    assert all(path.startswith("/opt/sci/python/numpy") for path in seen["maps"]), seen["maps"]
    assert str(numpy_layer) not in json.dumps(seen)
    assert seen["solve"] == pytest.approx([0.8, 1.4])
    assert seen["sum"] == 5050
    assert seen["spectrum"] == [1.0, 1.0, 1.0, 1.0]
    # Each instance's global generator was seeded afresh, not inherited from the zygote.
    assert invoke(api, "dice")["dice"] != seen["dice"]

    # No import of a preloaded module in the handler: forked from the plain zygote.
    assert invoke(api, "plain") == {"numpy": False}
    # A function shipping its own numpy keeps it (as without preloading: /var/task comes first).
    assert invoke(api, "own-numpy") == {"preloaded": False, "file": "/var/task/numpy.py"}


def test_a_preload_that_cannot_be_imported_stops_the_server(start_server, numpy_layer) -> None:
    setting = "numpy,no_such_module"
    with pytest.raises(AssertionError, match="exited with") as failed:
        start_server(WUZHAO_RUNTIME_LAYERS=f"sci={numpy_layer}", WUZHAO_RUNTIME_PRELOAD=setting)
    message = str(failed.value)
    assert "WUZHAO_RUNTIME_PRELOAD" in message
    assert f"the runtime layers (sci={numpy_layer})" in message
    assert "cannot import 'no_such_module'" in message
    assert "No module named 'no_such_module'" in message
    leftovers = []  # no zygote outlives the server that could not start
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if f"--preload={setting}".encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                leftovers.append(pid)
        except OSError:
            pass  # gone meanwhile
    assert leftovers == []


@pytest.mark.parametrize("setting", ["numpy,numpy-x", "numpy,numpy", "numpy..linalg"])
def test_a_bad_preload_setting_stops_the_server_before_it_starts(start_server, setting: str) -> None:
    with pytest.raises(AssertionError, match="exited with") as failed:
        start_server(WUZHAO_RUNTIME_PRELOAD=setting)
    message = str(failed.value)
    assert "WUZHAO_RUNTIME_PRELOAD" in message and "Traceback" not in message
