"""Preloading on the launcher: a second zygote imports the operator's modules before it forks.

The layer here is tiny (a package that records where and how it was
imported, and a submodule imported only inside the sandbox), so every mount
mode is cheap to check: images, the loud fallbacks to binds, no isolation.
numpy itself is in tests/integration/test_preload.py, through a server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from wuzhao.errors import SandboxUnavailable
from wuzhao.runtimes import protocol
from wuzhao.sandbox import images
from wuzhao.sandbox.api import LayerMount, SandboxSpec
from wuzhao.sandbox.zygote_launcher import PreloadFailed, ZygoteLauncher, ZygoteProcess, check_host

try:
    check_host()
    UNAVAILABLE = images.unavailable() or ""
except SandboxUnavailable as exc:
    UNAVAILABLE = str(exc)

pytestmark = [pytest.mark.sandbox, pytest.mark.skipif(bool(UNAVAILABLE), reason=UNAVAILABLE)]

HEAVY = {
    "python/heavy/__init__.py": (
        "import os\n"
        "IMPORTED_BY = os.getpid()\n"
        "THREADS = {name: os.environ.get(name) for name in "
        "('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS')}\n"
    ),
    "python/heavy/lazy.py": "VALUE = 'lazy'\n",
    "python/spins.py": (
        "import threading, time\nthreading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
    ),
}

APP = """
import os, sys
PRELOADED = "heavy" in sys.modules
import heavy


def handler(event, context):
    import heavy.lazy  # imported here, inside the sandbox, through heavy.__path__
    return {
        "preloaded": PRELOADED,
        "imported_here": heavy.IMPORTED_BY == os.getpid(),
        "threads": heavy.THREADS,
        "files": [heavy.__file__, heavy.lazy.__file__],
        "environ": sorted(os.environ),
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


def spec_of(tmp_path: Path, layer: LayerMount) -> SandboxSpec:
    return SandboxSpec(
        instance_id="i-1",
        code_dir=str(tree(tmp_path / "code", {"app.py": APP})),
        uid=61237,
        memory_mb=128,
        cpu_shares=256,
        tmp_size_mb=8,
        env={"PATH": "/usr/bin:/bin"},
        layers=(layer,),
    )


async def call(proc: ZygoteProcess) -> Any:
    loop_ = asyncio.get_running_loop()
    decoder = protocol.FrameDecoder(1 << 20, protocol.RUNTIME_KINDS)

    async def receive() -> protocol.Frame:
        frames: list[protocol.Frame] = []
        while not frames:
            data = await asyncio.wait_for(loop_.sock_recv(proc.channel, 1 << 16), 20)
            assert data, "the runtime closed its channel"
            frames = decoder.feed(data)
        return frames[0]

    init = {"handler": "app.handler", "function_name": "f", "function_version": "1"}
    init |= {"memory_limit_in_mb": 128, "layers": ["rtl"]}
    await loop_.sock_sendall(proc.channel, protocol.encode(protocol.INIT, init))
    ready = await receive()
    assert ready.kind == protocol.READY, ready
    header = {"id": "r", "deadline_ms": int(time.time() * 1000) + 20_000}
    await loop_.sock_sendall(proc.channel, protocol.encode(protocol.INVOKE, header, b"null"))
    frame = await receive()
    assert frame.kind == protocol.RESULT, frame
    return json.loads(frame.body)


def with_launcher(
    tmp_path: Path,
    preload: list[str],
    use: Callable[[ZygoteLauncher, LayerMount], Awaitable[Any]],
    *,
    isolate: bool = True,
    layer_dir: Path | None = None,
) -> Any:
    layer = LayerMount("rtl", str(tree(layer_dir or tmp_path / "rtl", HEAVY)))

    async def main() -> Any:
        launcher = ZygoteLauncher(
            state_dir=tmp_path / "state",
            server_id=f"test-{uuid.uuid4().hex[:8]}",
            isolate=isolate,
            runtime_layers=[layer],
            preload=preload,
        )
        await launcher.start()
        try:
            return await use(launcher, layer)
        finally:
            await launcher.close()

    return asyncio.run(main())


def both(tmp_path: Path, **options: Any) -> dict[bool, dict[str, Any]]:
    """What an instance saw, forked from the preloaded zygote (True) and from the plain one (False)."""

    async def use(launcher: ZygoteLauncher, layer: LayerMount) -> dict[bool, dict[str, Any]]:
        spec = spec_of(tmp_path, layer)
        seen = {}
        for preloaded in (True, False):
            fields = {**vars(spec), "instance_id": f"i-{int(preloaded)}", "preloaded": preloaded}
            instance = SandboxSpec(**fields)
            seen[preloaded] = await call(await launcher.launch(instance))
        return seen

    return with_launcher(tmp_path, ["heavy"], use, **options)


def test_an_instance_of_the_preloaded_zygote_starts_with_the_module_imported_where_it_sees_it(tmp_path):
    seen = both(tmp_path)
    assert seen[True]["preloaded"] is True and seen[True]["imported_here"] is False
    assert seen[True]["files"] == ["/opt/rtl/python/heavy/__init__.py", "/opt/rtl/python/heavy/lazy.py"]
    # The libraries were told to use one thread before the import; the instance's own
    # environment is its spec's, as always.
    limits = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    assert seen[True]["threads"] == dict.fromkeys(limits, "1")
    assert seen[True]["environ"] == ["PATH"]
    # The plain zygote's instance imports it itself, inside its sandbox, with no thread limit.
    assert seen[False]["preloaded"] is False and seen[False]["imported_here"] is True
    assert seen[False]["files"] == seen[True]["files"]
    assert set(seen[False]["threads"].values()) == {None}


def test_a_preloaded_instance_comes_from_a_shell_of_the_preloaded_zygote(tmp_path):
    async def use(launcher: ZygoteLauncher, layer: LayerMount) -> tuple[ZygoteProcess, list[int], Any]:
        deadline = time.monotonic() + 20
        while not (launcher.ready_shells(preloaded=True) and launcher.ready_shells()):
            assert time.monotonic() < deadline, "the pools did not fill"
            await asyncio.sleep(0.01)
        waiting = launcher.ready_shells(preloaded=True)
        assert not set(waiting) & set(launcher.ready_shells())  # a pool of its own
        proc = await launcher.launch(SandboxSpec(**{**vars(spec_of(tmp_path, layer)), "preloaded": True}))
        return proc, waiting, await call(proc)

    proc, waiting, seen = with_launcher(tmp_path, ["heavy"], use)
    assert proc.from_shell and proc.pid in waiting
    assert seen["preloaded"] is True and seen["imported_here"] is False


def test_the_preloaded_zygote_has_one_thread_and_the_layers_where_instances_have_them(tmp_path):
    """Only its own thread at every fork: the libraries were told to start none."""

    async def use(launcher: ZygoteLauncher, layer: LayerMount) -> dict[str, Any]:
        pid, plain = launcher.preloaded_zygote_pid, launcher.zygote_pid
        assert pid is not None and plain is not None and pid != plain
        return {
            "tasks": os.listdir(f"/proc/{pid}/task"),
            "mounts": [line.split() for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()],
            "plain": Path(f"/proc/{plain}/mountinfo").read_text(),
        }

    seen = with_launcher(tmp_path, ["heavy"], use)
    assert len(seen["tasks"]) == 1
    opt = {fields[4]: fields for fields in seen["mounts"] if fields[4].startswith("/opt")}
    assert sorted(opt) == ["/opt", "/opt/rtl"]
    assert opt["/opt/rtl"][3] == "/" and "erofs" in opt["/opt/rtl"]  # an image: no host path
    assert " /opt/rtl " in seen["plain"]  # the plain one has them too, to bind from


def test_without_images_the_module_comes_from_the_host_directory_loudly(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(images, "unavailable", lambda: "no loop devices here (simulated)")
    caplog.set_level(logging.WARNING)
    seen = both(tmp_path)
    assert seen[True]["preloaded"] is True
    # Imported in the zygote from the host (the fallback's known leak); what it imports
    # later is found inside, at /opt, through the path the zygote added.
    assert seen[True]["files"] == [
        f"{tmp_path}/rtl/python/heavy/__init__.py",
        "/opt/rtl/python/heavy/lazy.py",
    ]
    assert any("SANDBOXES SHOW HOST PATHS" in r.getMessage() for r in caplog.records)


def test_a_runtime_layer_without_an_image_is_bound_in_the_zygote_and_its_instances(tmp_path, monkeypatch):
    def cannot(name: str, directory: str, cache: Path) -> Path:
        raise images.ImageError("mkfs.erofs failed (simulated)")

    monkeypatch.setattr(images, "layer_image", cannot)
    # Under /var, which the zygotes' namespace hides: bound through a descriptor held
    # before, and bound by instances from the zygote's /opt.
    with tempfile.TemporaryDirectory(dir="/var/tmp") as hidden:
        seen = both(tmp_path, layer_dir=Path(hidden))
    for preloaded in (True, False):
        assert seen[preloaded]["preloaded"] is preloaded
        assert seen[preloaded]["files"] == [
            "/opt/rtl/python/heavy/__init__.py",
            "/opt/rtl/python/heavy/lazy.py",
        ]


def test_without_isolation_the_module_is_preloaded_from_its_directory(tmp_path):
    seen = both(tmp_path, isolate=False)
    assert seen[True]["preloaded"] is True and seen[False]["preloaded"] is False
    assert seen[True]["files"] == [
        f"{tmp_path}/rtl/python/heavy/__init__.py",
        f"{tmp_path}/rtl/python/heavy/lazy.py",
    ]


@pytest.mark.parametrize(
    ("preload", "says"),
    [
        (["heavy", "no_such_module"], "cannot import 'no_such_module' (looked in /opt/rtl/python, /opt/rtl"),
        (["spins"], "the zygote runs 2 threads"),
        (["click"], "cannot import 'click'"),  # the server's own packages are not the runtime's
    ],
)
def test_a_preload_that_fails_stops_the_launcher_and_leaves_no_zygote(tmp_path, preload, says):
    started: list[int] = []

    async def use(launcher: ZygoteLauncher, layer: LayerMount) -> None:
        raise AssertionError("the launcher started")

    original = ZygoteLauncher._start_zygotes

    async def remember(self: ZygoteLauncher) -> None:
        try:
            await original(self)
        finally:
            started.extend(pid for pid in (self.zygote_pid, self.preloaded_zygote_pid) if pid is not None)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ZygoteLauncher, "_start_zygotes", remember)
        with pytest.raises(PreloadFailed) as failed:
            with_launcher(tmp_path, preload, use)
    assert f"runtime layers (rtl={tmp_path}/rtl)" in str(failed.value)
    assert says in str(failed.value)
    assert len(started) == 2
    for pid in started:
        assert not Path(f"/proc/{pid}").exists(), pid


def test_without_images_a_module_from_outside_the_layers_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "unavailable", lambda: "no loop devices here (simulated)")

    async def use(launcher: ZygoteLauncher, layer: LayerMount) -> None:
        raise AssertionError("the launcher started")

    with pytest.raises(PreloadFailed, match=r"'click' was found at .*, which is in no runtime layer"):
        with_launcher(tmp_path, ["click"], use)


def test_when_the_preloaded_zygote_dies_only_its_instances_go_and_the_plain_one_takes_over(tmp_path):
    async def use(launcher: ZygoteLauncher, layer: LayerMount) -> dict[str, Any]:
        spec = spec_of(tmp_path, layer)
        plain = await launcher.launch(SandboxSpec(**{**vars(spec), "instance_id": "i-plain"}))
        doomed = await launcher.launch(
            SandboxSpec(**{**vars(spec), "instance_id": "i-pre", "preloaded": True})
        )
        assert launcher.preloaded_zygote_pid is not None
        os.kill(launcher.preloaded_zygote_pid, signal.SIGKILL)
        doomed_exit = await asyncio.wait_for(doomed.wait(), 10)
        after = await launcher.launch(
            SandboxSpec(**{**vars(spec), "instance_id": "i-after", "preloaded": True})
        )
        return {"doomed": doomed_exit, "plain": await call(plain), "after": await call(after)}

    seen = with_launcher(tmp_path, ["heavy"], use)
    assert seen["doomed"].signal == signal.SIGKILL
    assert seen["plain"]["imported_here"] is True  # still serving
    assert seen["after"]["preloaded"] is False and seen["after"]["imported_here"] is True
