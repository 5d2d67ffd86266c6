"""Layers on the launcher: images on loop devices (attached once), binds as the loud fallback."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from wuzhao.errors import SandboxUnavailable
from wuzhao.runtimes import protocol
from wuzhao.sandbox import images, loop
from wuzhao.sandbox.api import LayerMount, SandboxSpec
from wuzhao.sandbox.zygote_launcher import ZygoteLauncher, ZygoteProcess, check_host

try:
    check_host()
    UNAVAILABLE = images.unavailable() or ""
except SandboxUnavailable as exc:
    UNAVAILABLE = str(exc)

pytestmark = [pytest.mark.sandbox, pytest.mark.skipif(bool(UNAVAILABLE), reason=UNAVAILABLE)]

APP = """
import os, sys


def handler(event, context):
    import rt_mod, fn_mod
    mounts = {}
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        mounts[fields[4]] = [fields[3], *line.split(" - ")[1].split()[:2]]
    return {
        "values": [rt_mod.VALUE, fn_mod.VALUE],
        "files": [rt_mod.__file__, fn_mod.__file__],
        "mounts": mounts,
        "path": sys.path[:5],
    }
"""


def tree(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def setup(tmp_path: Path) -> tuple[SandboxSpec, LayerMount]:
    code = tree(tmp_path / "code", {"app.py": APP})
    runtime_layer = LayerMount("rtl", str(tree(tmp_path / "rtl", {"python/rt_mod.py": "VALUE = 'rt'\n"})))
    function_layer = tree(tmp_path / "fnl", {"fn_mod.py": "VALUE = 'fn'\n"})
    image = images.build(function_layer, tmp_path / "fnl.erofs")
    spec = SandboxSpec(
        instance_id="i-1",
        code_dir=str(code),
        uid=61236,
        memory_mb=128,
        cpu_shares=256,
        tmp_size_mb=8,
        env={"PATH": "/usr/bin:/bin"},
        layers=(runtime_layer, LayerMount("fnl", str(function_layer), str(image))),
    )
    return spec, runtime_layer


async def call(proc: ZygoteProcess, layers: Sequence[str]) -> Any:
    loop_ = asyncio.get_running_loop()
    decoder = protocol.FrameDecoder(1 << 20, protocol.RUNTIME_KINDS)

    async def receive() -> protocol.Frame:
        frames: list[protocol.Frame] = []
        while not frames:
            data = await asyncio.wait_for(loop_.sock_recv(proc.channel, 1 << 16), 20)
            assert data, "the runtime closed its channel"
            frames = decoder.feed(data)
        return frames[0]

    init = {
        "handler": "app.handler",
        "function_name": "f",
        "function_version": "1",
        "memory_limit_in_mb": 128,
        "layers": list(layers),
    }
    await loop_.sock_sendall(proc.channel, protocol.encode(protocol.INIT, init))
    assert (await receive()).kind == protocol.READY
    header = {"id": "r", "deadline_ms": int(time.time() * 1000) + 20_000}
    await loop_.sock_sendall(proc.channel, protocol.encode(protocol.INVOKE, header, b"null"))
    frame = await receive()
    assert frame.kind == protocol.RESULT, frame
    return json.loads(frame.body)


def launch_twice(
    tmp_path: Path, spec: SandboxSpec, runtime_layer: LayerMount, *, isolate: bool = True
) -> tuple[list[dict[str, Any]], list[str]]:
    """What two instances of ``spec`` saw, and the devices the launcher held."""

    async def main() -> tuple[list[dict[str, Any]], list[str]]:
        launcher = ZygoteLauncher(
            state_dir=tmp_path / "state",
            server_id=f"test-{uuid.uuid4().hex[:8]}",
            isolate=isolate,
            runtime_layers=[runtime_layer],
        )
        await launcher.start()
        try:
            seen = []
            for n in (1, 2):
                proc = await launcher.launch(SandboxSpec(**{**vars(spec), "instance_id": f"i-{n}"}))
                seen.append(await call(proc, [layer.name for layer in spec.layers]))
            return seen, [d.path for d in launcher._images._devices.values()]
        finally:
            await launcher.close()

    return asyncio.run(main())


def test_layers_are_images_attached_once_and_detached_after_close(tmp_path: Path) -> None:
    spec, runtime_layer = setup(tmp_path)
    seen, devices = launch_twice(tmp_path, spec, runtime_layer)
    for instance in seen:
        assert instance["values"] == ["rt", "fn"]
        assert instance["files"] == ["/opt/rtl/python/rt_mod.py", "/opt/fnl/fn_mod.py"]
        assert instance["path"] == [
            "/var/task",
            "/opt/rtl/python",
            "/opt/rtl",
            "/opt/fnl",
            *instance["path"][4:],
        ]
        for point in ("/opt/rtl", "/opt/fnl"):
            root, fstype, source = instance["mounts"][point]
            assert (root, fstype) == ("/", "erofs") and source.startswith("/dev/loop"), point
    assert seen[0]["mounts"]["/opt/rtl"] == seen[1]["mounts"]["/opt/rtl"]  # the same device
    assert seen[0]["mounts"]["/opt/fnl"] == seen[1]["mounts"]["/opt/fnl"]
    assert len(devices) == 4  # Python, wuzhao, the runtime layer, the function layer: once each
    layer_images = {str(p) for p in images.DEFAULT_CACHE_DIR.glob("layer-rtl-*.erofs")} | {
        spec.layers[1].image
    }
    assert loop.devices_backing({i for i in layer_images if i}) == []


def test_a_host_without_images_binds_the_layers_loudly(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setattr(images, "unavailable", lambda: "no loop devices here (simulated)")
    caplog.set_level(logging.WARNING)
    spec, runtime_layer = setup(tmp_path)
    seen, devices = launch_twice(tmp_path, spec, runtime_layer)
    assert devices == []
    assert seen[0]["values"] == ["rt", "fn"]
    assert seen[0]["mounts"]["/opt/rtl"][0] == str(tmp_path / "rtl")  # the leak images close
    assert seen[0]["mounts"]["/opt/fnl"][0] == str(tmp_path / "fnl")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("SANDBOXES SHOW HOST PATHS" in w and "simulated" in w for w in warnings), warnings


def test_a_runtime_layer_that_cannot_be_imaged_is_bound_loudly(tmp_path: Path, monkeypatch, caplog) -> None:
    def cannot(name: str, directory: str, cache: Path) -> Path:
        raise images.ImageError("mkfs.erofs failed (simulated)")

    monkeypatch.setattr(images, "layer_image", cannot)
    caplog.set_level(logging.WARNING)
    spec, runtime_layer = setup(tmp_path)
    seen, devices = launch_twice(tmp_path, spec, runtime_layer)
    assert seen[0]["values"] == ["rt", "fn"]
    assert seen[0]["mounts"]["/opt/rtl"][0] == str(tmp_path / "rtl")
    assert seen[0]["mounts"]["/opt/fnl"][:2] == ["/", "erofs"]  # the others are still images
    assert len(devices) == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("SANDBOXES SHOW HOST PATHS: runtime layer rtl" in w and "simulated" in w for w in warnings)


def test_without_isolation_layers_are_imported_from_their_directories(tmp_path: Path) -> None:
    spec, runtime_layer = setup(tmp_path)
    seen, _ = launch_twice(tmp_path, spec, runtime_layer, isolate=False)
    assert seen[0]["values"] == ["rt", "fn"]
    assert seen[0]["files"] == [f"{tmp_path}/rtl/python/rt_mod.py", f"{tmp_path}/fnl/fn_mod.py"]


@pytest.mark.parametrize("names", [["../up"], ["a/b"], [""], ["Upper"], ["twice", "twice"]])
def test_layer_names_that_would_reach_other_paths_are_refused(tmp_path: Path, names: list[str]) -> None:
    spec, _ = setup(tmp_path)
    layers = tuple(LayerMount(name, str(tmp_path / "rtl")) for name in names)

    async def main() -> None:
        launcher = ZygoteLauncher(state_dir=tmp_path / "state", server_id=f"test-{uuid.uuid4().hex[:8]}")
        await launcher.start()
        try:
            with pytest.raises(ValueError, match="layer names"):
                await launcher.launch(SandboxSpec(**{**vars(spec), "layers": layers}))
        finally:
            await launcher.close()

    asyncio.run(main())
