"""The launcher's images: mounted from loop devices inside, detached after close, and a loud fallback."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from wuzhao.errors import SandboxUnavailable
from wuzhao.runtimes import protocol
from wuzhao.sandbox import images, loop
from wuzhao.sandbox.api import SandboxSpec
from wuzhao.sandbox.zygote_launcher import ZygoteLauncher, ZygoteProcess, check_host

try:
    check_host()
    UNAVAILABLE = images.unavailable() or ""
except SandboxUnavailable as exc:
    UNAVAILABLE = str(exc)

pytestmark = [pytest.mark.sandbox, pytest.mark.skipif(bool(UNAVAILABLE), reason=UNAVAILABLE)]

APP = """
import os

def handler(event, context):
    mounts = {}
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        mounts[fields[4]] = [fields[3], *line.split(" - ")[1].split()[:2]]
    return {"mounts": mounts, "exe": os.readlink("/proc/self/exe"), "files": sorted(os.listdir("/var/task"))}
"""


async def call(proc: ZygoteProcess, event: Any = None) -> Any:
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
    }
    await loop_.sock_sendall(proc.channel, protocol.encode(protocol.INIT, init))
    assert (await receive()).kind == protocol.READY
    header = {"id": "r", "deadline_ms": int(time.time() * 1000) + 20_000}
    await loop_.sock_sendall(
        proc.channel, protocol.encode(protocol.INVOKE, header, json.dumps(event).encode())
    )
    frame = await receive()
    assert frame.kind == protocol.RESULT, frame
    return json.loads(frame.body)


def spec_for(tmp_path: Path, *, image: bool) -> SandboxSpec:
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text(APP)
    code.chmod(0o755)
    (code / "app.py").chmod(0o644)
    code_image = images.build(code, tmp_path / "code.erofs") if image else None
    return SandboxSpec(
        instance_id="i-1",
        code_dir=str(code),
        code_image=None if code_image is None else str(code_image),
        uid=61235,
        memory_mb=128,
        cpu_shares=256,
        tmp_size_mb=8,
        env={"PATH": "/usr/bin:/bin"},
    )


def host_mounts_of(devices: list[str]) -> list[str]:
    """Mounts of the host's namespace made from one of ``devices``."""
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line for line in lines if line.split(" - ")[1].split()[1] in devices]


def launch_and_call(tmp_path: Path, spec: SandboxSpec) -> tuple[dict[str, Any], ZygoteLauncher, list[str]]:
    async def main() -> tuple[dict[str, Any], ZygoteLauncher, list[str]]:
        launcher = ZygoteLauncher(state_dir=tmp_path / "state", server_id=f"test-{uuid.uuid4().hex[:8]}")
        await launcher.start()
        devices = [d.path for d in launcher._images._devices.values()]
        try:
            proc = await launcher.launch(spec)
            devices = [d.path for d in launcher._images._devices.values()]
            return await call(proc), launcher, devices
        finally:
            await launcher.close()

    return asyncio.run(main())


def test_code_and_runtime_are_images_inside_and_detached_after_close(tmp_path: Path) -> None:
    spec = spec_for(tmp_path, image=True)
    seen, launcher, devices = launch_and_call(tmp_path, spec)
    assert launcher.uses_images is False  # closed: it let go of its images
    mounts = seen["mounts"]
    for point in ("/var/lang", "/var/runtime", "/var/task"):
        root, fstype, source = mounts[point]
        assert (root, fstype) == ("/", "erofs") and source.startswith("/dev/loop"), (point, mounts[point])
    assert mounts["/var/task"][2] != mounts["/var/lang"][2]
    assert seen["exe"] == "/var/lang/bin/python3.11"
    assert seen["files"] == ["app.py"]
    assert len(devices) == 3  # Python, wuzhao, the code: each attached once
    # Nothing of ours is left: no device on our code image, none of the launcher's, no host mount.
    assert loop.devices_backing({spec.code_image or ""}) == []
    assert host_mounts_of(devices) == []  # the zygote's and the instances' were in their namespaces


def test_a_host_without_images_gets_binds_and_a_loud_warning(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setattr(images, "unavailable", lambda: "no loop devices here (simulated)")
    caplog.set_level(logging.WARNING)
    seen, _, devices = launch_and_call(tmp_path, spec_for(tmp_path, image=True))
    assert devices == []
    assert seen["mounts"]["/var/task"][0] == str(tmp_path / "code")  # the very leak images close
    assert "/var/runtime" not in seen["mounts"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("SANDBOXES SHOW HOST PATHS" in w and "simulated" in w for w in warnings), warnings


def test_a_zygote_that_cannot_start_from_the_images_falls_back_to_binds(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    # /dev/null is no block device: the zygote's first stage cannot mount it and exits.
    bad = ["--runtime-device", "/dev/null"]
    monkeypatch.setattr(images.Attached, "zygote_args", lambda self: bad if self.active else [])
    caplog.set_level(logging.WARNING)
    spec = spec_for(tmp_path, image=True)
    seen, _, _ = launch_and_call(tmp_path, spec)
    assert seen["mounts"]["/var/task"][0] == str(tmp_path / "code")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("could not start from the runtime's images" in w for w in warnings), warnings
    assert loop.devices_backing({spec.code_image or ""}) == []
